"""Every write of the couriers subpackage: dispatch a packed delivery fulfillment to a provider, apply the
provider's status events (webhooks and the local courier share one path), the local courier's clock, the SLA watch.

Ordering. Statuses are ranked requested < assigned < picked_up < delivered | failed < returned; an event is applied
only if it moves the delivery forward, and is recorded either way (CourierEvent.applied / note). `cancelled` ends a
delivery before pickup; after pickup a cancellation means the goods are on their way back, so it counts as failed.

Fulfillment. picked_up hands the goods to the courier (stock committed, `fulfillment.out_for_delivery`); delivered
and failed follow (a delivered or failed event that skipped picked_up still passes through handed_to_courier, the
goods did leave); returned brings them back on sale at the store (`delivery_failed → returned_to_store`). A failure
before pickup leaves the fulfillment packed, to be dispatched again.

Locks: the order (as orders.services does), then the delivery, then (inside orders.services) the fulfillment and
stock rows. Provider HTTP calls are made outside any transaction. Events go to the outbox in the same transaction.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from o2o.outbox import emit
from orders import services as order_services
from orders.couriers.exceptions import NotDispatchable, ProviderError
from orders.couriers.models import ACTIVE, CourierEvent, Delivery, DeliveryStatus, SlaState
from orders.couriers.providers import get_provider
from orders.couriers.providers.base import ProviderEvent
from orders.couriers.providers.local import LocalCourier
from orders.exceptions import FulfillmentNotFound, InvalidTransition
from orders.models import Fulfillment, FulfillmentStatus, Method, Order

log = logging.getLogger(__name__)
D = DeliveryStatus
F = FulfillmentStatus
SYSTEM = "system:couriers"

RANK = {D.REQUESTED: 0, D.ASSIGNED: 1, D.PICKED_UP: 2, D.DELIVERED: 3, D.FAILED: 3, D.RETURNED: 4}
TERMINAL = frozenset({D.DELIVERED, D.CANCELLED, D.RETURNED})
TIMESTAMP_OF = {
    D.ASSIGNED: "assigned_at", D.PICKED_UP: "picked_up_at", D.DELIVERED: "delivered_at", D.FAILED: "failed_at",
    D.RETURNED: "returned_at", D.CANCELLED: "cancelled_at",
}


# --- events in --------------------------------------------------------------------------------------------------------


@dataclass
class EventOutcome:
    event: CourierEvent | None
    event_id: str = ""
    duplicate: bool = False
    applied: bool = False
    note: str = ""


def apply_courier_event(*, provider: str, payload: dict[str, Any]) -> EventOutcome:
    """Record one provider event (verified and decoded by the caller) and apply it if it moves its delivery forward.
    A replay of an event id already stored changes nothing and says `duplicate`. Raises UnknownProvider (404) or
    InvalidCourierEvent (400) before writing anything."""
    adapter = get_provider(provider)
    event = adapter.parse_event(payload)
    with transaction.atomic(durable=True):
        return _record_and_apply(provider=provider, event=event, payload=payload)


def confirm_returned(*, delivery: Delivery | int, actor: str) -> EventOutcome:
    """Staff confirm that the goods of a failed delivery are back in the store (for providers that do not report
    returns): the same path as a courier's `returned` event, recorded under the staff member's name."""
    pk = delivery.pk if isinstance(delivery, Delivery) else delivery
    d = Delivery.objects.get(pk=pk)
    event = ProviderEvent(
        event_id=f"staff:{d.pk}:returned", external_id=d.external_id or "", provider_status="RETURNED (staff)",
        status=D.RETURNED, occurred_at=timezone.now(),
    )
    with transaction.atomic(durable=True):
        return _record_and_apply(provider=d.provider, event=event, payload={"confirmed_by": actor}, delivery_id=d.pk)


def record_failure(*, delivery: Delivery | int, actor: str, reason: str = "") -> EventOutcome:
    """Staff record a failed delivery the provider has not reported (the courier phoned the store): the same path as
    a courier's `failed` event. After pickup the fulfillment goes to delivery_failed (the goods are on their way
    back; confirm_returned puts them back on sale); before pickup the parcel stays packed for another courier."""
    pk = delivery.pk if isinstance(delivery, Delivery) else delivery
    d = Delivery.objects.get(pk=pk)
    event = ProviderEvent(
        event_id=f"staff:{d.pk}:failed", external_id=d.external_id or "", provider_status="FAILED (staff)",
        status=D.FAILED, occurred_at=timezone.now(), failure_reason=(reason or f"reported by {actor}")[:300],
    )
    with transaction.atomic(durable=True):
        return _record_and_apply(provider=d.provider, event=event, payload={"reported_by": actor, "reason": reason},
                                 delivery_id=d.pk)


def _record_and_apply(
    *, provider: str, event: ProviderEvent, payload: dict, delivery_id: int | None = None
) -> EventOutcome:
    now = timezone.now()
    lookup = Delivery.objects.filter(pk=delivery_id) if delivery_id else Delivery.objects.filter(
        provider=provider, external_id=event.external_id
    )
    found = lookup.values_list("pk", "fulfillment__order_id").first()
    delivery = None
    if found:
        Order.objects.select_for_update().filter(pk=found[1]).first()  # lock order first, as orders.services does
        delivery = Delivery.objects.select_for_update(of=("self",)).select_related("fulfillment__order__channel",
                                                                       "fulfillment__store").get(pk=found[0])
    try:
        with transaction.atomic():
            record = CourierEvent.objects.create(
                provider=provider, event_id=event.event_id, delivery=delivery, external_id=event.external_id,
                provider_status=event.provider_status, status=event.status or "", payload=payload,
                occurred_at=event.occurred_at, received_at=now,
            )
    except IntegrityError:
        return EventOutcome(event=None, event_id=event.event_id, duplicate=True, note="event already received")
    if delivery is None:
        note = "unknown delivery: recorded, not applied"
        CourierEvent.objects.filter(pk=record.pk).update(note=note)
        return EventOutcome(event=record, event_id=event.event_id, note=note)
    if event.replaced_by:
        # The provider re-created its order (e.g. Lalamove's ORDER_REPLACED): follow the new id, nothing else moves.
        note = f"provider order {delivery.external_id} replaced by {event.replaced_by}"
        Delivery.objects.filter(pk=delivery.pk).update(external_id=event.replaced_by[:100])
        CourierEvent.objects.filter(pk=record.pk).update(applied=True, note=note[:300])
        record.applied, record.note = True, note[:300]
        return EventOutcome(event=record, event_id=event.event_id, applied=True, note=note)
    target, note = _decide(delivery, event)
    applied = False
    if target is not None:
        note = _apply(delivery, target, event, now=now, note=note)
        applied = True
    CourierEvent.objects.filter(pk=record.pk).update(applied=applied, note=note[:300])
    record.applied, record.note = applied, note[:300]
    return EventOutcome(event=record, event_id=event.event_id, applied=applied, note=note)


def _decide(d: Delivery, event: ProviderEvent) -> tuple[str | None, str]:
    """Where the delivery goes on this event, or None (with why) when it stays put."""
    new, current = event.status, d.status
    if new is None:
        return None, f"provider status {event.provider_status!r} is not one we act on"
    if new == current:
        if new == D.ASSIGNED and event.courier_name and event.courier_name != d.courier_name:
            return D.ASSIGNED, "courier changed"
        return None, f"no change: {current} already"
    if current in TERMINAL:
        return None, f"out of order: {current} already"
    if current == D.FAILED:
        return (D.RETURNED, "") if new == D.RETURNED else (None, f"out of order: {current} already")
    # current is requested, assigned or picked_up
    if new == D.CANCELLED:
        if current == D.PICKED_UP:
            return D.FAILED, "cancelled after pickup: the goods come back"
        return D.CANCELLED, ""
    if new == D.RETURNED and current != D.PICKED_UP:
        return None, "returned before any pickup: nothing to bring back"
    if RANK[new] <= RANK[current]:
        return None, f"out of order: {current} already"
    return new, ""


def _apply(d: Delivery, target: str, event: ProviderEvent, *, now: datetime, note: str) -> str:
    """Move the delivery to `target`, the fulfillment along with it, and tell the website (same transaction)."""
    at = min(event.occurred_at or now, now)
    updates: dict[str, Any] = {"status": target, "status_changed_at": now}
    if event.provider_status:
        updates["provider_status"] = event.provider_status[:40]
    for name in ("courier_name", "courier_phone", "vehicle_plate", "proof_photo_url", "recipient_name", "tracking_url"):
        value = getattr(event, name)
        if value:
            updates[name] = value
    if target in (D.FAILED, D.CANCELLED):
        updates["failure_reason"] = (event.failure_reason or note or event.provider_status)[:300]
    stamp = TIMESTAMP_OF.get(target)
    if stamp and not getattr(d, stamp):
        updates[stamp] = at
    if target in (D.DELIVERED, D.FAILED) and not d.picked_up_at:
        updates["picked_up_at"] = at  # the goods did leave the store
    if target == D.RETURNED and not d.failed_at:
        updates["failed_at"] = at
    Delivery.objects.filter(pk=d.pk).update(**updates)
    for name, value in updates.items():
        setattr(d, name, value)
    notes = [note] if note else []
    notes += _move_fulfillment(d, target)
    emit(topic=f"delivery.{target}", aggregate=d.fulfillment.order.aggregate, channel=d.fulfillment.order.channel,
         payload=delivery_payload(d))
    return "; ".join(notes) or "applied"


def _move_fulfillment(d: Delivery, target: str) -> list[str]:
    """The fulfillment steps this delivery status implies, from where the fulfillment is now."""
    f = Fulfillment.objects.get(pk=d.fulfillment_id)
    wanted = {
        D.PICKED_UP: [F.HANDED_TO_COURIER],
        D.DELIVERED: [F.HANDED_TO_COURIER, F.DELIVERED],
        D.FAILED: [F.DELIVERY_FAILED],  # only once the goods left (below)
        D.RETURNED: [F.HANDED_TO_COURIER, F.DELIVERY_FAILED, F.RETURNED_TO_STORE],
    }.get(target, [])
    if target == D.FAILED and f.status == F.PACKED:
        return ["failed before pickup: the goods never left the store"]
    notes = []
    for step in wanted:
        if f.status == step or step not in order_services.allowed_transitions(f):
            continue
        try:
            f = order_services.transition_fulfillment(
                fulfillment=f.pk, to=step, actor=f"courier:{d.provider}",
                courier_name=f"{d.provider}: {d.courier_name}".strip(": "), courier_tracking=d.external_id or "",
            )
        except (InvalidTransition, FulfillmentNotFound) as exc:
            notes.append(f"fulfillment not moved to {step}: {exc}")
            break
    return notes


def delivery_payload(d: Delivery) -> dict[str, Any]:
    f = d.fulfillment
    return {
        "order": f.order.number,
        "fulfillment": f.pk,
        "store": f.store.code,
        "delivery": d.pk,
        "provider": d.provider,
        "status": d.status,
        "courier": {"name": d.courier_name, "phone": d.courier_phone, "vehicle_plate": d.vehicle_plate},
        "tracking_url": d.tracking_url,
        "proof": {"photo_url": d.proof_photo_url, "recipient_name": d.recipient_name},
        "failure_reason": d.failure_reason,
        "sla_state": d.sla_state,
        "promised_by": f.promised_by,
    }


# --- dispatch ---------------------------------------------------------------------------------------------------------


def dispatch_fulfillment(*, fulfillment: Fulfillment | int, provider: str | None = None, actor: str = SYSTEM) -> Delivery:
    """Ask a courier provider to carry a packed delivery fulfillment. Raises NotDispatchable (409) if it is not
    packed, not a delivery, or already has an active courier; ProviderError (502) if the provider refused (the
    delivery is then recorded as cancelled with the reason)."""
    fid = fulfillment.pk if isinstance(fulfillment, Fulfillment) else fulfillment
    adapter = get_provider(provider or settings.O2O_COURIER_DEFAULT_PROVIDER)
    with transaction.atomic(durable=True):
        delivery = _create_delivery(fid=fid, provider=adapter.name)
    return _request_pickup(delivery, adapter)


def _create_delivery(*, fid: int, provider: str, attempt: int | None = None) -> Delivery:
    order_id = Fulfillment.objects.filter(pk=fid).values_list("order_id", flat=True).first()
    if order_id is None:
        raise FulfillmentNotFound(details={"fulfillment": fid})
    Order.objects.select_for_update().filter(pk=order_id).first()
    f = Fulfillment.objects.select_for_update().get(pk=fid)
    if f.method != Method.DELIVERY or f.status != F.PACKED:
        raise NotDispatchable(details={"fulfillment": fid, "status": f.status, "method": f.method})
    if f.deliveries.filter(status__in=ACTIVE).exists():
        raise NotDispatchable("This fulfillment already has an active courier.", details={"fulfillment": fid})
    attempt = attempt or f.deliveries.count() + 1
    try:
        with transaction.atomic():
            return Delivery.objects.create(fulfillment=f, provider=provider, attempt=attempt)
    except IntegrityError as exc:  # a concurrent dispatch won
        raise NotDispatchable("This fulfillment already has an active courier.", details={"fulfillment": fid}) from exc


def _request_pickup(delivery: Delivery, adapter) -> Delivery:
    delivery = Delivery.objects.select_related("fulfillment__order", "fulfillment__store").get(pk=delivery.pk)
    try:
        result = adapter.request_pickup(delivery)
    except ProviderError as exc:
        Delivery.objects.filter(pk=delivery.pk, status=D.REQUESTED).update(
            status=D.CANCELLED, cancelled_at=timezone.now(), status_changed_at=timezone.now(),
            failure_reason=f"provider refused the request: {exc.message} {exc.details}"[:300],
        )
        raise
    # A crash before this line leaves a requested delivery without an external id: the SLA watch re-dispatches it.
    Delivery.objects.filter(pk=delivery.pk, external_id__isnull=True).update(
        external_id=result.external_id, tracking_url=result.tracking_url[:500], fee_vnd=result.fee_vnd
    )
    delivery.refresh_from_db()
    return delivery


def dispatch_packed_deliveries(*, provider: str | None = None, limit: int = 200) -> int:
    """Dispatch packed delivery fulfillments that have no active courier (periodic task), up to
    O2O_COURIER_MAX_ATTEMPTS dispatches per fulfillment; the SLA watch escalates the rest."""
    active = Delivery.objects.filter(fulfillment=OuterRef("pk"), status__in=ACTIVE)
    ids = list(
        Fulfillment.objects.filter(method=Method.DELIVERY, status=F.PACKED)
        .exclude(Exists(active))
        .annotate(n=Count("deliveries"))
        .filter(n__lt=settings.O2O_COURIER_MAX_ATTEMPTS)
        .order_by("status_changed_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    done = 0
    for fid in ids:
        try:
            dispatch_fulfillment(fulfillment=fid, provider=provider)
            done += 1
        except (NotDispatchable, ProviderError) as exc:
            log.warning("dispatch of fulfillment %s: %s", fid, exc)
    return done


# --- the local courier ------------------------------------------------------------------------------------------------


def advance_local_deliveries(*, now: datetime | None = None, step_seconds: float | None = None) -> int:
    """Move the local courier's deliveries one step each when their step time has passed, by sending the events a
    real provider would send through apply_courier_event. Returns the number of events applied."""
    now = now or timezone.now()
    step = timedelta(seconds=settings.O2O_LOCAL_COURIER_STEP_SECONDS if step_seconds is None else step_seconds)
    due = (
        Delivery.objects.filter(provider=LocalCourier.name, external_id__isnull=False, status_changed_at__lte=now - step)
        .filter(Q(status__in=ACTIVE) | Q(status=D.FAILED, picked_up_at__isnull=False))
        .select_related("fulfillment__order")
        .order_by("pk")
    )
    applied = 0
    for d in due:
        provider_status = LocalCourier.next_step(d)
        if provider_status is None:
            continue
        outcome = apply_courier_event(provider=LocalCourier.name, payload=LocalCourier.payload(d, provider_status, at=now))
        applied += outcome.applied
    return applied


# --- the SLA watch ----------------------------------------------------------------------------------------------------


@dataclass
class WatchResult:
    at_risk: list[int] = field(default_factory=list)
    redispatched: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)


def watch_deliveries(*, now: datetime | None = None) -> WatchResult:
    """Flag deliveries that may miss their promise and act: no courier O2O_COURIER_SLA_ASSIGN_MINUTES after the
    request (made when the fulfillment was packed), or not picked up O2O_COURIER_SLA_PICKUP_MINUTES after the
    assignment: re-dispatch (cancel, request again) up to O2O_COURIER_MAX_REDISPATCH times, then escalate to staff.
    On the road past the promised time: flagged at risk. Packed, with every dispatch spent: escalated."""
    now = now or timezone.now()
    assign = timedelta(minutes=settings.O2O_COURIER_SLA_ASSIGN_MINUTES)
    pickup = timedelta(minutes=settings.O2O_COURIER_SLA_PICKUP_MINUTES)
    result = WatchResult()
    stuck = Delivery.objects.exclude(sla_state=SlaState.ESCALATED).filter(
        Q(status=D.REQUESTED, requested_at__lte=now - assign) | Q(status=D.ASSIGNED, assigned_at__lte=now - pickup)
    )
    for d in stuck.select_related("fulfillment").order_by("pk"):
        if d.fulfillment.status != F.PACKED:  # cancelled meanwhile: withdraw the courier, nothing to carry
            _redispatch(d, reason=f"fulfillment {d.fulfillment.status}", again=False)
            continue
        reason = ("no courier assigned" if d.status == D.REQUESTED else "not picked up") + " in time"
        if d.attempt <= settings.O2O_COURIER_MAX_REDISPATCH:
            new = _redispatch(d, reason=reason)
            if new is not None:
                result.at_risk.append(d.pk)
                result.redispatched.append(new.pk)
                continue
        if _flag(d.pk, SlaState.ESCALATED, f"{reason}; escalated to the store after {d.attempt} dispatch(es)"):
            result.escalated.append(d.pk)
    late = Delivery.objects.filter(status=D.PICKED_UP, sla_state=SlaState.OK, fulfillment__promised_by__lt=now)
    for pk in late.order_by("pk").values_list("pk", flat=True):
        if _flag(pk, SlaState.AT_RISK, "on the road past the promised time"):
            result.at_risk.append(pk)
    # Packed and waiting, every dispatch spent (failures before pickup, refusals): a person must act.
    active = Delivery.objects.filter(fulfillment=OuterRef("fulfillment"), status__in=ACTIVE)
    spent = (
        Delivery.objects.filter(fulfillment__status=F.PACKED, fulfillment__status_changed_at__lte=now - assign,
                                attempt__gte=settings.O2O_COURIER_MAX_ATTEMPTS)
        .exclude(sla_state=SlaState.ESCALATED).exclude(Exists(active))
    )
    for pk in spent.order_by("pk").values_list("pk", flat=True):
        if _flag(pk, SlaState.ESCALATED, "every dispatch failed; the parcel is still in the store"):
            result.escalated.append(pk)
    return result


def _flag(pk: int, state: str, note: str, *, unless_ended: bool = False) -> bool:
    with transaction.atomic(durable=True):
        order_id = Delivery.objects.filter(pk=pk).values_list("fulfillment__order_id", flat=True).first()
        Order.objects.select_for_update().filter(pk=order_id).first()
        d = Delivery.objects.select_for_update(of=("self",)).select_related("fulfillment__order__channel", "fulfillment__store").get(pk=pk)
        if d.sla_state == state or d.sla_state == SlaState.ESCALATED or (unless_ended and d.status in TERMINAL):
            return False
        Delivery.objects.filter(pk=pk).update(sla_state=state, sla_note=note[:300])
        d.sla_state, d.sla_note = state, note
        emit(topic=f"delivery.{state}", aggregate=d.fulfillment.order.aggregate, channel=d.fulfillment.order.channel,
             payload={**delivery_payload(d), "sla_note": note})
    return True


def escalate(*, delivery: Delivery | int, actor: str, note: str = "") -> bool:
    """Staff escalate a delivery to the store (SLA): flagged `escalated` and the website told, once. False when it
    was escalated already or has ended (delivered, cancelled, returned)."""
    pk = delivery.pk if isinstance(delivery, Delivery) else delivery
    return _flag(pk, SlaState.ESCALATED, note or f"escalated by {actor}", unless_ended=True)


def redispatch(*, delivery: Delivery | int, reason: str = "re-dispatched by staff") -> Delivery | None:
    """Cancel a delivery that has not been picked up and ask for a courier again (admin action, SLA watch)."""
    return _redispatch(Delivery.objects.get(pk=delivery.pk if isinstance(delivery, Delivery) else delivery), reason=reason)


def _redispatch(d: Delivery, *, reason: str, again: bool = True) -> Delivery | None:
    adapter = get_provider(d.provider)
    try:
        adapter.cancel(d, reason=reason)  # first, so a courier who already has the parcel makes the provider refuse
    except ProviderError as exc:
        log.warning("could not cancel %s: %s", d, exc)
        return None
    with transaction.atomic(durable=True):
        order_id = Delivery.objects.filter(pk=d.pk).values_list("fulfillment__order_id", flat=True).first()
        Order.objects.select_for_update().filter(pk=order_id).first()
        d = Delivery.objects.select_for_update(of=("self",)).select_related("fulfillment__order__channel", "fulfillment__store").get(pk=d.pk)
        if d.status not in (D.REQUESTED, D.ASSIGNED):
            return None  # picked up (or ended) meanwhile
        now = timezone.now()
        if not again:
            Delivery.objects.filter(pk=d.pk).update(
                status=D.CANCELLED, cancelled_at=now, status_changed_at=now, failure_reason=reason[:300]
            )
            return None
        note = f"{reason}: cancelled and requested again"
        Delivery.objects.filter(pk=d.pk).update(
            status=D.CANCELLED, cancelled_at=now, status_changed_at=now, sla_state=SlaState.AT_RISK,
            sla_note=note[:300], failure_reason=reason[:300],
        )
        d.status, d.sla_state, d.sla_note = D.CANCELLED, SlaState.AT_RISK, note
        emit(topic="delivery.at_risk", aggregate=d.fulfillment.order.aggregate, channel=d.fulfillment.order.channel,
             payload={**delivery_payload(d), "sla_note": note})
        try:
            new = _create_delivery(fid=d.fulfillment_id, provider=d.provider, attempt=d.attempt + 1)
        except NotDispatchable:
            return None  # the fulfillment was cancelled meanwhile: nothing to carry any more
    try:
        return _request_pickup(new, adapter)
    except ProviderError:
        return None
