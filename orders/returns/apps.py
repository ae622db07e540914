from django.apps import AppConfig


class ReturnsConfig(AppConfig):
    name = "orders.returns"
    label = "returns"
    verbose_name = "Returns"
    default_auto_field = "django.db.models.BigAutoField"
