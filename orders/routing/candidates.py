"""Which stores may serve an order, at what cost and workload, and which few of them the solver looks at.

The distances of one order to every store are one vectorised haversine over numpy arrays, so a chain of thousands of
stores costs microseconds per order; per-SKU stock is also held as arrays over stores, so "which stores hold every
line" is a handful of vector comparisons rather than a Python loop over stores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .problem import Order, Problem, line_workloads

# geopy's great_circle uses the same mean Earth radius; the validator and the router must agree to the metre.
EARTH_RADIUS_KM = 6371.009
RADIUS_TOLERANCE_KM = 1e-9


def great_circle_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Great-circle (haversine) distances in km from one point to arrays of points."""
    p1, p2 = np.radians(lat), np.radians(lats)
    dlat = p2 - p1
    dlon = np.radians(lons) - np.radians(lon)
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


@dataclass(frozen=True, slots=True)
class Candidate:
    store: int  # index into problem.stores
    cost: float  # per shipment from this store
    workload_milli: int  # of the whole order at this store
    distance_km: float | None
    whole: bool  # holds every line and has the capacity, before any other order takes anything
    line_workloads: tuple[int, ...]  # per line (in order.lines order), summing to workload_milli


@dataclass(slots=True)
class OrderCandidates:
    eligible: list[Candidate]  # every store the rules allow, cheapest first (used by baselines and repairs)
    pruned: list[Candidate]  # what the optimiser looks at
    reason: str | None  # why the order cannot be served at all, if so (then both lists may be non-empty)


