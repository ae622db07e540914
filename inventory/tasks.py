"""Celery tasks of the inventory app: thin wrappers around services."""

from celery import shared_task

from inventory import imports, services


@shared_task(name="inventory.tasks.release_expired_holds")
def release_expired_holds() -> int:
    return services.release_expired_holds()


@shared_task(name="inventory.tasks.apply_stock_import")
def apply_stock_import(stock_import_id: int) -> str:
    """Apply a confirmed admin import of goods receipts or counts (large files; small ones apply inline)."""
    return imports.apply_import(stock_import_id=stock_import_id).status
