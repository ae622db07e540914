"""From an allocation to the plan JSON (shared/design/routing-problem.md), its objective, and the validator.

`check_plan` re-derives every limit from the problem alone (not from the router's internals), because the service
calls it before applying any plan, including plans edited by hand or produced by another version of the router.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .allocation import Allocation, Residual
from .candidates import Candidate, ChainIndex, OrderCandidates, eligible_candidates, shared_index
from .problem import Problem, Weights


@dataclass(frozen=True, slots=True)
class Score:
    served: int
    unserved: int
    shipments: int
    total_cost: float
    max_load_ratio: float
    objective: float


def loads(problem: Problem, alloc: Allocation) -> list[int]:
    load = [0] * len(problem.stores)
    for shipments in alloc.values():
        for sh in shipments:
            load[sh.store] += sh.workload_milli
    return load


def score(problem: Problem, alloc: Allocation) -> Score:
    w: Weights = problem.settings.weights
    served = sum(1 for s in alloc.values() if s)
    shipments = sum(len(s) for s in alloc.values())
    cost = sum(sh.cost for s in alloc.values() for sh in s)
    ratio = 0.0
    for store, load in zip(problem.stores, loads(problem, alloc), strict=True):
        if load and store.capacity_milli:
            ratio = max(ratio, load / store.capacity_milli)
    unserved = len(problem.orders) - served
    objective = w.unserved * unserved + w.shipment * shipments + w.cost * cost + w.balance * ratio
    return Score(served, unserved, shipments, cost, ratio, objective)


def unserved_reason(problem: Problem, oi: int, oc: OrderCandidates, residual: Residual) -> str:
    """Why an order that the rules allowed was left out: the limit that other orders' shipments exhausted."""
    if oc.reason:
        return oc.reason
    order = problem.orders[oi]
    stock_ok = any(all(residual.stock.get((c.store, ln.sku), 0) >= ln.qty for ln in order.lines) for c in oc.eligible)
    if not stock_ok and order.splittable:
        stock_ok = all(
            sum(max(0, min(ln.qty, residual.stock.get((c.store, ln.sku), 0))) for c in oc.eligible) >= ln.qty
            for ln in order.lines
        )
    return "insufficient_capacity" if stock_ok else "insufficient_stock"


def _explain(problem: Problem, order_i: int, oc: OrderCandidates, chosen: set[int], residual: Residual, k: int):
    """The candidates operations see for one assignment: why the chosen store(s) won and the others did not."""
    order = problem.orders[order_i]
    chosen_cost = min((c.cost for c in oc.eligible if c.store in chosen), default=0.0)
    out = []
    for c in oc.pruned[:k] if oc.pruned else oc.eligible[:k]:
        entry: dict[str, Any] = {"store": problem.stores[c.store].id, "cost": round(c.cost, 4)}
        if c.distance_km is not None:
            entry["distance_km"] = round(c.distance_km, 3)
        entry["can_serve_whole"] = c.whole
        entry["chosen"] = c.store in chosen
        if c.store not in chosen:
            if not c.whole and len(chosen) <= 1:
                why = "insufficient_stock"
            elif c.cost > chosen_cost or (c.cost == chosen_cost and len(chosen) == 1):
                why = "higher_cost"
            elif residual.capacity[c.store] < c.workload_milli:
                why = "capacity_used_by_other_orders"
            elif not residual.can_whole(order, c):
                why = "stock_used_by_other_orders"
            else:
                why = "workload_balance"
            entry["why_not"] = why
        out.append(entry)
    return out