class ChainIndex:
    """Arrays over the stores of one problem, built once per route() call."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        stores = problem.stores
        self.lats = np.array([s.lat for s in stores], dtype=float)
        self.lons = np.array([s.lon for s in stores], dtype=float)
        self.radius = np.array([s.radius_km for s in stores], dtype=float)
        self.capacity = np.array([s.capacity_milli for s in stores], dtype=np.int64)
        self.delivers = np.array(["delivery" in s.methods for s in stores], dtype=bool)
        skus = {line.sku for o in problem.orders for line in o.lines}
        self.stock: dict[str, np.ndarray] = {sku: np.zeros(len(stores), dtype=np.int64) for sku in skus}
        for (store, sku), qty in problem.stock.items():
            arr = self.stock.get(sku)
            if arr is not None:
                arr[problem.store_index[store]] = qty

    def distances(self, order: Order) -> np.ndarray:
        return great_circle_km(order.lat, order.lon, self.lats, self.lons)


def _whole_mask(index: ChainIndex, order: Order, stores: np.ndarray, workloads: np.ndarray) -> np.ndarray:
    ok = index.capacity[stores] >= workloads
    for line in order.lines:
        ok &= index.stock[line.sku][stores] >= line.qty
    return ok


def _stock_mask(index: ChainIndex, order: Order, stores: np.ndarray) -> np.ndarray:
    ok = np.ones(len(stores), dtype=bool)
    for line in order.lines:
        ok &= index.stock[line.sku][stores] >= line.qty
    return ok


def _useful_mask(index: ChainIndex, order: Order, stores: np.ndarray, workloads: np.ndarray) -> np.ndarray:
    """Stores that could carry at least one line (some stock, room for that line's share of the workload)."""
    n = len(order.lines)
    any_line = np.zeros(len(stores), dtype=bool)
    room = index.capacity[stores] >= -(-workloads // n)  # the largest per-line share, ceil(W/n)
    for line in order.lines:
        any_line |= index.stock[line.sku][stores] > 0
    return any_line & room


def eligible_candidates(index: ChainIndex, order: Order) -> tuple[list[Candidate], str | None]:
    """Every store the rules allow for this order, cheapest first, and the reason it cannot be served if none can
    (judged on the problem's stock and capacity alone, before other orders take their share)."""
    problem = index.problem
    settings = problem.settings
    n = len(order.lines)
    dist: np.ndarray | None = None

    if order.method == "pickup":
        idx = problem.store_index.get(order.pickup_store)
        if idx is None:
            return [], "unknown_store"
        if "pickup" not in problem.stores[idx].methods:
            return [], "pickup_store_cannot_serve"
        opt = next((o for o in order.options or () if o.store == order.pickup_store), None)
        stores = np.array([idx])
        costs = np.array([opt.cost if opt and opt.cost is not None else 0.0])
        workloads = np.array([opt.workload_milli if opt and opt.workload_milli else order.workload_milli])
    elif order.options is not None:
        known = [o for o in order.options if o.store in problem.store_index]
        if not known:
            return [], "unknown_store"
        stores = np.array([problem.store_index[o.store] for o in known])
        if order.lat is not None:
            dist = index.distances(order)[stores]
        default_cost = dist * settings.cost_per_km + settings.cost_fixed if dist is not None else None
        costs = np.array(
            [
                o.cost if o.cost is not None else (default_cost[j] if default_cost is not None else 0.0)
                for j, o in enumerate(known)
            ],
            dtype=float,
        )
        workloads = np.array([o.workload_milli or order.workload_milli for o in known], dtype=np.int64)
    else:
        all_dist = index.distances(order)
        stores = np.flatnonzero(index.delivers & (all_dist <= index.radius + RADIUS_TOLERANCE_KM))
        if len(stores) == 0:
            return [], "no_store_in_range"
        dist = all_dist[stores]
        costs = dist * settings.cost_per_km + settings.cost_fixed
        workloads = np.full(len(stores), order.workload_milli, dtype=np.int64)

    whole = _whole_mask(index, order, stores, workloads)
    if order.splittable:
        keep = whole | _useful_mask(index, order, stores, workloads)
    else:
        keep = whole
    reason = None
    if not keep.any():
        reason = "insufficient_capacity" if _stock_mask(index, order, stores).any() else "insufficient_stock"
    elif not whole.any():
        # Only a split could serve it: the useful stores together must hold every line.
        sel = np.flatnonzero(keep)
        for line in order.lines:
            if np.minimum(index.stock[line.sku][stores[sel]], line.qty).sum() < line.qty:
                reason = "insufficient_stock"
                break
    sel = np.flatnonzero(keep)
    sel = sel[np.lexsort((stores[sel], costs[sel]))]  # cheapest first; store index breaks ties (reproducible runs)
    # plain Python values: numpy scalars would make every later comparison in the greedy several times slower
    shares: dict[int, tuple[int, ...]] = {}
    dists = dist[sel].tolist() if dist is not None else [None] * len(sel)
    cands = []
    for s_, c_, w_, d_, h_ in zip(
        stores[sel].tolist(), costs[sel].tolist(), workloads[sel].tolist(), dists, whole[sel].tolist(), strict=True
    ):
        lw = shares.get(w_)
        if lw is None:
            lw = shares[w_] = tuple(line_workloads(w_, n))
        cands.append(Candidate(s_, c_, w_, d_, h_, lw))
    return cands, reason


def prune(index: ChainIndex, order: Order, eligible: list[Candidate], k: int) -> list[Candidate]:
    """The k cheapest stores that can serve the order whole; for a splittable order also the k cheapest stores that
    hold part of it (more if those k together still miss a line), so a split stays possible, and a good one, when the
    whole-order stores are taken by other orders of the wave."""
    whole = [c for c in eligible if c.whole][:k]
    if not order.splittable:
        return whole
    missing = {line.sku: line.qty for line in order.lines}
    kept = list(whole)
    added = 0
    for cand in eligible:
        if cand.whole:
            continue
        sid = index.problem.stores[cand.store].id
        covers = any(index.problem.stock_of(sid, sku) > 0 for sku, q in missing.items() if q > 0)
        if covers or added < k:
            kept.append(cand)
            added += 1
            for sku, q in missing.items():
                missing[sku] = max(0, q - index.problem.stock_of(sid, sku))
        if added >= k and not any(missing.values()):
            break
    kept.sort(key=lambda c: (c.cost, c.store))
    return kept


def order_candidates(index: ChainIndex, k: int | None = None) -> list[OrderCandidates]:
    k = k or index.problem.settings.candidates_k
    out = []
    for order in index.problem.orders:
        eligible, reason = eligible_candidates(index, order)
        pruned = [] if reason else prune(index, order, eligible, k)
        out.append(OrderCandidates(eligible, pruned, reason))
    return out
