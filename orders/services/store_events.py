"""The shop floor is the truth (issue #18): what a store event took from online commitments, reconciled.

A till sale, a count that finds fewer units, goods found damaged or a transfer shipped is recorded as it happened
(inventory.services, the stock ledger). When the store had no free units to give, the event takes units the ledger
held for online checkouts or placed orders: inventory shrinks those reservations in the event's own transaction,
choosing them with `takeable` (this module's policy, handed to it by the caller), and appends one
inventory.models.TakenReservation per (reservation, event). `reconcile_taken` then settles each holder, right after
that transaction commits (the POS calls it in the same request) or from the periodic task for anything left pending:

- a checkout hold ('hold:<id>'): its website is told what was taken and what is left (`hold.reduced`; nothing left =
  dropped); it quotes again, and an order placed from the old promise gets a 409 with a fresh one.
- a delivery fulfillment not yet packed: as a short pick (orders.services.reroute.shrink_and_reroute): its lines
  shrink to what the reservation still holds, a fulfillment left with nothing is cancelled, and the units taken are
  re-routed with the same router from now (other stores, split if allowed); a `store_event` routing decision with
  the event as its cause; `order.rerouted` says whether the promise moved; nothing to re-route to: the lines are
  unfulfilled (`order.lines_unfulfilled`).
- a pickup fulfillment not yet packed: pickups stay where the customer chose, so the customer gets a ChangeOffer
  (`order.change_offered`): move the whole order to the nearest other pickup store that can serve it now, keep what
  is left, or cancel; answered through the API (accept_change_offer) or applied as `keep` at its expiry
  (expire_change_offers).
- a fulfillment packed or beyond by the time it is reconciled (it was picking when the event read it): the goods are
  in the bag; the outcome says so, and the handover commits only what is still reserved.

Each TakenReservation gets `reconciled_at` and `outcome` in the transaction that settles it, so a replay changes
nothing; rows are claimed FOR UPDATE SKIP LOCKED, so two runners never settle one twice. Locks: the taken rows
(never waited for), then the order, the fulfillment, stock rows last (through inventory.services), as everywhere in
orders.services.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Sum
from django.utils import timezone

from inventory import services as stock
from inventory.models import EventKind, Product, Reservation, Store, TakenReservation
from o2o.models import SalesChannel
from o2o.outbox import emit
from orders import promises, routing_input
from orders.exceptions import (
    ChangeOfferNotFound,
    ChangeOfferNotOpen,
    ChangeOptionUnavailable,
    FulfillmentNotFound,
    UnknownChangeOption,
)
from orders.models import (
    ChangeOffer,
    ChangeOfferStatus,
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    Method,
    Order,
    OrderLine,
    OrderStatus,
    PickupCode,
    RoutingKind,
)
from orders.services.cancel import cancel_order
from orders.services.cart import Cart
from orders.services.fulfilment import lock_fulfillment, lock_order, retire_pickup_code, set_status, sync_order_status
from orders.services.plans import check_planned, create_fulfillments, planned_from_routed, record_decision
from orders.services.reroute import shrink_and_reroute

log = logging.getLogger(__name__)
S = FulfillmentStatus
SYSTEM = "system:store_events"
# The POS reconciles its own takes right after its commit; the periodic task leaves them this long to do so.
PENDING_GRACE = timedelta(seconds=10)
PENDING_BATCH = 500
# A store event may take these, in this order (after checkout holds); packed goods are in a bag: never.
TAKEABLE_STATUSES = (S.ASSIGNED, S.PICKING)
# A pickup the customer may still move or cancel (its goods have not left the store).
CHANGEABLE_STATUSES = frozenset({S.ASSIGNED, S.PICKING, S.PACKED, S.READY_FOR_PICKUP})

EVENT_WORDS = {
    EventKind.SALE: ("A till sale", "receipt"),
    EventKind.COUNT: ("A stock count", "count"),
    EventKind.DAMAGE: ("Goods found damaged", "report"),
    EventKind.TRANSFER: ("A transfer shipped", "transfer"),
}


# --- the policy: which reservations a physical event may take ---------------------------------------------------------


def takeable(reservations: Sequence[Reservation]) -> list[Reservation]:
    """The reservations a store event may take units from, in the order it should take them: checkout holds
    ('hold:<id>') newest first, then fulfillments still assigned, newest first, then those picking, newest first.
    Fulfillments packed or beyond (the goods are in a bag), cancelled or unknown, and any other reference, are never
    taken. One query (the fulfillments' statuses), no locks: the caller holds the stock rows, and a fulfillment
    packed meanwhile is what reconcile_taken records as a race."""
    holds: list[Reservation] = []
    by_fulfillment: dict[int, list[Reservation]] = defaultdict(list)
    for r in reservations:
        kind, _, ident = r.reference.partition(":")
        if kind == "hold" and ident:
            holds.append(r)
        elif kind == "fulfillment" and ident.isdigit():
            by_fulfillment[int(ident)].append(r)
    holds.sort(key=lambda r: (r.created_at, r.pk), reverse=True)
    fulfillments = []
    if by_fulfillment:
        fulfillments = list(
            Fulfillment.objects.filter(pk__in=list(by_fulfillment), status__in=TAKEABLE_STATUSES).values_list(
                "pk", "status", "created_at"
            )
        )
    taken = list(holds)
    for status in TAKEABLE_STATUSES:
        for pk, _, _ in sorted((f for f in fulfillments if f[1] == status), key=lambda f: (f[2], f[0]), reverse=True):
            taken += sorted(by_fulfillment[pk], key=lambda r: r.pk)
    return taken


# --- reconciling the holders ------------------------------------------------------------------------------------------


@dataclass
class Reconciled:
    """How one holder was reconciled for one event: `reference` (the reservation's), `cause` (the event's ledger
    reference), the TakenReservation ids settled, and `outcome` (the sentence stored on them). `result` is one of
    hold_reduced, hold_dropped, rerouted, unfulfilled, change_offered, nothing_missing, packed, closed, unknown.
    `order`: the order's number; `decision` and `offer`: the RoutingDecision and ChangeOffer ids written;
    `fulfillments`: ids of new fulfillments; `promise_moved`: a re-route promised later than before."""

    reference: str
    cause: str
    taken_ids: list[int]
    result: str
    outcome: str
    order: str | None = None
    decision: int | None = None
    offer: int | None = None
    fulfillments: list[int] = field(default_factory=list)
    promise_moved: bool = False


def reconcile_taken(
    *, ids: Iterable[int] | None = None, now: datetime | None = None, actor: str = SYSTEM
) -> list[Reconciled]:
    """Settle the holders of reservations that store events took: the TakenReservation rows `ids` (the caller's,
    right after its event committed), or every pending one older than PENDING_GRACE (the periodic task). Rows are
    grouped by (reservation reference, event), each group settled in its own transaction; rows already reconciled,
    or being reconciled by another runner (locked: skipped, not waited for), are left alone, so calling it again
    changes nothing. A group that fails is logged and stays pending for the next run. Returns what was done, one
    Reconciled per group settled now."""
    if ids is not None:
        ids = list(ids)
        if not ids:  # the common case after a till sale: nothing taken, nothing to read
            return []
    now = now or timezone.now()
    pending = TakenReservation.objects.filter(reconciled_at__isnull=True)
    if ids is not None:
        pending = pending.filter(pk__in=ids)
    else:
        pending = pending.filter(created_at__lte=now - PENDING_GRACE)
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for pk, reference, cause in pending.order_by("pk").values_list("pk", "reference", "cause")[:PENDING_BATCH]:
        groups[(reference, cause)].append(pk)
    done = []
    for (reference, cause), pks in groups.items():
        try:
            with transaction.atomic():
                result = _reconcile_group(pks=pks, reference=reference, cause=cause, now=now, actor=actor)
        except Exception:  # the event is recorded whatever happens here: the next run tries again
            log.exception("could not reconcile %s taken by %s (TakenReservation %s)", reference, cause, pks)
            continue
        if result is not None:
            done.append(result)
    return done


def _reconcile_group(*, pks: list[int], reference: str, cause: str, now: datetime, actor: str) -> Reconciled | None:
    takes = list(
        TakenReservation.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk__in=pks, reconciled_at__isnull=True)
        .order_by("pk")
    )
    if not takes:
        return None  # another runner has them, or they were reconciled meanwhile
    kind, _, ident = reference.partition(":")
    if kind == "hold" and ident:
        result = _reconcile_hold(takes=takes, reference=reference, cause=cause)
    elif kind == "fulfillment" and ident.isdigit():
        result = _reconcile_fulfillment(takes=takes, fulfillment_id=int(ident), cause=cause, now=now, actor=actor)
    else:
        result = Reconciled(reference, cause, [], "unknown", "Not an online commitment this service knows: nothing to do.")
    result.taken_ids = [t.pk for t in takes]
    TakenReservation.objects.filter(pk__in=result.taken_ids).update(reconciled_at=now, outcome=result.outcome[:300])
    return result


def _taken_units(takes: list[TakenReservation]) -> dict[int, int]:
    units: dict[int, int] = defaultdict(int)
    for t in takes:
        units[t.product_id] += t.units
    return dict(units)


def _sku_lines(units: dict[int, int], skus: dict[int, str]) -> list[dict]:
    return [{"sku": skus[pid], "qty": qty} for pid, qty in sorted(units.items(), key=lambda kv: skus[kv[0]])]


def _units_text(units: dict[int, int], skus: dict[int, str]) -> str:
    return ", ".join(f"{qty} × {skus[pid]}" for pid, qty in sorted(units.items(), key=lambda kv: skus[kv[0]]))


def describe_event(*, kind: str, cause: str, store_code: str) -> str:
    """The event as operations and customers read it: "A till sale at HCM-Q1-001 (receipt R-0042)"."""
    phrase, label = EVENT_WORDS.get(kind, ("A store event", "reference"))
    head = f"{cause.split(':', 1)[0]}:{store_code}:"
    ident = cause[len(head):] if cause.startswith(head) else cause
    return f"{phrase} at {store_code} ({label} {ident})"


def _reconcile_hold(*, takes: list[TakenReservation], reference: str, cause: str) -> Reconciled:
    """The website learns what its checkout hold lost and what is left (0 everywhere: the hold is gone)."""
    taken = _taken_units(takes)
    left = dict(
        Reservation.objects.filter(reference=reference)
        .values("product_id")
        .annotate(n=Sum("quantity"))
        .values_list("product_id", "n")
    )
    skus = dict(Product.objects.filter(pk__in=set(taken) | set(left)).values_list("pk", "sku"))
    store_code = Store.objects.filter(pk=takes[0].store_id).values_list("code", flat=True).first() or ""
    channel_id = next((t.channel_id for t in takes if t.channel_id), None)
    channel = SalesChannel.objects.filter(pk=channel_id).first() if channel_id else None
    dropped = not any(left.values())
    event = describe_event(kind=takes[0].kind, cause=cause, store_code=store_code)
    emit(
        topic="hold.reduced", aggregate=reference, channel=channel,
        payload={
            "hold": reference, "store": store_code, "cause": cause, "event": takes[0].kind,
            "taken": _sku_lines(taken, skus),
            "left": _sku_lines({pid: left.get(pid, 0) for pid in set(taken) | set(left)}, skus),
            "dropped": dropped,
            "reason": f"{event} took {_units_text(taken, skus)}; quote the cart again.",
        },
    )
    told = f"{channel.code} told (hold.reduced)" if channel else "no website on the hold: the event is recorded"
    if dropped:
        outcome = f"Checkout hold dropped: {_units_text(taken, skus)} taken, nothing left; {told}."
        return Reconciled(reference, cause, [], "hold_dropped", outcome)
    outcome = (
        f"Checkout hold reduced: {_units_text(taken, skus)} taken, "
        f"{_units_text({p: q for p, q in left.items() if q}, skus)} left; {told}."
    )
    return Reconciled(reference, cause, [], "hold_reduced", outcome)


def _reconcile_fulfillment(
    *, takes: list[TakenReservation], fulfillment_id: int, cause: str, now: datetime, actor: str
) -> Reconciled:
    reference = f"fulfillment:{fulfillment_id}"
    try:
        order, f = lock_fulfillment(fulfillment_id)
    except FulfillmentNotFound:
        return Reconciled(reference, cause, [], "unknown", "The fulfillment no longer exists: nothing to do.")
    if f.status not in TAKEABLE_STATUSES:
        if f.status != S.CANCELLED:
            outcome = (
                f"Already {f.status} when reconciled (the event read it while it was picking): the goods are in the "
                "bag, so nothing was re-routed; the handover commits only what is still reserved, and the count "
                "the event asked for settles the shelf."
            )
            return Reconciled(reference, cause, [], "packed", outcome, order=order.number)
        outcome = "Already cancelled when reconciled (a short pick, re-route or cancellation came first): nothing to do."
        return Reconciled(reference, cause, [], "closed", outcome, order=order.number)
    lines = {line.product_id: line for line in FulfillmentLine.objects.filter(fulfillment=f).select_related("product")}
    skus = {pid: line.product.sku for pid, line in lines.items()}
    reserved = dict(
        Reservation.objects.filter(reference=f.reference)
        .values("product_id")
        .annotate(n=Sum("quantity"))
        .values_list("product_id", "n")
    )
    # What to move is read from the state, not only from the event: a short pick or another event may already have
    # moved some of the units; at most what this event took, never more than the reservation lacks.
    to_move = {}
    for pid, units in _taken_units(takes).items():
        line = lines.get(pid)
        lacking = line.units - reserved.get(pid, 0) if line else 0
        if lacking > 0:
            to_move[pid] = min(units, lacking)
    if not to_move:
        outcome = "Nothing missing: the fulfillment already holds what it will hand over (a short pick came first)."
        return Reconciled(reference, cause, [], "nothing_missing", outcome, order=order.number)
    event = describe_event(kind=takes[0].kind, cause=cause, store_code=f.store.code)
    why = f"{event} took {_units_text(to_move, skus)}."
    Order.objects.filter(pk=order.pk).update(updated_at=now)
    if order.method == Method.PICKUP:
        return _offer_change(
            order=order, f=f, lines=lines, to_move=to_move, skus=skus, cause=cause, kind=takes[0].kind, why=why,
            actor=actor, now=now,
        )
    done = shrink_and_reroute(
        order=order, fulfillment=f, lines=lines, missing=to_move, actor=actor, now=now, kind=RoutingKind.STORE_EVENT,
        cause=cause, why=why,
    )
    left = "cancelled (nothing left)" if done.cancelled else "kept with what is left"
    if done.fulfillments:
        stores = ", ".join(sorted(Store.objects.filter(pk__in=[n.store_id for n in done.fulfillments])
                                  .values_list("code", flat=True)))
        moved = "the promise moved, customer told" if done.promise_moved else "the promise kept"
        outcome = f"Re-routed {_units_text(to_move, skus)} to {stores} ({moved}); {f.store.code} {left}."
        result = "rerouted"
    else:
        outcome = f"No other store can serve {_units_text(to_move, skus)}: unfulfilled, customer told; {f.store.code} {left}."
        result = "unfulfilled"
    return Reconciled(
        reference, cause, [], result, outcome, order=order.number, decision=done.decision.pk,
        fulfillments=[n.pk for n in done.fulfillments], promise_moved=done.promise_moved,
    )


# --- pickups: a change offered to the customer ------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return timezone.localtime(moment).isoformat()


def _option(*, id: str, kind: str, store: Store | None = None, distance_km: float | None = None,
            ready_by: datetime | None = None, lines: list | None = None, missing: list | None = None) -> dict:
    return {
        "id": id, "kind": kind, "store": store.code if store else None, "store_name": store.name if store else "",
        "distance_km": distance_km, "ready_by": _iso(ready_by) if ready_by else None, "lines": lines or [],
        "missing": missing or [],
    }


def _offer_change(
    *, order: Order, f: Fulfillment, lines: dict[int, FulfillmentLine], to_move: dict[int, int], skus: dict[int, str],
    cause: str, kind: str, why: str, actor: str, now: datetime,
) -> Reconciled:
    """The pick list shrinks to what the store still holds (what it can hand over), and the customer is offered:
    the whole order at the nearest other pickup store that can serve it now, what is left here, or cancelling."""
    pid_of = {sku: pid for pid, sku in skus.items()}
    missing = dict(to_move)
    # A later event replaces an open offer of the same pickup: its missing units carry over into the new one.
    for prior in ChangeOffer.objects.select_for_update().filter(fulfillment=f, status=ChangeOfferStatus.OPEN):
        for m in prior.missing:
            pid = pid_of.get(m["sku"])
            if pid is not None:
                missing[pid] = missing.get(pid, 0) + m["qty"]
        ChangeOffer.objects.filter(pk=prior.pk).update(
            status=ChangeOfferStatus.SUPERSEDED, decided_at=now, decided_by=actor[:150]
        )
    for pid, short in sorted(to_move.items()):
        line = lines[pid]
        line.picked_qty = line.units - short
        FulfillmentLine.objects.filter(pk=line.pk).update(picked_qty=line.picked_qty)
    left = {pid: line.units for pid, line in lines.items() if line.units > 0}
    whole = {pid: line.units + missing.get(pid, 0) for pid, line in lines.items() if line.units + missing.get(pid, 0) > 0}
    candidates = routing_input.load_candidates(
        lat=f.store.lat, lon=f.store.lon, lines=whole, method="pickup", at=now,
        radius_km=settings.O2O_PICKUP_SEARCH_RADIUS_KM, k=settings.O2O_PICKUP_OPTIONS, only_whole_cart=True,
        exclude_store_ids={f.store_id},
    )
    move = None
    for c in candidates:  # nearest first
        if c.capacity(promises.TIER_SLOT_HOURS["pickup"]) < len(whole):
            continue
        routed = promises.pickup_at(lines=whole, candidate=c, skus=skus, at=now)
        if routed.served:
            move = (c, routed)
            break
    options = []
    if move:
        c, routed = move
        options.append(_option(
            id="move", kind="move", store=Store(pk=c.store_id, code=c.code, name=c.name), distance_km=c.distance_km,
            ready_by=routed.window_end, lines=_sku_lines(whole, skus),
        ))
    if left:
        options.append(_option(
            id="keep", kind="keep", store=f.store, distance_km=0.0, ready_by=f.promised_by, lines=_sku_lines(left, skus),
            missing=_sku_lines(missing, skus),
        ))
    options.append(_option(id="cancel", kind="cancel", missing=_sku_lines(missing, skus)))
    expires_at = now + timedelta(minutes=settings.O2O_CHANGE_OFFER_TTL_MINUTES)
    offer = ChangeOffer.objects.create(
        order=order, fulfillment=f, cause=cause[:120], event_kind=kind, missing=_sku_lines(missing, skus),
        options=options, expires_at=expires_at, created_at=now,
    )
    choices = []
    if move:
        choices.append(f"move the whole order to {move[0].code} (ready by {_iso(move[1].window_end)[:16]})")
    if left:
        choices.append(f"keep what is left at {f.store.code}")
    choices.append("cancel")
    reason = (
        f"{why} Pickup orders stay at the customer's store: offered {' / '.join(choices)} until "
        f"{_iso(expires_at)[:16]} (then: {'keep' if left else 'cancel'})."
    )
    chosen = {move[0].code} if move else set()
    decision = record_decision(
        order=order, kind=RoutingKind.STORE_EVENT, now=now, cause=cause, applied=False,
        decision={
            "plan_status": "offered",
            "problem": move[1].problem if move else {},
            "plan": {**(move[1].plan if move else {}), "change_offer": offer.pk},
            "candidates": routing_input.candidate_summary(candidates, lines=whole, skus=skus, slot_hours=2, chosen=chosen),
            "reason": reason,
            "solve_ms": round(move[1].solve_ms, 3) if move else 0,
        },
    )
    emit(
        topic="order.change_offered", aggregate=order.aggregate, channel=order.channel,
        payload={
            "order": order.number, "offer": offer.pk, "cause": cause, "event": kind, "store": f.store.code,
            "missing": offer.missing, "options": options, "expires_at": expires_at, "reason": why,
        },
    )
    outcome = f"Pickup: change offered to the customer ({', '.join(o['id'] for o in options)}; offer {offer.pk})."
    return Reconciled(f.reference, cause, [], "change_offered", outcome, order=order.number, decision=decision.pk,
                      offer=offer.pk)


@transaction.atomic
def accept_change_offer(*, order: Order | int, offer: int, option: str, actor: str) -> ChangeOffer:
    """Apply the customer's answer to an open change offer of their order: `move` (the current pickup cancelled, a
    new one at the offered store with a new pickup code, reserved there), `keep` (the missing units unfulfilled) or
    `cancel` (cancel_order). Raises ChangeOfferNotFound (404: not an offer of this order), ChangeOfferNotOpen (409:
    answered, expired or replaced; or the pickup was collected meanwhile), UnknownChangeOption (422) and
    ChangeOptionUnavailable (409: the offered store can no longer serve the whole order; nothing changed)."""
    now = timezone.now()
    order_id = order.pk if isinstance(order, Order) else order
    fid = ChangeOffer.objects.filter(pk=offer, order_id=order_id).values_list("fulfillment_id", flat=True).first()
    if fid is None:
        raise ChangeOfferNotFound(details={"offer": offer})
    locked_order, f = lock_fulfillment(fid)
    row = ChangeOffer.objects.select_for_update().get(pk=offer)
    if row.status != ChangeOfferStatus.OPEN or row.expires_at <= now:
        raise ChangeOfferNotOpen(details={"offer": row.pk, "status": row.status, "expires_at": row.expires_at})
    if _closed(locked_order, f):
        # Cancelled meanwhile (the customer cancelled instead of answering, or staff cancelled the pickup): nothing
        # is left to keep, move or cancel; the expiry closes the offer.
        raise ChangeOfferNotOpen(
            "The order was cancelled meanwhile: this change offer can no longer be answered.",
            details={"offer": row.pk, "status": row.status, "order_status": locked_order.status,
                     "fulfillment_status": f.status},
        )
    ids = [o["id"] for o in row.options]
    if option not in ids:
        raise UnknownChangeOption(details={"offer": row.pk, "option": option, "options": ids})
    if option != "keep" and f.status not in CHANGEABLE_STATUSES:
        raise ChangeOfferNotOpen(
            f"The pickup is {f.status}: it can no longer be moved or cancelled.",
            details={"offer": row.pk, "status": row.status, "fulfillment_status": f.status},
        )
    _apply(offer=row, order=locked_order, f=f, option=option, actor=actor, now=now, status=ChangeOfferStatus.ACCEPTED)
    return row


def expire_change_offers(*, now: datetime | None = None, limit: int = 200) -> int:
    """Offers not answered by their expiry are applied as `keep` (or `cancel` when nothing is left to keep), one
    transaction each; an offer being answered at that moment is skipped (its answer wins). Returns the offers
    expired."""
    now = now or timezone.now()
    due = list(
        ChangeOffer.objects.filter(status=ChangeOfferStatus.OPEN, expires_at__lte=now)
        .order_by("expires_at", "pk")
        .values_list("pk", "order_id", "fulfillment_id")[:limit]
    )
    expired = 0
    for pk, order_id, fid in due:
        try:
            with transaction.atomic():
                order = lock_order(order_id)
                f = Fulfillment.objects.select_for_update(of=("self",)).select_related("store").get(pk=fid)
                row = (
                    ChangeOffer.objects.select_for_update(skip_locked=True)
                    .filter(pk=pk, status=ChangeOfferStatus.OPEN)
                    .first()
                )
                if row is None:
                    continue
                ids = {o["id"] for o in row.options}
                option = "keep" if "keep" in ids else "cancel"
                if option == "cancel" and f.status not in CHANGEABLE_STATUSES:
                    option = "keep"  # nothing left, and nothing to cancel any more: only record what is missing
                if _closed(order, f) or option not in ids:
                    # Cancelled meanwhile, or nothing left and the pickup closed: nothing to apply, only to close.
                    ChangeOffer.objects.filter(pk=row.pk).update(
                        status=ChangeOfferStatus.EXPIRED, decided_by="task:expire_change_offers", decided_at=now
                    )
                else:
                    _apply(offer=row, order=order, f=f, option=option, actor="task:expire_change_offers", now=now,
                           status=ChangeOfferStatus.EXPIRED)
            expired += 1
        except Exception:
            log.exception("could not expire change offer %s", pk)
    return expired


def _closed(order: Order, f: Fulfillment) -> bool:
    """The offer's pickup, or its whole order, was cancelled after the offer was made."""
    return order.status == OrderStatus.CANCELLED or f.status == S.CANCELLED


