"""Moving an order's lines to other stores: after a short pick (the store found fewer units) and by staff before
picking (reroute_order), with the same router and rules as placement."""

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from inventory import services as stock
from inventory.exceptions import InsufficientStock, InvalidStockChange
from inventory.models import MovementReason, Product, Store
from o2o.domain_errors import DomainError, IdempotencyKeyReused
from o2o.outbox import emit
from orders import promises, routing_input
from orders.candidate_stores import Candidate
from orders.exceptions import (
    InvalidShortPick,
    InvalidTransition,
    OrderNotFound,
    OrderNotReroutable,
    PickupNotReroutable,
    RerouteReasonRequired,
    RerouteUnserved,
)
from orders.models import (
    NOT_STARTED,
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    Method,
    Order,
    OrderLine,
    OrderStatus,
    RoutingDecision,
    RoutingKind,
)
from orders.services.cart import Cart
from orders.services.fulfilment import (
    fulfillment_units,
    lock_fulfillment,
    lock_order,
    retire_pickup_code,
    set_status,
    sync_order_status,
)
from orders.services.plans import (
    check_planned,
    create_fulfillments,
    planned_from_routed,
    record_decision,
)

log = logging.getLogger(__name__)
S = FulfillmentStatus
REROUTE_ATTEMPTS = 3  # plans of a re-route whose chosen store lost its units to a faster writer meanwhile


@transaction.atomic
def report_short_pick(*, fulfillment: Fulfillment | int, found: dict[int, int], actor: str) -> list[Fulfillment]:
    """The store found fewer units than expected: `found` maps product_id -> units actually found (lines not listed
    were found whole). The missing units are written off at this store (a stock adjustment, when the ledger allows
    it), the reservation shrinks to what was found, and the missing lines are re-routed to the next best store
    (delivery orders; a pickup order stays at its store, so its missing units are reported unfulfilled).
    Returns the new fulfillments."""
    now = timezone.now()
    order, f = lock_fulfillment(fulfillment)
    if f.status not in (S.ASSIGNED, S.PICKING):
        raise InvalidTransition(
            "Short picks are reported while picking.", details={"fulfillment": f.pk, "status": f.status}
        )
    lines = {line.product_id: line for line in f.lines.all()}
    missing: dict[int, int] = {}
    for pid, units in found.items():
        line = lines.get(pid)
        if line is None or not isinstance(units, int) or units < 0 or units > line.units:
            raise InvalidShortPick(details={"product_id": pid, "found": units})
        if units < line.units:
            missing[pid] = line.units - units
    if not missing:
        return []
    # The reservation shrinks to what was found: release, then reserve the found units again (same reference).
    keep = {pid: line.units - missing.get(pid, 0) for pid, line in lines.items() if line.units > missing.get(pid, 0)}
    stock.release_reservations(reference=f.reference, actor=actor, note="short pick")
    if keep:
        stock.reserve_stock(
            lines=[stock.StockLine(f.store_id, pid, qty) for pid, qty in sorted(keep.items())],
            reference=f.reference, actor=actor,
        )
    for pid, short in sorted(missing.items()):
        try:
            stock.adjust_stock(
                store=f.store, product=Product(pk=pid), reason=MovementReason.ADJUSTMENT, actor=actor, on_hand=-short,
                reference=f.reference, note="short pick: units not found",
            )
        except InvalidStockChange:
            log.warning("short pick on %s: could not write off %s × %s", f.reference, short, pid)
    if f.status == S.ASSIGNED:
        set_status(f, S.PICKING, now=now)
    return shrink_and_reroute(order=order, fulfillment=f, lines=lines, missing=missing, actor=actor, now=now).fulfillments