def build_plan(
    problem: Problem,
    ocs: list[OrderCandidates],
    alloc: Allocation,
    *,
    status: str,
    bound: float | None,
    solve_seconds: float,
    explain: bool | None = None,
) -> dict[str, Any]:
    sc = score(problem, alloc)
    residual = Residual(problem)
    for shipments in alloc.values():
        residual.take(shipments)
    explain = problem.settings.explain if explain is None else explain
    assignments, unassigned = [], []
    for oi, order in enumerate(problem.orders):
        shipments = alloc.get(oi)
        if not shipments:
            unassigned.append({"order": order.id, "reason": unserved_reason(problem, oi, ocs[oi], residual)})
            continue
        entry: dict[str, Any] = {
            "order": order.id,
            "shipments": [
                {
                    "store": problem.stores[sh.store].id,
                    "lines": [{"sku": ln.sku, "qty": sh.lines[ln.sku]} for ln in order.lines if sh.lines.get(ln.sku)],
                    "cost": round(sh.cost, 4),
                    "workload": sh.workload_milli / 1000,
                }
                for sh in shipments
            ],
        }
        if explain:
            entry["candidates"] = _explain(
                problem, oi, ocs[oi], {sh.store for sh in shipments}, residual, problem.settings.candidates_k
            )
        assignments.append(entry)
    if bound is not None:
        bound = min(bound, sc.objective)  # rounding of scaled costs must never report a bound above the plan
    return {
        "status": status,
        "objective": round(sc.objective, 4),
        "bound": round(bound, 4) if bound is not None else None,
        "total_cost": round(sc.total_cost, 4),
        "shipments": sc.shipments,
        "served": sc.served,
        "unserved": sc.unserved,
        "max_load_ratio": round(sc.max_load_ratio, 4),
        "assignments": assignments,
        "unassigned": unassigned,
        "solve_seconds": round(solve_seconds, 4),
    }


# --- validation --------------------------------------------------------------------------------------------------


class PlanViolation(ValueError):
    """A plan breaks a hard limit of its problem; `violations` lists every one found."""

    code = "invalid_routing_plan"

    def __init__(self, violations: list[str]) -> None:
        self.violations = violations
        super().__init__("; ".join(violations[:5]) + (f" (+{len(violations) - 5} more)" if len(violations) > 5 else ""))