def _apply(*, offer: ChangeOffer, order: Order, f: Fulfillment, option: str, actor: str, now: datetime,
           status: str) -> None:
    chosen = next(o for o in offer.options if o["id"] == option)
    event = describe_event(kind=offer.event_kind, cause=offer.cause, store_code=f.store.code)
    answered = "the customer chose" if status == ChangeOfferStatus.ACCEPTED else "the offer expired unanswered:"
    if option == "move":
        _apply_move(offer=offer, order=order, f=f, chosen=chosen, event=event, answered=answered, actor=actor, now=now)
    elif option == "keep":
        _apply_keep(offer=offer, order=order, f=f, event=event, answered=answered, actor=actor, now=now)
    else:
        record_decision(
            order=order, kind=RoutingKind.STORE_EVENT, now=now, cause=offer.cause, applied=False,
            decision={"plan_status": "cancelled", "plan": {"change_offer": offer.pk},
                      "reason": f"After {event[0].lower()}{event[1:]}, {answered} cancel the order."},
        )
        cancel_order(order=order, actor=actor, reason=f"cancelled after a store event ({offer.cause})"[:200])
    offer.status, offer.chosen, offer.decided_by, offer.decided_at = status, option, actor[:150], now
    offer.save(update_fields=["status", "chosen", "decided_by", "decided_at"])


