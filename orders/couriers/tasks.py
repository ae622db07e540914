"""Celery tasks of the couriers subpackage: thin wrappers around services (scheduled in settings, `# --- Couriers ---`;
imported by the worker through CELERY_IMPORTS, as this subpackage is not an app of its own)."""

from celery import shared_task

from orders.couriers import services


@shared_task(name="orders.couriers.tasks.dispatch_packed", ignore_result=True)
def dispatch_packed() -> int:
    return services.dispatch_packed_deliveries()


@shared_task(name="orders.couriers.tasks.advance_local", ignore_result=True)
def advance_local() -> int:
    return services.advance_local_deliveries()


@shared_task(name="orders.couriers.tasks.sla_watch", ignore_result=True)
def sla_watch() -> dict:
    result = services.watch_deliveries()
    return result.__dict__