@dataclass
class Rerouted:
    """What shrink_and_reroute did: the fulfillments it created at other stores (none when nothing could take the
    units: they are unfulfilled), the decision it recorded, whether the source fulfillment was left with nothing
    (cancelled), and whether the promise moved (a new fulfillment promised later than the one it replaces)."""

    fulfillments: list[Fulfillment]
    decision: RoutingDecision
    cancelled: bool = False
    promise_moved: bool = False


def shrink_and_reroute(
    *,
    order: Order,
    fulfillment: Fulfillment,
    lines: dict[int, FulfillmentLine],
    missing: dict[int, int],
    actor: str,
    now: datetime,
    kind: str = RoutingKind.REROUTE,
    cause: str = "",
    why: str = "",
) -> Rerouted:
    """What a short pick and a store event that took a fulfillment's units share, once the fulfillment's
    reservation holds only what its store can still hand over: its lines (`lines`, product_id -> line) shrink by
    `missing` (picked_qty, the units it will hand over), a fulfillment left with nothing is cancelled, and the
    missing units are re-routed with the same router from `now` (other stores, split if the order allows; a pickup
    order stays at its store, its missing units unfulfilled). `kind`, `cause` and `why` (a sentence naming the event)
    go on the decision and the events. The caller holds the order's lock, then the fulfillment's."""
    f = fulfillment
    for pid, short in sorted(missing.items()):
        line = lines[pid]
        line.picked_qty = line.units - short
        FulfillmentLine.objects.filter(pk=line.pk).update(picked_qty=line.picked_qty)
    cancelled = not any(line.units > 0 for line in lines.values())
    if cancelled:
        stock.release_reservations(reference=f.reference, actor=actor, note="nothing left to pick")  # 0 if none
        set_status(f, S.CANCELLED, now=now)
        retire_pickup_code(f)
    result = _reroute(
        order=order, lines=missing, exclude_store_ids={f.store_id}, actor=actor, now=now, source=f, kind=kind,
        cause=cause, why=why,
    )
    result.cancelled = cancelled
    sync_order_status(order, now=now)
    return result


