"""The fulfilment state machine and the order status that follows it.

Goods leaving the store (handed to the courier, collected) commit the reservation; not collected and cancelled
release it; returned to store brings the goods back on hand. Locks: the order first, then the fulfillment."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from inventory import services as stock
from inventory.models import MovementReason, Product, Reservation
from o2o.outbox import emit
from orders import loyalty_tender
from orders.exceptions import (
    FulfillmentNotFound,
    InvalidTransition,
)
from orders.models import (
    OPEN_STATUSES,
    SUCCESS,
    TRANSITIONS,
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    Method,
    Order,
    OrderStatus,
    PickupCode,
)
from orders.pricing import services as pricing
from orders.services.plans import pricing_reference

log = logging.getLogger(__name__)
S = FulfillmentStatus
SYSTEM = "system:orders"


def sync_order_status(order: Order, *, now: datetime) -> str:
    """Keep Order.status in step with its fulfillments (the caller holds the order's lock). An order completed
    consumes the codes it reserved; one cancelled or failed in full releases them and its promotion budgets."""
    if order.status == OrderStatus.CANCELLED:
        return order.status
    statuses = set(order.fulfillments.values_list("status", flat=True))
    live = statuses - {S.CANCELLED}
    if not live:
        new = OrderStatus.CANCELLED
    elif live & OPEN_STATUSES:
        new = OrderStatus.OPEN
    elif live & SUCCESS:
        new = OrderStatus.COMPLETED
    else:
        new = OrderStatus.FAILED
    if new != order.status:
        Order.objects.filter(pk=order.pk).update(status=new, updated_at=now)
        order.status = new
        loyalty_tender.on_status(order=order, status=new, actor=SYSTEM, now=now)  # earn, or give points back
        if new == OrderStatus.COMPLETED:
            pricing.consume(reference=pricing_reference(order.number), at=now)
        elif new in (OrderStatus.CANCELLED, OrderStatus.FAILED):
            pricing.release(reference=pricing_reference(order.number), at=now)
    return new


def lock_order(order_id: int) -> Order:
    return Order.objects.select_for_update(of=("self",)).select_related("channel").get(pk=order_id)


def lock_fulfillment(fulfillment: Fulfillment | int) -> tuple[Order, Fulfillment]:
    """Lock a fulfillment's order, then the fulfillment (the fixed lock order); FulfillmentNotFound (404)."""
    fid = fulfillment.pk if isinstance(fulfillment, Fulfillment) else fulfillment
    order_id = Fulfillment.objects.filter(pk=fid).values_list("order_id", flat=True).first()
    if order_id is None:
        raise FulfillmentNotFound(details={"fulfillment": fid})
    order = lock_order(order_id)
    return order, Fulfillment.objects.select_for_update(of=("self",)).select_related("store").get(pk=fid)


def retire_pickup_code(fulfillment: Fulfillment) -> None:
    PickupCode.objects.filter(fulfillment=fulfillment, is_live=True).update(is_live=False)


def set_status(f: Fulfillment, to: str, *, now: datetime, **extra) -> None:
    changed = Fulfillment.objects.filter(pk=f.pk, status=f.status).update(status=to, status_changed_at=now, **extra)
    if changed != 1:  # cannot happen under the row lock; kept as the last line of defence
        raise InvalidTransition(details={"fulfillment": f.pk, "from": f.status, "to": to})
    f.status = to
    f.status_changed_at = now
    for name, value in extra.items():
        setattr(f, name, value)


EVENTS = {
    S.READY_FOR_PICKUP: "fulfillment.ready_for_pickup",
    S.HANDED_TO_COURIER: "fulfillment.out_for_delivery",
    S.DELIVERED: "fulfillment.delivered",
    S.DELIVERY_FAILED: "fulfillment.delivery_failed",
    S.RETURNED_TO_STORE: "fulfillment.returned_to_store",
    S.COLLECTED: "fulfillment.collected",
    S.NOT_COLLECTED: "fulfillment.not_collected",
    S.CANCELLED: "fulfillment.cancelled",
    S.PICKING: "fulfillment.picking",
    S.PACKED: "fulfillment.packed",
}


def allowed_transitions(f: Fulfillment) -> list[str]:
    allowed = set(TRANSITIONS[f.status])
    if f.method == Method.PICKUP:
        allowed -= {S.HANDED_TO_COURIER}
    else:
        allowed -= {S.READY_FOR_PICKUP}
    return sorted(allowed)


def fulfillment_units(f: Fulfillment) -> dict[int, int]:
    return {line.product_id: line.units for line in f.lines.all() if line.units > 0}


def committable_units(f: Fulfillment) -> dict[int, int]:
    """What leaving the store commits: the units handed over, but never more than the reservation still holds. A
    store event may have taken reserved units from a fulfillment that was packed meanwhile (the race
    orders.services.store_events records): the goods in the bag are real, the event already took their units off
    the ledger's on hand, so only what is still reserved goes now, and the count the event asked for settles the
    shelf."""
    reserved = dict(
        Reservation.objects.filter(reference=f.reference)
        .values("product_id")
        .annotate(n=Sum("quantity"))
        .values_list("product_id", "n")
    )
    units = {pid: min(qty, reserved.get(pid, 0)) for pid, qty in fulfillment_units(f).items()}
    return {pid: qty for pid, qty in units.items() if qty > 0}


@transaction.atomic
def transition_fulfillment(
    *, fulfillment: Fulfillment | int, to: str, actor: str, courier_name: str = "", courier_tracking: str = ""
) -> Fulfillment:
    """Move a fulfillment one step along the state machine. Refused with InvalidTransition (409) otherwise.

    Goods leaving the store (handed_to_courier, collected) commit the reservation; not_collected and cancelled
    release it; returned_to_store (after delivery_failed, once the goods are physically back) brings them back on
    hand at the store."""
    now = timezone.now()
    order, f = lock_fulfillment(fulfillment)
    if to not in allowed_transitions(f):
        raise InvalidTransition(
            f"A {f.method} fulfillment cannot go from {f.status} to {to}.",
            details={"fulfillment": f.pk, "from": f.status, "to": to, "allowed": allowed_transitions(f)},
        )
    extra: dict = {}
    if to == S.PACKED:
        FulfillmentLine.objects.filter(fulfillment=f, picked_qty__isnull=True).update(picked_qty=F("qty"))
    elif to == S.READY_FOR_PICKUP:
        extra["ready_at"] = now
    elif to in (S.HANDED_TO_COURIER, S.COLLECTED):
        units = committable_units(f)
        if units:
            stock.commit_reservations(reference=f.reference, actor=actor, quantities=units, note=to)
        stock.release_reservations(reference=f.reference, actor=actor, note="left over after commit")
        if to == S.HANDED_TO_COURIER:
            extra.update(courier_name=courier_name[:100], courier_tracking=courier_tracking[:100])
    elif to in (S.NOT_COLLECTED, S.CANCELLED):
        stock.release_reservations(reference=f.reference, actor=actor, note=to)
    elif to == S.RETURNED_TO_STORE:
        for pid, qty in sorted(fulfillment_units(f).items()):
            stock.adjust_stock(
                store=f.store, product=Product(pk=pid), reason=MovementReason.DELIVERY_RETURNED, actor=actor,
                on_hand=qty, reference=f.reference, idempotency_key=f"{f.reference}:returned:{pid}",
            )
    set_status(f, to, now=now, **extra)
    if to in (S.COLLECTED, S.NOT_COLLECTED, S.CANCELLED):
        retire_pickup_code(f)
    sync_order_status(order, now=now)
    payload = {"order": order.number, "fulfillment": f.pk, "store": f.store.code, "status": to, "order_status": order.status}
    if to == S.READY_FOR_PICKUP:
        code = PickupCode.objects.filter(fulfillment=f, is_live=True).first()
        payload.update(pickup_code=code.code if code else None, qr_payload=code.qr_payload if code else None)
    emit(topic=EVENTS[to], aggregate=order.aggregate, channel=order.channel, payload=payload)
    return f


def release_uncollected_pickups(*, now: datetime | None = None, hold_days: float | None = None) -> int:
    """Pickups ready for longer than the hold go back on sale (not_collected), one transaction each."""
    now = now or timezone.now()
    hold = timedelta(days=hold_days if hold_days is not None else settings.O2O_PICKUP_HOLD_DAYS)
    ids = list(
        Fulfillment.objects.filter(status=S.READY_FOR_PICKUP, ready_at__lte=now - hold).values_list("pk", flat=True)
    )
    released = 0
    for fid in ids:
        try:
            transition_fulfillment(fulfillment=fid, to=S.NOT_COLLECTED, actor="task:release_uncollected_pickups")
            released += 1
        except InvalidTransition:
            continue  # collected meanwhile
    return released
