from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PricingConfig(AppConfig):
    """One price and promotion policy for every channel: price lists, promotions, coupon and voucher codes, delivery
    fees, and the price exceptions of the tills."""

    name = "orders.pricing"
    label = "pricing"
    verbose_name = _("Prices and promotions")
    default_auto_field = "django.db.models.BigAutoField"