def _products(skus: Iterable[str]) -> dict[str, int]:
    return dict(Product.objects.filter(sku__in=list(skus)).values_list("sku", "pk"))


def _apply_move(*, offer: ChangeOffer, order: Order, f: Fulfillment, chosen: dict, event: str, answered: str,
                actor: str, now: datetime) -> None:
    """The whole order to the offered store, if it can still serve it now: routed there again with the stock of
    now, the current pickup cancelled and its reservation released, a new pickup reserved with a new code."""
    store = Store.objects.filter(code=chosen["store"], is_active=True).first()
    pid_of = _products(line["sku"] for line in chosen["lines"])
    whole = {pid_of[line["sku"]]: line["qty"] for line in chosen["lines"]}
    skus = {pid: sku for sku, pid in pid_of.items()}
    routed = None
    if store is not None and store.offers_pickup:
        candidates = routing_input.load_candidates(
            lat=store.lat, lon=store.lon, lines=whole, method="pickup", at=now, only_store_ids=[store.pk],
            only_whole_cart=True,
        )
        routed = promises.pickup_at(lines=whole, candidate=candidates[0], skus=skus, at=now) if candidates else None
    if routed is None or not routed.served:
        raise ChangeOptionUnavailable(
            details={"offer": offer.pk, "option": "move", "store": chosen["store"],
                     "options": [o["id"] for o in offer.options if o["id"] != "move"]}
        )
    stock.release_reservations(reference=f.reference, actor=actor, note=f"pickup moved to {store.code}")
    set_status(f, S.CANCELLED, now=now)
    retire_pickup_code(f)
    planned = planned_from_routed(routed, cart=Cart(whole, skus, {}))
    check_planned(planned)
    round_no = (order.fulfillments.aggregate(m=Max("round"))["m"] or 0) + 1
    created = create_fulfillments(order=order, planned=planned, round_no=round_no, actor=actor, now=now)
    Order.objects.filter(pk=order.pk).update(pickup_store=store, updated_at=now)
    order.pickup_store = store
    decision = dict(planned.decision)
    decision["plan"] = {**decision.get("plan", {}), "change_offer": offer.pk}
    decision["reason"] = (
        f"After {event[0].lower()}{event[1:]}, {answered} move the pickup from {f.store.code} to {store.code}. "
        f"{decision.get('reason', '')}"
    ).strip()
    record = record_decision(order=order, kind=RoutingKind.STORE_EVENT, decision=decision, now=now, cause=offer.cause)
    sync_order_status(order, now=now)
    codes = dict(PickupCode.objects.filter(fulfillment__in=created, is_live=True).values_list("fulfillment_id", "code"))
    promised_by = max(n.promised_by for n in created)
    emit(
        topic="order.rerouted", aggregate=order.aggregate, channel=order.channel,
        payload={
            "order": order.number, "kind": RoutingKind.STORE_EVENT.value, "cause": offer.cause, "offer": offer.pk,
            "from_store": f.store.code,
            "fulfillments": [
                {"id": n.pk, "store_id": n.store_id, "store": store.code, "promised_by": n.promised_by,
                 "pickup_code": codes.get(n.pk)}
                for n in created
            ],
            "reason": record.reason, "promised_by_before": f.promised_by, "promised_by": promised_by,
            "promise_moved": promised_by > f.promised_by,
        },
    )


