"""The wave model in OR-Tools CP-SAT.

Per order and candidate store: a shipment literal `ship`. Orders that may not be split only get `ship` for stores
that hold all of it (the order's lines are implied). Splittable orders also get, per store and line, `pick` (the store
touches the line; it costs the line's share of the workload) and `units` (how many of the line it ships; the same
variable as `pick` when the line has one unit). All costs, weights and workloads are integers: costs in 1/SCALE of the
plan's unit (metres when the cost is km), workloads in milli-units as everywhere in the router.

Stock and capacity rows are only added where the candidates could exceed them; elsewhere they cannot bind and would
only slow the LP relaxation down.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass

from ortools.sat.python import cp_model

from .allocation import Allocation, Shipment
from .candidates import Candidate
from .problem import Problem

SCALE = 1000
RATIO_UNIT = 1000  # the max load ratio variable is in 1/1000


@dataclass(slots=True)
class SolveResult:
    alloc: Allocation | None
    status: str  # "optimal" | "feasible" | "unknown" | "infeasible"
    bound: float | None  # in plan objective units
    objective: float | None
    wall_s: float


def solve_wave(
    problem: Problem,
    cand_lists: list[list[Candidate]],
    hint: Allocation,
    *,
    time_limit_s: float,
    num_workers: int,
    seed: int = 0,
    deadline: float | None = None,
) -> SolveResult:
    """Solve the wave. `deadline` (a time.perf_counter() value) makes the search stop then, whatever building
    the model took; otherwise the search gets `time_limit_s`."""
    w = problem.settings.weights
    m = cp_model.CpModel()
    stock_terms: dict[tuple[int, str], list] = defaultdict(list)
    stock_need: dict[tuple[int, str], int] = defaultdict(int)
    cap_terms: dict[int, list] = defaultdict(list)
    cap_need: dict[int, int] = defaultdict(int)
    objective = []
    const = 0
    unserved_coef = round(w.unserved * SCALE)
    ship_coef = round(w.shipment * SCALE)
    # decoding tables
    ship_vars: dict[tuple[int, int], cp_model.IntVar] = {}
    unit_vars: dict[tuple[int, int, str], cp_model.IntVar] = {}
    hints: list[tuple[cp_model.IntVar, int]] = []

    hint_ship: dict[tuple[int, int], dict[str, int]] = {}
    for oi, shipments in hint.items():
        for sh in shipments:
            hint_ship[(oi, sh.store)] = sh.lines

    for oi, order in enumerate(problem.orders):
        # On a busy machine building a big model can eat the whole budget; then there is no search to wait for.
        if deadline is not None and oi % 64 == 63 and time.perf_counter() > deadline:
            return SolveResult(None, "unknown", None, None, 0.0)
        cands = cand_lists[oi]
        if not cands:
            const += unserved_coef
            continue
        served = m.new_bool_var(f"served_{oi}")
        hints.append((served, int(bool(hint.get(oi)))))
        const += unserved_coef
        objective.append(-unserved_coef * served)
        if not order.splittable:
            lits = []
            for c in cands:
                if not c.whole:
                    continue
                y = m.new_bool_var(f"y_{oi}_{c.store}")
                ship_vars[(oi, c.store)] = y
                hints.append((y, int((oi, c.store) in hint_ship)))
                lits.append(y)
                objective.append((ship_coef + round(w.cost * c.cost * SCALE)) * y)
                for ln in order.lines:
                    stock_terms[(c.store, ln.sku)].append(ln.qty * y)
                    stock_need[(c.store, ln.sku)] += ln.qty
                cap_terms[c.store].append(c.workload_milli * y)
                cap_need[c.store] += c.workload_milli
            m.add(sum(lits) == served)
            continue

        ys = []
        per_line: dict[str, list] = defaultdict(list)
        for c in cands:
            sid = problem.stores[c.store].id
            y = m.new_bool_var(f"y_{oi}_{c.store}")
            ship_vars[(oi, c.store)] = y
            hinted = hint_ship.get((oi, c.store), {})
            hints.append((y, int(bool(hinted))))
            ys.append(y)
            objective.append((ship_coef + round(w.cost * c.cost * SCALE)) * y)
            picks = []
            for ln, lw in zip(order.lines, c.line_workloads, strict=True):
                have = min(ln.qty, problem.stock_of(sid, ln.sku))
                if have <= 0:
                    continue
                z = m.new_bool_var(f"z_{oi}_{c.store}_{ln.sku}")
                hints.append((z, int(hinted.get(ln.sku, 0) > 0)))
                m.add_implication(z, y)
                picks.append(z)
                if ln.qty == 1:
                    x = z
                else:
                    x = m.new_int_var(0, have, f"x_{oi}_{c.store}_{ln.sku}")
                    hints.append((x, hinted.get(ln.sku, 0)))
                    m.add(x <= have * z)
                    m.add(x >= z)
                unit_vars[(oi, c.store, ln.sku)] = x
                per_line[ln.sku].append(x)
                stock_terms[(c.store, ln.sku)].append(x)
                stock_need[(c.store, ln.sku)] += have
                if lw:
                    cap_terms[c.store].append(lw * z)
                    cap_need[c.store] += lw
            # an empty shipment is not a shipment (keeps the count honest if the solver is stopped early)
            m.add(sum(picks) >= y) if picks else m.add(y == 0)
        for ln in order.lines:
            m.add(sum(per_line[ln.sku]) == ln.qty * served)
        # Cuts the LP relaxation cannot see: a served order needs a shipment, two if no store holds all of it.
        m.add(sum(ys) >= (1 if any(c.whole for c in cands) else 2) * served)

    for (si, sku), terms in stock_terms.items():
        have = problem.stock_of(problem.stores[si].id, sku)
        if stock_need[(si, sku)] > have:
            m.add(sum(terms) <= have)
    load_of: dict[int, object] = {}
    for si, terms in cap_terms.items():
        cap = problem.stores[si].capacity_milli
        if cap_need[si] > cap:
            m.add(sum(terms) <= cap)
        load_of[si] = sum(terms)

    if w.balance > 0 and load_of:
        # max load ratio L (in 1/RATIO_UNIT): load * RATIO_UNIT <= L * capacity for every store that may get work
        top = m.new_int_var(0, RATIO_UNIT, "max_load_ratio")
        for si, load in load_of.items():
            cap = problem.stores[si].capacity_milli
            if cap > 0:
                m.add(load * RATIO_UNIT <= top * cap)
        objective.append(max(1, round(w.balance * SCALE / RATIO_UNIT)) * top)
        ratio = 0.0
        for si, load in _hint_loads(hint).items():
            cap = problem.stores[si].capacity_milli
            if cap:
                ratio = max(ratio, load / cap)
        hints.append((top, min(RATIO_UNIT, math.ceil(ratio * RATIO_UNIT - 1e-9))))

    m.minimize(sum(objective) + const)
    for var, value in hints:
        m.add_hint(var, value)

    solver = cp_model.CpSolver()
    if deadline is not None:
        time_limit_s = deadline - time.perf_counter()
    solver.parameters.max_time_in_seconds = max(0.001, time_limit_s)
    solver.parameters.num_workers = num_workers
    solver.parameters.random_seed = seed
    code = solver.solve(m)
    wall = solver.wall_time
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return SolveResult(None, "infeasible" if code == cp_model.INFEASIBLE else "unknown", None, None, wall)

    alloc: Allocation = {}
    by_order: dict[int, list[Candidate]] = {oi: cands for oi, cands in enumerate(cand_lists) if cands}
    for oi, cands in by_order.items():
        order = problem.orders[oi]
        shipments = []
        for c in cands:
            y = ship_vars.get((oi, c.store))
            if y is None or not solver.boolean_value(y):
                continue
            if not order.splittable:
                lines = {ln.sku: ln.qty for ln in order.lines}
                wl = c.workload_milli
            else:
                lines = {}
                for ln in order.lines:
                    x = unit_vars.get((oi, c.store, ln.sku))
                    q = int(solver.value(x)) if x is not None else 0
                    if q > 0:
                        lines[ln.sku] = q
                if not lines:
                    continue
                wl = sum(lw for ln, lw in zip(order.lines, c.line_workloads, strict=True) if ln.sku in lines)
            shipments.append(Shipment(c.store, lines, c.cost, wl))
        if shipments:
            alloc[oi] = shipments
    status = "optimal" if code == cp_model.OPTIMAL else "feasible"
    return SolveResult(alloc, status, solver.best_objective_bound / SCALE, solver.objective_value / SCALE, wall)


def _hint_loads(hint: Allocation) -> dict[int, int]:
    load: dict[int, int] = defaultdict(int)
    for shipments in hint.values():
        for sh in shipments:
            load[sh.store] += sh.workload_milli
    return load
