"""Reads of returns: a channel sees the returns of its own orders, a store the returns it received (or will)."""

from django.db.models import Prefetch, QuerySet

from inventory.models import Store
from o2o.models import SalesChannel
from orders.returns.exceptions import ReturnNotFound
from orders.returns.models import Refund, Return, ReturnLine


def _returns() -> QuerySet[Return]:
    return Return.objects.select_related(
        "order", "receipt__store", "receiving_store", "routing"
    ).prefetch_related(
        Prefetch("lines", queryset=ReturnLine.objects.select_related("product").order_by("pk")),
        Prefetch("refunds", queryset=Refund.objects.order_by("pk")),
    )


def returns_of_channel(*, channel: SalesChannel) -> QuerySet[Return]:
    return _returns().filter(channel=channel).order_by("-id")


def returns_received_at(*, store: Store) -> QuerySet[Return]:
    return _returns().filter(receiving_store=store).order_by("-id")


def return_for_channel(*, channel: SalesChannel, number: str) -> Return:
    found = returns_of_channel(channel=channel).filter(number=number).first()
    if found is None:
        raise ReturnNotFound(details={"return": number})
    return found


def return_for_store(*, store: Store, number: str) -> Return:
    """Another store's return is not found (404), whatever its number."""
    found = returns_received_at(store=store).filter(number=number).first()
    if found is None:
        raise ReturnNotFound(details={"return": number})
    return found
