from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReturnsConfig(AppConfig):
    name = "orders.returns"
    label = "returns"
    verbose_name = _("Returns")
    default_auto_field = "django.db.models.BigAutoField"
