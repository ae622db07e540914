from django.apps import AppConfig


class O2OConfig(AppConfig):
    """Cross-cutting platform pieces: sales channels and their API keys, HTTP idempotency records."""

    name = "o2o"
    verbose_name = "Platform"
    default_auto_field = "django.db.models.BigAutoField"
