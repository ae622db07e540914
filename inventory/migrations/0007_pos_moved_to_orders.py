"""The POS models now belong to the pos app (orders/pos, its migration 0001): the inventory app forgets them in
Django's state only. Their tables (inventory_tillreceipt, ...) and rows stay where they are."""

from django.db import migrations

# Lines before their heads, so no model in the state points at one already gone.
MOVED = ["TillRefund", "TillReceiptLine", "TillReceipt", "StockCountLine", "StockCount", "GoodsReceipt",
         "StockTransferLine", "StockTransfer", "StoreApiKey"]


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0006_verbose_names"),
        ("pos", "0001_took_over_from_inventory"),
        ("returns", "0003_took_over_from_inventory"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.DeleteModel(name=name) for name in MOVED],
        ),
    ]
