from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReturnsConfig(AppConfig):
    name = "orders.returns"
    label = "returns"
    verbose_name = _("Returns")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from orders import loyalty_tender
        from orders.returns.services import reverse_for_earlier_returns

        # Points on goods returned before their order completed are reversed as soon as the order earns them.
        if reverse_for_earlier_returns not in loyalty_tender.AFTER_EARNING:
            loyalty_tender.AFTER_EARNING.append(reverse_for_earlier_returns)
