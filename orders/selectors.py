"""Reads of orders: a channel's orders (list and detail), a store's queue."""

from django.db.models import Prefetch, QuerySet

from o2o.models import SalesChannel
from orders.exceptions import OrderNotFound
from orders.models import OPEN_STATUSES, Fulfillment, FulfillmentLine, Order, OrderLine, PickupCode, RoutingDecision


def _with_details(queryset: QuerySet[Order]) -> QuerySet[Order]:
    return queryset.select_related("pickup_store").prefetch_related(
        Prefetch("lines", queryset=OrderLine.objects.select_related("product")),
        Prefetch(
            "fulfillments",
            queryset=Fulfillment.objects.select_related("store", "pickup_code").prefetch_related(
                Prefetch("lines", queryset=FulfillmentLine.objects.select_related("product"))
            ),
        ),
    )


def orders_of_channel(*, channel: SalesChannel, status: str | None = None) -> QuerySet[Order]:
    """A channel's own orders, newest first, with lines and fulfillments (no N+1 in list pages)."""
    queryset = Order.objects.filter(channel=channel)
    if status:
        queryset = queryset.filter(status=status)
    return _with_details(queryset).order_by("-created_at", "-id")


def order_for_channel(*, channel: SalesChannel, number: str, with_decisions: bool = True) -> Order:
    """One of the channel's orders; another channel's order is simply not found (404)."""
    queryset = _with_details(Order.objects.filter(channel=channel, number=number))
    if with_decisions:
        queryset = queryset.prefetch_related(Prefetch("routing_decisions", queryset=RoutingDecision.objects.order_by("id")))
    order = queryset.first()
    if order is None:
        raise OrderNotFound(details={"order": number})
    return order


def store_queue(*, store_id: int) -> QuerySet[Fulfillment]:
    """What a store has to do: open fulfillments, soonest promise first."""
    return (
        Fulfillment.objects.filter(store_id=store_id, status__in=OPEN_STATUSES)
        .select_related("order")
        .prefetch_related("lines__product")
        .order_by("promised_by", "id")
    )


def live_pickup(*, code: str) -> PickupCode | None:
    return PickupCode.objects.filter(code=code.strip().upper(), is_live=True).select_related("fulfillment__order").first()
