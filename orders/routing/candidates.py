"""Which stores may serve an order, at what cost and workload, and which few of them the solver looks at.

The distances of one order to every store are one vectorised haversine over numpy arrays, so a chain of thousands of
stores costs microseconds per order; per-SKU stock is also held as arrays over stores, so "which stores hold every
line" is a handful of vector comparisons rather than a Python loop over stores. Orders that name their stores
(options, pickups: every checkout order, a dozen or two stores) are judged in plain Python instead, where numpy's
per-call overhead would cost more than the work.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .problem import Order, Problem, exact_key, line_workloads, parse_problem, slot_setters

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


_new = object.__new__
_c_store, _c_cost, _c_workload, _c_distance, _c_whole, _c_lines = slot_setters(
    Candidate, ("store", "cost", "workload_milli", "distance_km", "whole", "line_workloads")
)


def _make_candidate(
    store: int, cost: float, workload_milli: int, distance_km: float | None, whole: bool, lines: tuple[int, ...]
) -> Candidate:
    c = _new(Candidate)
    _c_store(c, store)
    _c_cost(c, cost)
    _c_workload(c, workload_milli)
    _c_distance(c, distance_km)
    _c_whole(c, whole)
    _c_lines(c, lines)
    return c


@dataclass(slots=True)
class OrderCandidates:
    eligible: list[Candidate]  # every store the rules allow, cheapest first (used by baselines and repairs)
    pruned: list[Candidate]  # what the optimiser looks at
    reason: str | None  # why the order cannot be served at all, if so (then both lists may be non-empty)


class ChainIndex:
    """Arrays over the stores of one problem, built once per route() call, each when first needed: an order with
    explicit options (every checkout order) needs only the coordinates, for its distances."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        # eligible_candidates per order (a pure function of the problem and the order): the order itself is kept
        # with its result, so its id cannot be reused while the entry exists
        self.eligible: dict[int, tuple[Order, tuple[Candidate, ...], str | None]] = {}

    @cached_property
    def lats(self) -> np.ndarray:
        return np.array([s.lat for s in self.problem.stores], dtype=float)

    @cached_property
    def lons(self) -> np.ndarray:
        return np.array([s.lon for s in self.problem.stores], dtype=float)

    @cached_property
    def radius(self) -> np.ndarray:
        return np.array([s.radius_km for s in self.problem.stores], dtype=float)

    @cached_property
    def capacity(self) -> np.ndarray:
        return np.array([s.capacity_milli for s in self.problem.stores], dtype=np.int64)

    @cached_property
    def delivers(self) -> np.ndarray:
        return np.array(["delivery" in s.methods for s in self.problem.stores], dtype=bool)

    @cached_property
    def stock(self) -> dict[str, np.ndarray]:
        problem = self.problem
        n = len(problem.stores)
        skus = {line.sku for o in problem.orders for line in o.lines}
        stock: dict[str, np.ndarray] = {sku: np.zeros(n, dtype=np.int64) for sku in skus}
        for (store, sku), qty in problem.stock.items():
            arr = stock.get(sku)
            if arr is not None:
                arr[problem.store_index[store]] = qty
        return stock

    def distances(self, order: Order) -> np.ndarray:
        return great_circle_km(order.lat, order.lon, self.lats, self.lons)


# Problems up to this size are shared between route() and check_plan() (see shared_index); a wave is not: its key
# would cost milliseconds and its parsed form megabytes, for one parse saved.
SHARE_MAX_ORDERS = 3
SHARE_MAX_ROWS = 1024
_SHARED: dict[bytes, ChainIndex] = {}
_SHARED_SIZE = 32
_SHARED_LOCK = threading.Lock()


def shared_index(raw: Problem | dict[str, Any]) -> ChainIndex:
    """The ChainIndex (and parsed Problem) of a problem, for route() and check_plan(), which the service calls one
    after the other on the same checkout problem (route it, then check the plan before applying it): the second call
    gets what the first parsed and derived, if its input is exactly the same (problem.exact_key) and was valid
    (invalid input raises from parse_problem and is never kept). Only for callers that never modify what they get."""
    if isinstance(raw, Problem):
        return ChainIndex(raw)
    key = None
    if type(raw) is dict:
        orders, stores, stock = raw.get("orders"), raw.get("stores"), raw.get("stock", ())
        if (
            type(orders) is list
            and len(orders) <= SHARE_MAX_ORDERS
            and type(stores) is list
            and type(stock) in (list, tuple)
            and len(stores) + len(stock) <= SHARE_MAX_ROWS
        ):
            key = exact_key(raw)
    if key is None:
        return ChainIndex(parse_problem(raw))
    index = _SHARED.get(key)
    if index is None:
        index = ChainIndex(parse_problem(raw))
        with _SHARED_LOCK:
            while len(_SHARED) >= _SHARED_SIZE:
                del _SHARED[next(iter(_SHARED))]  # the oldest: a checkout checks its plan right after routing
            _SHARED[key] = index
    return index


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
    memo = index.eligible.get(id(order))
    if memo is not None and memo[0] is order:
        return list(memo[1]), memo[2]
    cands, reason = _eligible_candidates(index, order)
    index.eligible[id(order)] = (order, tuple(cands), reason)
    return cands, reason


