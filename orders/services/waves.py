"""Waves: the delivery orders of the last few minutes routed again together, so that the first order does not take
the stock or capacity a later one needed more; applied only when it serves every order with fewer shipments."""

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from inventory import services as stock
from inventory.exceptions import InsufficientStock
from inventory.models import Product, Store
from o2o.outbox import emit
from orders import promises, routing_input
from orders.candidate_stores import Candidate
from orders.models import (
    OPEN_STATUSES,
    Fulfillment,
    FulfillmentStatus,
    Method,
    Order,
    OrderStatus,
    RoutingDecision,
    RoutingKind,
)
from orders.routing import check_plan, route
from orders.services.fulfilment import (
    SYSTEM,
    set_status,
)
from orders.services.plans import (
    PlannedOrder,
    PlannedShipment,
    create_fulfillments,
    record_decision,
)

log = logging.getLogger(__name__)
S = FulfillmentStatus


@dataclass
class WaveResult:
    orders: int = 0
    current_shipments: int = 0
    new_shipments: int | None = None
    plan_status: str = ""
    reassigned: list[str] = field(default_factory=list)
    applied: bool = False
    note: str = ""


def wave_orders(*, since: datetime) -> list[Order]:
    """Delivery orders placed since `since` whose every open fulfillment is still `assigned`, except those staff
    re-routed by hand (a wave must not move them back to a store they were taken away from)."""
    started = Fulfillment.objects.filter(order=OuterRef("pk"), status__in=OPEN_STATUSES - {S.ASSIGNED})
    by_hand = RoutingDecision.objects.filter(order=OuterRef("pk"), kind=RoutingKind.MANUAL)
    return list(
        Order.objects.filter(method=Method.DELIVERY, status=OrderStatus.OPEN, created_at__gte=since)
        .exclude(Exists(started))
        .exclude(Exists(by_hand))
        .filter(fulfillments__status=S.ASSIGNED)
        .distinct()
        .order_by("pk")
    )


