from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class O2OConfig(AppConfig):
    """Cross-cutting platform pieces: sales channels and their API keys, HTTP idempotency records."""

    name = "o2o"
    verbose_name = _("Platform")
    default_auto_field = "django.db.models.BigAutoField"