def _eligible_candidates(index: ChainIndex, order: Order) -> tuple[list[Candidate], str | None]:
    if order.method == "pickup" or order.options is not None:
        return _listed_candidates(index, order)
    return _array_candidates(index, order)


def _array_candidates(index: ChainIndex, order: Order) -> tuple[list[Candidate], str | None]:
    """The rules over arrays of stores: for orders judged against every store of the chain (radius). It handles
    pickups and options too, the same way _listed_candidates does (tests hold the two to identical results)."""
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


def _listed_candidates(index: ChainIndex, order: Order) -> tuple[list[Candidate], str | None]:
    """eligible_candidates for a pickup order or an order with options: the same rules and the same numbers, in
    plain Python. These orders name their few stores, and numpy's per-call overhead on arrays of a dozen stores is
    most of the routing time of a checkout; the distances are still the vectorised ones (to the last bit)."""
    problem = index.problem
    store_index, stores, stock = problem.store_index, problem.stores, problem.stock
    dists: list[float] | list[None]
    if order.method == "pickup":
        si = store_index.get(order.pickup_store)
        if si is None:
            return [], "unknown_store"
        if "pickup" not in stores[si].methods:
            return [], "pickup_store_cannot_serve"
        opt = next((o for o in order.options or () if o.store == order.pickup_store), None)
        picked = [si]
        costs = [opt.cost if opt and opt.cost is not None else 0.0]
        workloads = [opt.workload_milli if opt and opt.workload_milli else order.workload_milli]
        dists = [None]
    else:
        known = [o for o in order.options if o.store in store_index]
        if not known:
            return [], "unknown_store"
        picked = [store_index[o.store] for o in known]
        if order.lat is not None:
            all_dist = index.distances(order).tolist()
            dists = [all_dist[si] for si in picked]
            settings = problem.settings
            per_km, fixed = settings.cost_per_km, settings.cost_fixed
            costs = [o.cost if o.cost is not None else d * per_km + fixed for o, d in zip(known, dists, strict=True)]
        else:
            dists = [None] * len(known)
            costs = [o.cost if o.cost is not None else 0.0 for o in known]
        own = order.workload_milli
        workloads = [o.workload_milli or own for o in known]

    lines = order.lines
    n = len(lines)
    splittable = order.splittable
    held: list[list[int]] = []  # per listed store: its stock of each line
    whole: list[bool] = []
    keep: list[bool] = []
    has_all = False  # some store holds every line (with or without the capacity)
    for si, w in zip(picked, workloads, strict=True):
        store = stores[si]
        sid = store.id
        hs = []
        every = True
        some = False
        for ln in lines:
            h = stock.get((sid, ln.sku), 0)
            hs.append(h)
            if h < ln.qty:
                every = False
            if h > 0:
                some = True
        held.append(hs)
        cap = store.capacity_milli
        h_ = every and cap >= w
        whole.append(h_)
        # a split may use a store with some stock of some line and room for the largest per-line share, ceil(W/n)
        keep.append(h_ or (splittable and some and cap >= -(-w // n)))
        has_all = has_all or every
    sel = [j for j, k in enumerate(keep) if k]
    reason = None
    if not sel:
        reason = "insufficient_capacity" if has_all else "insufficient_stock"
    elif not any(whole):
        # Only a split could serve it: the useful stores together must hold every line.
        for li, ln in enumerate(lines):
            if sum(min(held[j][li], ln.qty) for j in sel) < ln.qty:
                reason = "insufficient_stock"
                break
    sel.sort(key=lambda j: (costs[j], picked[j]))  # cheapest first; store index breaks ties (reproducible runs)
    shares: dict[int, tuple[int, ...]] = {}
    cands = []
    for j in sel:
        w_ = workloads[j]
        lw = shares.get(w_)
        if lw is None:
            lw = shares[w_] = tuple(line_workloads(w_, n))
        cands.append(_make_candidate(picked[j], costs[j], w_, dists[j], whole[j], lw))
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
    stores, stock = index.problem.stores, index.problem.stock
    for cand in eligible:
        if cand.whole:
            continue
        sid = stores[cand.store].id
        covers = any(stock.get((sid, sku), 0) > 0 for sku, q in missing.items() if q > 0)
        if covers or added < k:
            kept.append(cand)
            added += 1
            for sku, q in missing.items():
                missing[sku] = max(0, q - stock.get((sid, sku), 0))
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