def check_plan(
    problem: Problem | dict[str, Any], plan: dict[str, Any], *, raise_on_violation: bool = False
) -> list[str]:
    """Every way `plan` breaks the hard limits of `problem` (empty list: the plan may be applied): stock or capacity
    above what the problem gives, a split of a non-splittable order, a split although one store could still serve the
    order whole, a moved pickup, a store the order may not use (out of radius, method not offered, not in options),
    units that do not match the order, orders missing or twice. With raise_on_violation, raises PlanViolation."""
    index = shared_index(problem)
    problem = index.problem
    by_id = {o.id: i for i, o in enumerate(problem.orders)}
    v: list[str] = []
    seen: set[str] = set()
    used_stock: dict[tuple[int, str], int] = defaultdict(int)
    used_cap = [0] * len(problem.stores)
    # per order: the shipments as (candidate, lines), to judge splits once all usage is known
    shipped: dict[int, list[tuple[Candidate, dict[str, int]]]] = {}
    eligible: dict[int, list[Candidate]] = {}

    for a in plan.get("assignments", []):
        oid = a.get("order")
        if oid not in by_id:
            v.append(f"assignment for unknown order {oid!r}")
            continue
        if oid in seen:
            v.append(f"order {oid!r} assigned twice")
            continue
        seen.add(oid)
        oi = by_id[oid]
        order = problem.orders[oi]
        eligible[oi] = cands = eligible_candidates(index, order)[0]
        by_store = {c.store: c for c in cands}
        ships = a.get("shipments") or []
        if not ships:
            v.append(f"order {oid!r}: assignment without shipments")
            continue
        if len(ships) > 1 and not order.splittable:
            what = "pickup order" if order.method == "pickup" else "order with allow_split false"
            v.append(f"order {oid!r}: {what} split over {len(ships)} stores")
        units: dict[str, int] = defaultdict(int)
        stores_here: set[int] = set()
        shipped[oi] = []
        for sh in ships:
            sid = sh.get("store")
            si = problem.store_index.get(sid)
            if si is None:
                v.append(f"order {oid!r}: unknown store {sid!r}")
                continue
            if si in stores_here:
                v.append(f"order {oid!r}: two shipments from store {sid!r}")
            stores_here.add(si)
            if order.method == "pickup" and sid != order.pickup_store:
                v.append(f"order {oid!r}: pickup order moved from {order.pickup_store!r} to {sid!r}")
                continue
            cand = by_store.get(si)
            lines: dict[str, int] = defaultdict(int)
            for ln in sh.get("lines") or []:
                q = ln.get("qty")
                if not isinstance(q, int) or isinstance(q, bool) or q <= 0:
                    v.append(f"order {oid!r}: store {sid!r} ships a non-positive or non-integer qty {q!r}")
                    continue
                lines[ln.get("sku")] += q
            for sku, q in lines.items():
                units[sku] += q
                used_stock[(si, sku)] += q
            if cand is None:
                v.append(
                    f"order {oid!r}: store {sid!r} may not serve it ({_why_not_eligible(problem, index, order, si)})"
                )
                continue
            shipped[oi].append((cand, dict(lines)))
            wl = sum(w for ln, w in zip(order.lines, cand.line_workloads, strict=True) if lines.get(ln.sku, 0) > 0)
            used_cap[si] += wl
        wanted = {ln.sku: ln.qty for ln in order.lines}
        if dict(units) != wanted:
            v.append(f"order {oid!r}: shipped units {dict(units)} differ from the order's {wanted}")

    for u in plan.get("unassigned", []):
        oid = u.get("order")
        if oid not in by_id:
            v.append(f"unassigned entry for unknown order {oid!r}")
        elif oid in seen:
            v.append(f"order {oid!r} both assigned and unassigned")
        else:
            seen.add(oid)
        if not u.get("reason"):
            v.append(f"unassigned order {oid!r} without a reason")
    for o in problem.orders:
        if o.id not in seen:
            v.append(f"order {o.id!r} neither assigned nor unassigned")

    for (si, sku), q in sorted(used_stock.items()):
        have = problem.stock_of(problem.stores[si].id, sku)
        if q > have:
            v.append(f"store {problem.stores[si].id!r} sku {sku!r}: {q} units planned, {have} available")
    for si, q in enumerate(used_cap):
        if q > problem.stores[si].capacity_milli:
            cap = problem.stores[si].capacity_milli / 1000
            v.append(f"store {problem.stores[si].id!r}: workload {q / 1000:g} planned, capacity {cap:g}")

    # A split is allowed only when no single store can serve the order whole with what the other orders leave.
    for oi, parts in shipped.items():
        if len(parts) < 2 or not problem.orders[oi].splittable:
            continue
        order = problem.orders[oi]
        for cand in eligible[oi]:
            mine = sum(
                w
                for ln, w in zip(order.lines, cand.line_workloads, strict=True)
                for c, lines in parts
                if c.store == cand.store and lines.get(ln.sku, 0) > 0
            )
            cap_left = problem.stores[cand.store].capacity_milli - used_cap[cand.store] + mine
            sid = problem.stores[cand.store].id
            stock_left = all(
                problem.stock_of(sid, ln.sku)
                - used_stock.get((cand.store, ln.sku), 0)
                + sum(lines.get(ln.sku, 0) for c, lines in parts if c.store == cand.store)
                >= ln.qty
                for ln in order.lines
            )
            if stock_left and cap_left >= cand.workload_milli:
                v.append(f"order {order.id!r}: split over {len(parts)} stores although {sid!r} could serve it whole")
                break

    if raise_on_violation and v:
        raise PlanViolation(v)
    return v


def _why_not_eligible(problem: Problem, index: ChainIndex, order, si: int) -> str:
    store = problem.stores[si]
    if order.options is not None and order.method == "delivery":
        return "not among the order's options"
    if order.method not in store.methods:
        return f"does not offer {order.method}"
    if order.method == "delivery":
        d = float(index.distances(order)[si])
        if d > store.radius_km:
            return f"out of radius: {d:.2f} km > {store.radius_km:g} km"
    return "does not hold the stock or capacity for it"
