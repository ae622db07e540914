"""Celery tasks of the inventory app: thin wrappers around services."""

from celery import shared_task

from inventory import services


@shared_task(name="inventory.tasks.release_expired_holds")
def release_expired_holds() -> int:
    return services.release_expired_holds()
