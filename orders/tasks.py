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


@shared_task(name="orders.tasks.reconcile_taken_reservations")
def reconcile_taken_reservations() -> int:
    """Store events' takes that the flow which recorded them did not reconcile (orders.services.store_events)."""
    return len(services.reconcile_taken())


@shared_task(name="orders.tasks.expire_change_offers")
def expire_change_offers() -> int:
    return services.expire_change_offers()
