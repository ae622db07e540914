"""Cancelling an order before its goods leave any store."""

import logging

from django.db import transaction
from django.utils import timezone

from inventory import services as stock
from o2o.outbox import emit
from orders import loyalty_tender
from orders.exceptions import (
    OrderNotCancellable,
)
from orders.models import (
    LEFT_STORE,
    OPEN_STATUSES,
    ChangeOffer,
    ChangeOfferStatus,
    FulfillmentStatus,
    Order,
    OrderStatus,
)
from orders.pricing import services as pricing
from orders.services.fulfilment import (
    lock_order,
    retire_pickup_code,
    set_status,
)
from orders.services.plans import pricing_reference

log = logging.getLogger(__name__)
S = FulfillmentStatus


@transaction.atomic
def cancel_order(*, order: Order, actor: str, reason: str = "") -> Order:
    """Cancel an order whose goods have not left any store: release every reservation, give back its points and
    the codes and promotion budgets it took. Cancelling twice is a no-op.
    Raises OrderNotCancellable (409) once something was handed to a courier or collected."""
    now = timezone.now()
    order = lock_order(order.pk)
    if order.status == OrderStatus.CANCELLED:
        return order
    fulfillments = list(order.fulfillments.select_for_update().order_by("pk"))
    if any(f.status in LEFT_STORE for f in fulfillments):
        raise OrderNotCancellable(details={"order": order.number})
    for f in fulfillments:
        if f.status in OPEN_STATUSES:
            stock.release_reservations(reference=f.reference, actor=actor, note=reason or "order cancelled")
            set_status(f, S.CANCELLED, now=now)
            retire_pickup_code(f)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.CANCELLED, updated_at=now)
    order.status = OrderStatus.CANCELLED
    # A change offered after a store event has nothing left to change (when the customer answered `cancel`, the
    # answer marks its own offer accepted right after this).
    ChangeOffer.objects.filter(order=order, status=ChangeOfferStatus.OPEN).update(
        status=ChangeOfferStatus.WITHDRAWN, decided_at=now, decided_by=actor[:150]
    )
    loyalty_tender.on_status(order=order, status=OrderStatus.CANCELLED, actor=actor, now=now)  # points back
    pricing.release(reference=pricing_reference(order.number), at=now)  # its codes and promotion budgets back
    emit(
        topic="order.cancelled", aggregate=order.aggregate, channel=order.channel,
        payload={"order": order.number, "reason": reason},
    )
    return order
