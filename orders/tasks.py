"""Celery tasks of the orders app: thin wrappers around services (scheduled in settings, `# --- Orders ---`)."""

from celery import shared_task

from orders import services


@shared_task(name="orders.tasks.route_wave")
def route_wave() -> dict:
    result = services.route_wave()
    return {"orders": result.orders, "reassigned": result.reassigned, "note": result.note}


@shared_task(name="orders.tasks.release_uncollected_pickups")
def release_uncollected_pickups() -> int:
    return services.release_uncollected_pickups()


@shared_task(name="orders.tasks.purge_expired_promises")
def purge_expired_promises() -> int:
    return services.purge_expired_promises()
