from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PosConfig(AppConfig):
    """The stores' tills as a sales channel: store-bound API keys, till sales, voids, counts, goods receipts,
    transfers, pickup handovers and stock imports from files."""

    name = "orders.pos"
    label = "pos"
    verbose_name = _("Store POS")
    default_auto_field = "django.db.models.BigAutoField"
