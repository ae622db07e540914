"""Reads of orders: a channel's orders (list and detail), a store's queue, and what candidate stores can sell and
have to pick (the ORM readers behind orders.fast_paths)."""

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db.models import F, Prefetch, QuerySet, Sum

from inventory.models import Stock
from inventory.selectors import expired_hold_quantities
from o2o.models import SalesChannel
from orders.candidate_stores import OPEN_LOAD_STATUSES
from orders.exceptions import OrderNotFound
from orders.models import (
    OPEN_STATUSES,
    ChangeOffer,
    ChangeOfferStatus,
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    Order,
    OrderLine,
    OrderStatus,
    PickupCode,
    RoutingDecision,
)


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


def open_change_offers() -> QuerySet[ChangeOffer]:
    """Change offers the customer may still answer: open, of a pickup and an order not cancelled meanwhile (the
    customer cancelled instead of answering; the expiry closes those)."""
    return (
        ChangeOffer.objects.filter(status=ChangeOfferStatus.OPEN)
        .exclude(fulfillment__status=FulfillmentStatus.CANCELLED)
        .exclude(order__status=OrderStatus.CANCELLED)
    )


def order_for_channel(*, channel: SalesChannel, number: str, with_decisions: bool = True) -> Order:
    """One of the channel's orders; another channel's order is simply not found (404). `with_decisions`: with its
    routing decisions and its open change offers (`open_change_offers`), as the order detail shows them."""
    queryset = _with_details(Order.objects.filter(channel=channel, number=number))
    if with_decisions:
        queryset = queryset.prefetch_related(
            Prefetch("routing_decisions", queryset=RoutingDecision.objects.order_by("id")),
            Prefetch(
                "change_offers", queryset=open_change_offers().order_by("id"), to_attr="open_change_offers",
            ),
        )
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


def online_units(*, store_ids: Sequence[int], product_ids: Sequence[int], at: datetime) -> dict[tuple[int, int], int]:
    """Online units (on_hand - reserved - safety - unavailable, live holds only) per (store, product), of the stock
    rows that hold more than their safety and unavailable units; zero or less when holds take them all. A row whose
    shortfall waits for a count (a store event took more than the ledger had) sells nothing online: left out, as if
    it had nothing above safety."""
    rows = Stock.objects.filter(
        store_id__in=store_ids, product_id__in=product_ids, on_hand__gt=F("safety") + F("unavailable"), shortfall=0
    ).values_list("store_id", "product_id", "on_hand", "reserved", "safety", "unavailable")
    rows = list(rows)
    if not rows:
        return {}
    expired = expired_hold_quantities(store_ids={r[0] for r in rows}, product_ids=product_ids, now=at)
    return {
        (s, p): on_hand - (reserved - expired.get((s, p), 0)) - safety - unavailable
        for s, p, on_hand, reserved, safety, unavailable in rows
    }


def slot_load(*, store_ids: Sequence[int], at: datetime, slot_hours: float) -> dict[int, int]:
    """Open order lines (assigned or picking) promised before the end of the slot, per store."""
    until = at + timedelta(hours=slot_hours)
    return dict(
        Fulfillment.objects.filter(store_id__in=store_ids, status__in=OPEN_LOAD_STATUSES, promised_by__lt=until)
        .values_list("store_id")
        .annotate(n=Sum("line_count"))
        .values_list("store_id", "n")
    )
