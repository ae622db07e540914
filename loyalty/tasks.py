"""Celery tasks of the loyalty app: thin wrappers around services (scheduled in o2o/settings.py)."""

from celery import shared_task

from loyalty import services


@shared_task(name="loyalty.tasks.void_expired_holds")
def void_expired_holds() -> int:
    return services.void_expired_holds()


@shared_task(name="loyalty.tasks.vest_pending")
def vest_pending() -> int:
    return services.vest_pending()


@shared_task(name="loyalty.tasks.expire_lots")
def expire_lots() -> int:
    return services.expire_lots()


@shared_task(name="loyalty.tasks.recompute_tiers")
def recompute_tiers() -> int:
    return services.recompute_tiers()
