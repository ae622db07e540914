"""An independent exact solve for small problems: a MIP written separately from orders/routing/cpsat.py, solved by
SCIP through pywraplp, on the FULL eligible candidate sets (no pruning). It shares only the candidate rules (which
store may serve which order at what cost), so it checks the router's model, its pruning and its search at once.
"""

from __future__ import annotations

import time

from ortools.linear_solver import pywraplp

from orders.routing.candidates import ChainIndex, eligible_candidates
from orders.routing.problem import parse_problem


def exact_objective(raw: dict, *, time_limit_s: float = 120.0) -> tuple[float | None, bool, float]:
    """(objective, proven optimal, seconds). Objective in the plan's units."""
    t0 = time.perf_counter()
    p = parse_problem(raw)
    idx = ChainIndex(p)
    w = p.settings.weights
    s = pywraplp.Solver.CreateSolver("SCIP")
    s.SetTimeLimit(int(time_limit_s * 1000))
    stock_use: dict = {}
    cap_use: dict = {}
    obj = []
    const = 0.0
    for oi, o in enumerate(p.orders):
        cands, reason = eligible_candidates(idx, o)
        const += w.unserved
        if reason or not cands:
            continue
        served = s.BoolVar(f"s{oi}")
        obj.append(-w.unserved * served)
        ys = []
        per_line: dict = {ln.sku: [] for ln in o.lines}
        for c in cands:
            sid = p.stores[c.store].id
            y = s.BoolVar(f"y{oi}_{c.store}")
            ys.append(y)
            obj.append((w.shipment + w.cost * c.cost) * y)
            if not o.splittable:
                if not c.whole:
                    s.Add(y == 0)
                    continue
                for ln in o.lines:
                    stock_use.setdefault((sid, ln.sku), []).append(ln.qty * y)
                    per_line[ln.sku].append(ln.qty * y)
                cap_use.setdefault(c.store, []).append(c.workload_milli * y)
                continue
            for ln, lw in zip(o.lines, c.line_workloads, strict=True):
                have = min(ln.qty, p.stock_of(sid, ln.sku))
                if have <= 0:
                    continue
                z = s.BoolVar(f"z{oi}_{c.store}_{ln.sku}")
                x = s.IntVar(0, have, f"x{oi}_{c.store}_{ln.sku}")
                s.Add(x <= have * z)
                s.Add(z <= y)
                per_line[ln.sku].append(x)
                stock_use.setdefault((sid, ln.sku), []).append(x)
                cap_use.setdefault(c.store, []).append(lw * z)
        if not o.splittable:
            s.Add(sum(ys) == served)
        for ln in o.lines:
            s.Add(sum(per_line[ln.sku]) == ln.qty * served)
    for (sid, sku), terms in stock_use.items():
        s.Add(sum(terms) <= p.stock_of(sid, sku))
    for si, terms in cap_use.items():
        s.Add(sum(terms) <= p.stores[si].capacity_milli)
    s.Minimize(sum(obj) + const)
    params = pywraplp.MPSolverParameters()
    # SCIP's default 1e-4 relative gap is 1,400 objective units on these problems: more than two shipments
    params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, 0.0)
    code = s.Solve(params)
    if code not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return None, False, time.perf_counter() - t0
    return s.Objective().Value(), code == pywraplp.Solver.OPTIMAL, time.perf_counter() - t0