def _apply_keep(*, offer: ChangeOffer, order: Order, f: Fulfillment, event: str, answered: str, actor: str,
                now: datetime) -> None:
    """What is left stays on the pick list; the missing units are unfulfilled (the customer is told)."""
    pid_of = _products(m["sku"] for m in offer.missing)
    for m in offer.missing:
        OrderLine.objects.filter(order=order, product_id=pid_of[m["sku"]]).update(
            unfulfilled_qty=F("unfulfilled_qty") + m["qty"]
        )
    missing = ", ".join(f"{m['qty']} × {m['sku']}" for m in offer.missing)
    record_decision(
        order=order, kind=RoutingKind.STORE_EVENT, now=now, cause=offer.cause, applied=False,
        decision={"plan_status": "kept", "plan": {"change_offer": offer.pk},
                  "reason": f"After {event[0].lower()}{event[1:]}, {answered} keep what is left at {f.store.code}; "
                            f"{missing} unfulfilled."},
    )
    if f.status in CHANGEABLE_STATUSES and not FulfillmentLine.objects.filter(fulfillment=f).exclude(picked_qty=0).exists():
        stock.release_reservations(reference=f.reference, actor=actor, note="nothing left to collect")
        set_status(f, S.CANCELLED, now=now)
        retire_pickup_code(f)
    Order.objects.filter(pk=order.pk).update(updated_at=now)
    sync_order_status(order, now=now)
    emit(
        topic="order.lines_unfulfilled", aggregate=order.aggregate, channel=order.channel,
        payload={"order": order.number, "lines": offer.missing, "cause": offer.cause, "offer": offer.pk,
                 "reason": "kept what is left after a store event"},
    )
