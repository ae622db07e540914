"""Checkout promises: which delivery windows and pickup times the chain can keep now, computed with the router.

Tiers, fastest first:
- `express_1h`: stores within O2O_EXPRESS_1H_RADIUS_KM, open now, able to pick, pack and ride within the hour before
  closing, with picking capacity in the next hour;
- `express_2h`: the same within each store's delivery radius and two hours;
- `scheduled`: the fallback when nothing fast is possible: any store whose radius reaches the point, from its next
  opening, capacity counted over the day;
- `pickup:<store>`: each nearby pickup store that can serve the whole cart, ready by now (or its next opening) plus
  the pick time after the lines already queued there.
Each option keeps the routing problem and plan it came from, so the order placed with it gets what it showed.
"""

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from orders.candidate_stores import Candidate
from orders.routing import route
from orders.routing_input import (
    OrderSpec,
    build_problem,
    candidate_summary,
    pick_minutes,
    ready_time,
    travel_minutes,
)

TIER_SLOT_HOURS = {"express_1h": 1, "express_2h": 2, "scheduled": 24, "pickup": 2}


@dataclass
class Shipment:
    candidate: Candidate
    lines: dict[int, int]  # product_id -> qty
    cost: float


@dataclass
class Routed:
    """One routing of one order: its problem, plan and what came out of it."""

    kind: str
    method: str
    problem: dict
    plan: dict
    candidates: list[Candidate]
    shipments: list[Shipment] = field(default_factory=list)
    unassigned_reason: str | None = None
    solve_ms: float = 0.0
    window_start: datetime | None = None
    window_end: datetime | None = None

    @property
    def served(self) -> bool:
        return bool(self.shipments) and self.unassigned_reason is None

    @property
    def option_id(self) -> str:
        if self.method == "pickup" and self.shipments:
            return f"pickup:{self.shipments[0].candidate.code}"
        return self.kind


def tier_eligible(candidate: Candidate, *, tier: str, at: datetime) -> bool:
    """May this store serve an express tier now (distance, opening hours, pick + ride time)?"""
    if tier == "scheduled":
        return True
    minutes = 60 if tier == "express_1h" else 120
    if tier == "express_1h" and candidate.distance_km > settings.O2O_EXPRESS_1H_RADIUS_KM:
        return False
    if not candidate.open_now or candidate.closes_at is None:
        return False
    pick = pick_minutes(candidate)
    if at + timedelta(minutes=pick) > candidate.closes_at:
        return False
    return pick + travel_minutes(candidate.distance_km) <= minutes


def reason_for(routed: "Routed") -> str:
    """A sentence for operations: why these stores."""
    n = len(routed.candidates)
    if not routed.served:
        return f"Not served: {routed.unassigned_reason or 'no plan'} ({n} candidate stores)."
    whole = [c for c in routed.candidates if c.serves_whole(_order_lines(routed))]
    chosen = routed.shipments
    if len(chosen) == 1:
        c = chosen[0].candidate
        nearer = [w for w in whole if w.distance_km < c.distance_km]
        text = f"{c.code} ({c.distance_km:.2f} km) serves the whole cart"
        if nearer:
            text += f"; nearer whole-cart stores lacked picking capacity or were taken by other orders ({len(nearer)})"
        else:
            text += " at the lowest delivery cost"
        return f"{text} among {n} candidates ({routed.plan.get('status', '?')} plan)."
    codes = ", ".join(f"{s.candidate.code} ({s.candidate.distance_km:.2f} km)" for s in chosen)
    return (
        f"Split over {codes}: none of the {n} candidates could serve the whole cart "
        f"({routed.plan.get('status', '?')} plan)."
    )


def _order_lines(routed: "Routed") -> dict[int, int]:
    merged: dict[int, int] = {}
    for s in routed.shipments:
        for pid, qty in s.lines.items():
            merged[pid] = merged.get(pid, 0) + qty
    return merged


def solve_one(
    *,
    kind: str,
    method: str,
    lines: dict[int, int],
    candidates: list[Candidate],
    skus: dict[int, str],
    lat: float | None = None,
    lon: float | None = None,
    allow_split: bool = True,
    pickup_store: Candidate | None = None,
    order_id: str = "checkout",
    time_limit_s: float | None = None,
) -> Routed:
    """Route one order over the given candidates with the router and read the plan back into candidates."""
    slot = TIER_SLOT_HOURS["pickup" if method == "pickup" else kind]
    spec = OrderSpec(
        id=order_id,
        method=method,
        lines=lines,
        candidates=[pickup_store] if pickup_store else candidates,
        lat=lat,
        lon=lon,
        allow_split=allow_split,
        pickup_store=pickup_store.code if pickup_store else None,
    )
    limit = time_limit_s if time_limit_s is not None else settings.O2O_ROUTER_TIME_LIMIT_S
    problem = build_problem(orders=[spec], skus=skus, slot_hours=slot, time_limit_s=limit)
    started = time.perf_counter()
    plan = route(problem, time_limit_s=limit)
    solve_ms = (time.perf_counter() - started) * 1000
    routed = Routed(kind=kind, method=method, problem=problem, plan=plan, candidates=spec.candidates, solve_ms=solve_ms)
    read_plan(routed, order_id=order_id, skus=skus)
    return routed


