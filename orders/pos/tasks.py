"""Celery tasks of the POS app: thin wrappers around its services."""

from celery import shared_task

from orders.pos import imports


# The task keeps the name it had under inventory/: imports queued before an upgrade still find it afterwards.
@shared_task(name="inventory.tasks.apply_stock_import")
def apply_stock_import(stock_import_id: int) -> str:
    """Apply a confirmed admin import of goods receipts or counts (large files; small ones apply inline)."""
    return imports.apply_import(stock_import_id=stock_import_id).status