def route_wave(*, now: datetime | None = None, window_seconds: int | None = None, time_limit_s: float | None = None,
               order_ids: Iterable[int] | None = None) -> WaveResult:
    """Re-optimise the delivery orders of the last window that have not started picking, together. The new plan is
    applied only if it serves every order and uses fewer shipments; orders whose picking started meanwhile are left
    alone (checked again under the locks)."""
    now = now or timezone.now()
    window = window_seconds if window_seconds is not None else settings.O2O_WAVE_WINDOW_SECONDS
    orders = wave_orders(since=now - timedelta(seconds=window))
    if order_ids is not None:
        wanted = set(order_ids)
        orders = [o for o in orders if o.pk in wanted]
    result = WaveResult(orders=len(orders))
    if len(orders) < 2:
        result.note = "fewer than two orders in the wave"
        return result
    current = defaultdict(list)  # order id -> [Fulfillment]
    for f in (
        Fulfillment.objects.filter(order__in=orders, status=S.ASSIGNED).prefetch_related("lines").order_by("pk")
    ):
        current[f.order_id].append(f)
    held_stock: dict[tuple[int, int], int] = defaultdict(int)
    held_lines: dict[int, int] = defaultdict(int)
    order_lines: dict[int, dict[int, int]] = {}
    for order in orders:
        merged: dict[int, int] = defaultdict(int)
        for f in current[order.pk]:
            # What the fulfillment will hand over (and holds): a store event may have shrunk an assigned one.
            for line in f.lines.all():
                if line.units <= 0:
                    continue
                merged[line.product_id] += line.units
                held_stock[(f.store_id, line.product_id)] += line.units
                held_lines[f.store_id] += 1
        order_lines[order.pk] = dict(merged)
    all_pids = {pid for lines in order_lines.values() for pid in lines}
    skus = dict(Product.objects.filter(pk__in=all_pids).values_list("pk", "sku"))
    specs = []
    cands_of: dict[int, list[Candidate]] = {}
    for order in orders:
        lines = order_lines[order.pk]
        tier = order.promise_option if order.promise_option in ("express_1h", "express_2h", "scheduled") else "express_2h"
        cands = routing_input.load_candidates(
            lat=order.destination_lat, lon=order.destination_lon, lines=lines, method="delivery", at=now,
            extra_stock=held_stock, extra_capacity=held_lines, slot_hours=promises.TIER_SLOT_HOURS[tier],
        )
        mine = {f.store_id for f in current[order.pk]}
        cands = [c for c in cands if c.store_id in mine or promises.tier_eligible(c, tier=tier, at=now)]
        cands_of[order.pk] = cands
        specs.append(
            routing_input.OrderSpec(
                id=order.number, method="delivery", lines=lines, candidates=cands, lat=order.destination_lat,
                lon=order.destination_lon, allow_split=order.allow_split,
            )
        )
    limit = time_limit_s if time_limit_s is not None else settings.O2O_WAVE_TIME_LIMIT_S
    problem = routing_input.build_problem(orders=specs, skus=skus, slot_hours=2, time_limit_s=limit)
    started = time.perf_counter()
    plan = route(problem, time_limit_s=limit)
    solve_ms = (time.perf_counter() - started) * 1000
    result.plan_status = plan.get("status", "")
    result.current_shipments = sum(len(current[o.pk]) for o in orders)
    if plan.get("unassigned"):
        result.note = "the wave plan leaves orders unserved; kept the current assignment"
        return result
    if check_plan(problem, plan):
        result.note = "the wave plan breaks a limit; kept the current assignment"
        return result
    new_by_order = {a["order"]: a["shipments"] for a in plan.get("assignments", [])}
    result.new_shipments = sum(len(s) for s in new_by_order.values())
    if result.new_shipments >= result.current_shipments:
        result.note = "no fewer shipments; kept the current assignment"
        return result
    pid_of = {sku: pid for pid, sku in skus.items()}
    changes: dict[int, PlannedOrder] = {}
    for order in orders:
        new = new_by_order.get(order.number, [])
        cands = {c.code: c for c in cands_of[order.pk]}
        new_set = {(s["store"], tuple(sorted((line["sku"], line["qty"]) for line in s["lines"]))) for s in new}
        old_set = set()
        codes = dict(Store.objects.filter(pk__in=[f.store_id for f in current[order.pk]]).values_list("pk", "code"))
        for f in current[order.pk]:
            old_set.add((codes[f.store_id], tuple(sorted(
                (skus[line.product_id], line.units) for line in f.lines.all() if line.units > 0
            ))))
        if new_set == old_set:
            continue
        shipments = [
            PlannedShipment(
                cands[s["store"]].store_id, s["store"], cands[s["store"]].distance_km,
                {pid_of[line["sku"]]: line["qty"] for line in s["lines"]},
            )
            for s in new
        ]
        chosen = {s["store"] for s in new}
        summary = routing_input.candidate_summary(
            cands_of[order.pk], lines=order_lines[order.pk], skus=skus, slot_hours=2, chosen=chosen
        )
        changes[order.pk] = PlannedOrder(
            shipments=shipments,
            promised_by=min(f.promised_by for f in current[order.pk]),
            option_id=order.promise_option,
            decision={
                "plan_status": plan.get("status", ""), "problem": problem, "plan": plan, "candidates": summary,
                "reason": (
                    f"Wave of {len(orders)} orders: {result.current_shipments} → {result.new_shipments} shipments; "
                    f"this order moves to {', '.join(sorted(chosen))}."
                ),
                "solve_ms": round(solve_ms, 3),
            },
        )
    try:
        result.reassigned = _apply_wave(changes=changes, now=now)
        result.applied = bool(result.reassigned)
    except InsufficientStock:
        result.note = "stock moved while the wave was solved; kept the current assignment"
    return result


@transaction.atomic
def _apply_wave(*, changes: dict[int, PlannedOrder], now: datetime) -> list[str]:
    locked = list(Order.objects.select_for_update(of=("self",)).select_related("channel").filter(pk__in=changes).order_by("pk"))
    fulfillments = defaultdict(list)
    for f in Fulfillment.objects.select_for_update().filter(order__in=locked, status__in=OPEN_STATUSES).order_by("pk"):
        fulfillments[f.order_id].append(f)
    movable = [o for o in locked if o.status == OrderStatus.OPEN and all(f.status == S.ASSIGNED for f in fulfillments[o.pk])]
    # Release every moving order first, so that one order's new store can take what another order gave back.
    for order in movable:
        for f in fulfillments[order.pk]:
            stock.release_reservations(reference=f.reference, actor=SYSTEM, note="wave re-assignment")
            set_status(f, S.CANCELLED, now=now)
    moved = []
    for order in movable:
        round_no = (order.fulfillments.aggregate(m=Max("round"))["m"] or 0) + 1
        created = create_fulfillments(order=order, planned=changes[order.pk], round_no=round_no, actor=SYSTEM, now=now)
        decision = record_decision(order=order, kind=RoutingKind.WAVE, decision=changes[order.pk].decision, now=now)
        emit(
            topic="order.routed", aggregate=order.aggregate, channel=order.channel,
            payload={
                "order": order.number, "kind": "wave",
                "fulfillments": [{"id": f.pk, "store_id": f.store_id, "promised_by": f.promised_by} for f in created],
                "reason": decision.reason,
            },
        )
        moved.append(order.number)
    return moved
