from django.apps import AppConfig


class PosConfig(AppConfig):
    """The store POS integration. Installed so that Django finds its admin and its management commands; its models
    belong to the `inventory` app (see inventory/pos/models.py)."""

    name = "inventory.pos"
    label = "pos"
    verbose_name = "Store POS"