def read_plan(routed: Routed, *, order_id: str, skus: dict[int, str]) -> None:
    by_code = {c.code: c for c in routed.candidates}
    pid_of = {sku: pid for pid, sku in skus.items()}
    for entry in routed.plan.get("unassigned", []):
        if entry.get("order") == order_id:
            routed.unassigned_reason = entry.get("reason") or "unassigned"
    for assignment in routed.plan.get("assignments", []):
        if assignment.get("order") != order_id:
            continue
        for shipment in assignment.get("shipments", []):
            lines = {pid_of[line["sku"]]: int(line["qty"]) for line in shipment["lines"] if int(line["qty"]) > 0}
            if lines:
                routed.shipments.append(Shipment(by_code[shipment["store"]], lines, float(shipment.get("cost") or 0)))
    if not routed.shipments and routed.unassigned_reason is None:
        routed.unassigned_reason = "unassigned"


def set_window(routed: Routed, *, at: datetime) -> None:
    """The promised window of a served routing."""
    if routed.method == "pickup":
        ready = ready_time(routed.shipments[0].candidate, at=at)
        routed.window_start = routed.window_end = ready
    elif routed.kind == "express_1h":
        routed.window_start, routed.window_end = at, at + timedelta(hours=1)
    elif routed.kind == "express_2h":
        routed.window_start, routed.window_end = at, at + timedelta(hours=2)
    else:
        latest = max(
            ready_time(s.candidate, at=at) + timedelta(minutes=travel_minutes(s.candidate.distance_km))
            for s in routed.shipments
        )
        routed.window_start, routed.window_end = latest, latest + timedelta(hours=2)


def fastest_delivery(
    *,
    lines: dict[int, int],
    candidates: list[Candidate],
    skus: dict[int, str],
    lat: float,
    lon: float,
    allow_split: bool,
    at: datetime,
    tiers: tuple[str, ...] = ("express_1h", "express_2h", "scheduled"),
    all_tiers: bool = False,
) -> list[Routed]:
    """Route the cart tier by tier; the served ones (only the fastest unless `all_tiers`)."""
    served: list[Routed] = []
    for tier in tiers:
        if served and tier == "scheduled":
            break  # a later fallback only when nothing fast is possible
        eligible = [c for c in candidates if tier_eligible(c, tier=tier, at=at)]
        if not eligible:
            continue
        routed = solve_one(
            kind=tier, method="delivery", lines=lines, candidates=eligible, skus=skus, lat=lat, lon=lon,
            allow_split=allow_split,
        )
        if not routed.served:
            continue
        if served and {s.candidate.code for s in served[-1].shipments} == {s.candidate.code for s in routed.shipments}:
            continue  # the 2 h option would be the same stores as the 1 h one
        set_window(routed, at=at)
        served.append(routed)
        if not all_tiers:
            break
    return served


def pickup_at(*, lines: dict[int, int], candidate: Candidate, skus: dict[int, str], at: datetime) -> Routed:
    routed = solve_one(kind="pickup", method="pickup", lines=lines, candidates=[candidate], skus=skus, pickup_store=candidate)
    if routed.served:
        set_window(routed, at=at)
    return routed


def option_json(routed: Routed, *, skus: dict[int, str], lines: dict[int, int], at: datetime) -> dict:
    """The stored form of an option: what the client sees plus the routing it came from."""
    chosen = {s.candidate.code for s in routed.shipments}
    slot = TIER_SLOT_HOURS["pickup" if routed.method == "pickup" else routed.kind]
    return {
        "id": routed.option_id,
        "kind": "pickup" if routed.method == "pickup" else routed.kind,
        "method": routed.method,
        "window_start": timezone.localtime(routed.window_start).isoformat(),
        "window_end": timezone.localtime(routed.window_end).isoformat(),
        "split": len(routed.shipments) > 1,
        "shipments": [
            {
                "store": s.candidate.code,
                "store_name": s.candidate.name,
                "distance_km": s.candidate.distance_km,
                "ready_by": timezone.localtime(ready_time(s.candidate, at=at)).isoformat(),
                "lines": [{"sku": skus[pid], "qty": qty} for pid, qty in sorted(s.lines.items())],
                "cost": s.cost,
            }
            for s in routed.shipments
        ],
        "routing": {
            "problem": routed.problem,
            "plan": routed.plan,
            "candidates": candidate_summary(routed.candidates, lines=lines, skus=skus, slot_hours=slot, chosen=chosen),
            "reason": reason_for(routed),
            "solve_ms": round(routed.solve_ms, 3),
        },
    }