def _reroute(
    *, order: Order, lines: dict[int, int], exclude_store_ids: set[int], actor: str, now: datetime, source: Fulfillment,
    kind: str = RoutingKind.REROUTE, cause: str = "", why: str = "",
) -> Rerouted:
    skus = dict(Product.objects.filter(pk__in=lines).values_list("pk", "sku"))
    cart = Cart(lines, skus, {})
    candidates: list[Candidate] = []
    created: list[Fulfillment] = []
    # The plan reads stock without locks: another re-route or a checkout may take the chosen store's last units
    # before this one reserves them. Then plan again from fresh reads, a few times, before calling the units
    # unfulfilled: a lost race must end in a decision, never in an error that leaves the holder unsettled.
    for _ in range(REROUTE_ATTEMPTS if order.method == Method.DELIVERY else 0):
        candidates = routing_input.load_candidates(
            lat=order.destination_lat, lon=order.destination_lon, lines=lines, method="delivery", at=now,
            exclude_store_ids=exclude_store_ids,
        )
        served = promises.fastest_delivery(
            lines=lines, candidates=candidates, skus=skus, lat=order.destination_lat, lon=order.destination_lon,
            allow_split=order.allow_split, at=now,
        )
        if not served:
            break
        routed = served[0]
        planned = planned_from_routed(routed, cart=cart)
        # The promise kept where possible: when every new parcel can arrive by the time promised before (its
        # store's ready time, then the ride), the customer's time stands; otherwise the new window's end.
        arrive = max(
            routing_input.ready_time(s.candidate, at=now)
            + timedelta(minutes=routing_input.travel_minutes(s.candidate.distance_km))
            for s in routed.shipments
        )
        if arrive <= source.promised_by:
            planned.promised_by = source.promised_by
        check_planned(planned)
        round_no = (order.fulfillments.aggregate(m=Max("round"))["m"] or 0) + 1
        try:
            with transaction.atomic():  # a refused reservation undoes this attempt's fulfilments only
                created = create_fulfillments(order=order, planned=planned, round_no=round_no, actor=actor, now=now)
        except InsufficientStock:
            continue
        break
    if created:
        decision = dict(planned.decision)
        if why:
            decision["reason"] = f"{why} {decision.get('reason', '')}".strip()
        record = record_decision(order=order, kind=kind, decision=decision, now=now, cause=cause)
        codes = {s.store_id: s.code for s in planned.shipments}
        promised_by = max(f.promised_by for f in created)
        moved = promised_by > source.promised_by
        emit(
            topic="order.rerouted", aggregate=order.aggregate, channel=order.channel,
            payload={
                "order": order.number, "kind": str(kind), "cause": cause, "from_store": source.store.code,
                "fulfillments": [
                    {"id": f.pk, "store_id": f.store_id, "store": codes.get(f.store_id), "promised_by": f.promised_by}
                    for f in created
                ],
                "reason": record.reason,
                # The customer is told when the promise moves: the latest new parcel against the one replaced.
                "promised_by_before": source.promised_by, "promised_by": promised_by, "promise_moved": moved,
            },
        )
        return Rerouted(fulfillments=created, decision=record, promise_moved=moved)
    for pid, qty in lines.items():
        OrderLine.objects.filter(order=order, product_id=pid).update(unfulfilled_qty=F("unfulfilled_qty") + qty)
    reason = "pickup orders stay at their store" if order.method == Method.PICKUP else "no other store can serve"
    what = "Short lines" if kind == RoutingKind.REROUTE else "The units taken"
    record = RoutingDecision.objects.create(
        order=order, kind=kind, plan_status="unserved", problem={}, plan={},
        candidates=routing_input.candidate_summary(candidates, lines=lines, skus=skus, slot_hours=2, chosen=set()),
        reason=f"{why} {what} not re-routed: {reason}.".strip(), applied=False, cause=cause[:120], created_at=now,
    )
    emit(
        topic="order.lines_unfulfilled", aggregate=order.aggregate, channel=order.channel,
        payload={"order": order.number, "lines": [{"sku": skus[p], "qty": q} for p, q in lines.items()],
                 "reason": reason, "cause": cause},
    )
    return Rerouted(fulfillments=[], decision=record)


@dataclass
class RerouteResult:
    """What reroute_order did. `changed` is False when the router kept the order where it was (nothing written);
    `replayed` is True when the idempotency key named an earlier re-route (its fulfillments are returned)."""

    order: Order
    changed: bool
    from_stores: list[str]
    fulfillments: list[Fulfillment]
    decision: RoutingDecision | None = None
    replayed: bool = False

    @property
    def stores(self) -> list[str]:
        return sorted({f.store.code for f in self.fulfillments})


def reroute_order(
    *,
    order: Order | int,
    reason: str,
    actor: str,
    exclude_store_ids: set[int] | None = None,
    avoid_current_stores: bool = False,
    within_store_ids: set[int] | None = None,
    idempotency_key: str = "",
    now: datetime | None = None,
) -> RerouteResult:
    """Route an order that no store has started picking again, with the stock of now, and move it if the router
    chooses other stores: the current fulfillments are cancelled and their reservations released, new ones are
    reserved, and a `manual` routing decision records the reason and the actor. `avoid_current_stores` (or
    `exclude_store_ids`) keeps the router away from stores; otherwise it may keep the same store(s), and then
    nothing changes. `within_store_ids` (a staff member's store scope) limits the stores it may choose. The same
    `idempotency_key` again returns the first re-route instead of a second; with another reason or other stores to
    avoid it is refused (IdempotencyKeyReused, 422).

    Raises RerouteReasonRequired (400), OrderNotFound (404), PickupNotReroutable (409: a pickup stays at the
    customer's store), OrderNotReroutable (409: closed, or a fulfillment is picking or beyond) and RerouteUnserved
    (409: no store can serve it now; nothing changed)."""
    reason = (reason or "").strip()
    if not reason:
        raise RerouteReasonRequired()
    order_id = order.pk if isinstance(order, Order) else order
    for attempt in range(2):
        try:
            with transaction.atomic():
                return _reroute_order(
                    order_id=order_id, reason=reason[:500], actor=actor, exclude=set(exclude_store_ids or ()),
                    avoid_current=avoid_current_stores, within=within_store_ids, idempotency_key=idempotency_key[:200],
                    now=now or timezone.now(),
                )
        except InsufficientStock as exc:
            # Another order took the units between routing and reserving (routing does not lock stock rows);
            # the savepoint undid everything, so route once more with the stock of now.
            if attempt == 1:
                raise RerouteUnserved(
                    "The stock moved while the order was re-routed; nothing was changed. Try again.",
                    details=exc.details,
                ) from exc
            now = None
    raise AssertionError("unreachable")


