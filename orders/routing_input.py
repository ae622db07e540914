"""The routing input built from the database: candidate stores for a cart at a point, the timing that turns them
into promises, and the routing problem (the JSON of routing-problem.md) for the pure router in orders.routing.
Reads only; no writes.

The services load the problem here and apply the router's plan (orders.services). Candidate stores are active, offer
the method, reach the point (their own delivery radius, or the pickup search radius), and hold at least one unit of
the cart online. At most k of them go to the router: the nearest that can serve the whole cart first, then the
nearest partial ones (useful only for splits). Capacity is the picking capacity of the slot minus the order lines
already assigned there. The statements that read them are in orders.fast_paths, each beside its ORM twin.
"""

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max

from inventory.models import OpeningHours, Store
from inventory.selectors import opening_status
from orders import fast_paths
from orders.candidate_stores import Candidate, bounding_box

_widest: tuple[float, float] = (0.0, 0.0)  # (computed at, km)


def load_candidates(
    *,
    lat: float,
    lon: float,
    lines: dict[int, int],
    method: str,
    at: datetime,
    radius_km: float | None = None,
    k: int | None = None,
    slot_hours: float = 2,
    exclude_store_ids: Iterable[int] = (),
    only_store_ids: Iterable[int] | None = None,
    only_whole_cart: bool = False,
    extra_stock: dict[tuple[int, int], int] | None = None,
    extra_capacity: dict[int, int] | None = None,
) -> list[Candidate]:
    """Candidate stores for a cart (`lines`: product_id -> qty) at a point, nearest first within each group.

    `extra_stock` / `extra_capacity` add back units and lines the caller's own orders hold (a wave re-optimising
    orders that already reserved)."""
    radius = radius_km if radius_km is not None else widest_delivery_radius_km()
    common = dict(
        lat=lat, lon=lon, lines=lines, method=method, at=at, radius=radius, box=bounding_box(lat, lon, radius),
        exclude=set(exclude_store_ids), k=k or settings.O2O_ROUTING_K_CANDIDATES, slot_hours=slot_hours,
        only_whole_cart=only_whole_cart, extra_capacity=extra_capacity,
    )
    if only_store_ids is None and not extra_stock:
        return fast_paths.nearest_candidates(**common)
    return fast_paths.candidates_in_reach(**common, only_store_ids=only_store_ids, extra_stock=extra_stock)


def widest_delivery_radius_km() -> float:
    """The largest delivery radius of any active store (the search box), re-read at most once a minute, and
    never more than O2O_ROUTING_SEARCH_RADIUS_KM."""
    global _widest
    now = time.monotonic()
    if now - _widest[0] > 60 or _widest[1] == 0:
        widest = Store.objects.filter(is_active=True).aggregate(m=Max("delivery_radius_km"))["m"] or 0.0
        _widest = (now, float(widest))
    return min(max(_widest[1], 0.1), settings.O2O_ROUTING_SEARCH_RADIUS_KM)


# --- timing ---------------------------------------------------------------------------------------------------------


def travel_minutes(distance_km: float) -> float:
    return distance_km / max(settings.O2O_COURIER_KMH, 1) * 60


def pick_minutes(candidate: Candidate) -> float:
    """Picking and packing one order, after the lines already queued at the store."""
    queue = candidate.load / max(candidate.capacity_per_hour, 1) * 60
    return settings.O2O_PICK_MINUTES + queue


def ready_time(candidate: Candidate, *, at: datetime, hours: list | None = None) -> datetime:
    """When the store can have the order packed: now (or its next opening) plus the pick time; if it would close
    first, from its next opening."""
    minutes = timedelta(minutes=pick_minutes(candidate))
    if candidate.open_now and candidate.closes_at and at + minutes <= candidate.closes_at:
        return at + minutes
    start = candidate.next_opening
    if start is None and candidate.closes_at is not None:
        # open now but closing too soon: the next opening after closing time
        intervals = hours if hours is not None else list(OpeningHours.objects.filter(store_id=candidate.store_id))
        after = candidate.closes_at + timedelta(seconds=1)
        _, start, _ = opening_status(intervals, time_zone=candidate.time_zone, at=after)
    if start is None:
        return at + timedelta(days=7)  # no opening hours configured: a week, say
    return start + minutes


# --- the problem JSON -----------------------------------------------------------------------------------------------


@dataclass
class OrderSpec:
    """One order in a routing problem: its id in the problem, its lines (product_id -> qty), and its candidates."""

    id: str
    method: str
    lines: dict[int, int]
    candidates: list[Candidate]
    lat: float | None = None
    lon: float | None = None
    allow_split: bool = True
    pickup_store: str | None = None


def build_problem(
    *, orders: Sequence[OrderSpec], skus: dict[int, str], slot_hours: float = 2, time_limit_s: float | None = None
) -> dict:
    """The routing problem for these orders. Each delivery order lists its candidates explicitly as `options`
    (cost = distance in km, workload = number of lines), so the router never needs the database or a geodesic."""
    stores: dict[int, Candidate] = {}
    for spec in orders:
        for c in spec.candidates:
            stores.setdefault(c.store_id, c)
    product_ids = sorted({pid for spec in orders for pid in spec.lines})
    problem_orders = []
    for spec in orders:
        lines = [{"sku": skus[pid], "qty": qty} for pid, qty in sorted(spec.lines.items())]
        entry: dict = {"id": spec.id, "method": spec.method, "lines": lines, "workload": len(lines)}
        if spec.method == "pickup":
            entry["pickup_store"] = spec.pickup_store
        else:
            entry.update(lat=spec.lat, lon=spec.lon, allow_split=spec.allow_split)
            entry["options"] = [
                {"store": c.code, "cost": round(c.distance_km, 3), "workload": len(lines)} for c in spec.candidates
            ]
        problem_orders.append(entry)
    problem = {
        "stores": [
            {
                "id": c.code,
                "lat": c.lat,
                "lon": c.lon,
                "capacity": c.capacity(slot_hours),
                "methods": c.methods,
                "delivery_radius_km": c.delivery_radius_km,
            }
            for c in stores.values()
        ],
        "stock": [
            {"store": c.code, "sku": skus[pid], "qty": c.stock[pid]}
            for c in stores.values()
            for pid in product_ids
            if c.stock.get(pid, 0) > 0
        ],
        "orders": problem_orders,
        "settings": {"time_limit_s": time_limit_s if time_limit_s is not None else settings.O2O_ROUTER_TIME_LIMIT_S},
    }
    return problem


def candidate_summary(candidates: Sequence[Candidate], *, lines: dict[int, int], skus: dict[int, str], slot_hours: float,
                      chosen: set[str]) -> list[dict]:
    """What the admin and the order detail show for each candidate store."""
    out = []
    for c in candidates:
        whole = c.serves_whole(lines)
        capacity = c.capacity(slot_hours)
        if c.code in chosen:
            note = "chosen"
        elif not whole:
            note = "lacks stock for the whole cart"
        elif capacity < len(lines):
            note = "no picking capacity in the slot"
        else:
            note = "farther / costlier"
        out.append(
            {
                "store": c.code,
                "name": c.name,
                "distance_km": c.distance_km,
                "stock": {skus[pid]: c.stock.get(pid, 0) for pid in sorted(lines)},
                "whole_cart": whole,
                "capacity": capacity,
                "open_now": c.open_now,
                "score": round(c.distance_km, 3),
                "chosen": c.code in chosen,
                "note": note,
            }
        )
    return out