def reroute_refusal(*, order: Order, live: list[Fulfillment] | None = None) -> DomainError | None:
    """Why reroute_order would refuse this order now (the error it would raise), or None if it may be re-routed.
    `live`: its fulfillments that are not cancelled, if the caller has them (reroute_order, under its locks)."""
    if order.method == Method.PICKUP:
        return PickupNotReroutable(details={"order": order.number})
    if live is None:
        live = list(order.fulfillments.exclude(status=S.CANCELLED).select_related("store").order_by("pk"))
    if order.status != OrderStatus.OPEN or not live or any(f.status not in NOT_STARTED for f in live):
        return OrderNotReroutable(
            details={
                "order": order.number, "order_status": order.status,
                "fulfillments": [{"id": f.pk, "store": f.store.code, "status": f.status} for f in live],
            }
        )
    return None


def _reroute_order(
    *, order_id: int, reason: str, actor: str, exclude: set[int], avoid_current: bool, within: set[int] | None,
    idempotency_key: str, now: datetime,
) -> RerouteResult:
    try:
        # The order's lock is what picking takes first too: a concurrent start of picking either committed before
        # (and is seen below) or waits until this re-route has committed (and then finds its fulfillment cancelled).
        order = lock_order(order_id)
    except Order.DoesNotExist as exc:
        raise OrderNotFound(details={"order": order_id}) from exc
    if idempotency_key:
        earlier = (
            RoutingDecision.objects.filter(
                order=order, kind=RoutingKind.MANUAL, plan__manual__idempotency_key=idempotency_key
            )
            .order_by("pk")
            .first()
        )
        if earlier is not None:
            manual = earlier.plan.get("manual", {})
            asked = {"reason": reason, "avoid_current": avoid_current, "excluded_ids": sorted(exclude)}
            if {k: manual.get(k) for k in asked} != asked:
                raise IdempotencyKeyReused(details={"idempotency_key": idempotency_key, "order": order.number})
            return RerouteResult(
                order=order, changed=True, from_stores=manual.get("from_stores", []), decision=earlier, replayed=True,
                fulfillments=list(
                    Fulfillment.objects.filter(pk__in=manual.get("fulfillments", [])).select_related("store").order_by("pk")
                ),
            )
    live = list(
        Fulfillment.objects.select_for_update(of=("self",))
        .select_related("store")
        .prefetch_related("lines")
        .filter(order=order)
        .exclude(status=S.CANCELLED)
        .order_by("pk")
    )
    refusal = reroute_refusal(order=order, live=live)
    if refusal is not None:
        raise refusal
    lines: dict[int, int] = defaultdict(int)
    held_stock: dict[tuple[int, int], int] = defaultdict(int)
    held_lines: dict[int, int] = defaultdict(int)
    slot_end = now + timedelta(hours=2)  # load_candidates counts the lines promised within its 2 h slot
    for f in live:
        for line in f.lines.all():
            lines[line.product_id] += line.units
            held_stock[(f.store_id, line.product_id)] += line.units
            if f.promised_by < slot_end:
                held_lines[f.store_id] += 1
    lines = {pid: qty for pid, qty in lines.items() if qty > 0}
    from_stores = sorted({f.store.code for f in live})
    asked_exclude = sorted(exclude)
    if avoid_current:
        exclude |= {f.store_id for f in live}
    avoided = sorted(Store.objects.filter(pk__in=exclude).values_list("code", flat=True))
    if within is not None:
        exclude |= set(Store.objects.exclude(pk__in=within).values_list("pk", flat=True))
    skus = dict(Product.objects.filter(pk__in=lines).values_list("pk", "sku"))
    # What this order holds counts as available to it: the router may keep it where it is.
    candidates = routing_input.load_candidates(
        lat=order.destination_lat, lon=order.destination_lon, lines=lines, method="delivery", at=now,
        exclude_store_ids=exclude, extra_stock=held_stock, extra_capacity=held_lines,
    )
    served = promises.fastest_delivery(
        lines=lines, candidates=candidates, skus=skus, lat=order.destination_lat, lon=order.destination_lon,
        allow_split=order.allow_split, at=now,
    )
    if not served:
        raise RerouteUnserved(
            details={
                "order": order.number, "excluded_stores": avoided, "within_scope": within is not None,
                "candidates": [c.code for c in candidates],
            }
        )
    planned = planned_from_routed(served[0], cart=Cart(lines, skus, {}))
    check_planned(planned)
    current = {(f.store_id, tuple(sorted(fulfillment_units(f).items()))) for f in live}
    if {(s.store_id, tuple(sorted(s.lines.items()))) for s in planned.shipments} == current:
        return RerouteResult(order=order, changed=False, from_stores=from_stores, fulfillments=live)
    for f in live:
        stock.release_reservations(reference=f.reference, actor=actor, note=f"re-routed: {reason}"[:200])
        set_status(f, S.CANCELLED, now=now)
        retire_pickup_code(f)
    round_no = (order.fulfillments.aggregate(m=Max("round"))["m"] or 0) + 1
    created = create_fulfillments(order=order, planned=planned, round_no=round_no, actor=actor, now=now)
    created = list(Fulfillment.objects.filter(pk__in=[f.pk for f in created]).select_related("store").order_by("pk"))
    to_stores = sorted({f.store.code for f in created})
    decision = dict(planned.decision)
    decision["reason"] = (
        f"Re-routed by {actor} from {', '.join(from_stores)} to {', '.join(to_stores)}: {reason}. "
        f"{decision.get('reason', '')}"
    ).strip()
    decision["plan"] = {
        **decision.get("plan", {}),
        "manual": {
            "actor": actor, "reason": reason, "idempotency_key": idempotency_key, "from_stores": from_stores,
            "avoid_current": avoid_current, "excluded_ids": asked_exclude, "excluded_stores": avoided,
            "within_scope": within is not None, "cancelled": [f.pk for f in live],
            "fulfillments": [f.pk for f in created],
        },
    }
    record = record_decision(order=order, kind=RoutingKind.MANUAL, decision=decision, now=now)
    Order.objects.filter(pk=order.pk).update(updated_at=now)
    sync_order_status(order, now=now)
    emit(
        topic="order.rerouted", aggregate=order.aggregate, channel=order.channel,
        payload={
            "order": order.number, "kind": RoutingKind.MANUAL.value, "from_stores": from_stores,
            "fulfillments": [
                {"id": f.pk, "store_id": f.store_id, "store": f.store.code, "promised_by": f.promised_by}
                for f in created
            ],
            "reason": reason, "actor": actor, "routing_reason": record.reason,
        },
    )
    log.info("order %s re-routed by %s: %s -> %s", order.number, actor, from_stores, to_stores)
    return RerouteResult(order=order, changed=True, from_stores=from_stores, fulfillments=created, decision=record)
