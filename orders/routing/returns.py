"""The return router: which store receives a courier-collected return. Pure (no ORM): a problem in, a plan out.

Problem (JSON, `kind: "returns"`):

    {"kind": "returns",
     "stores": [{"id": "HCM-Q1-001", "lat": 10.77, "lon": 106.70, "accepts_returns": true, "capacity": 20}],
     "stock": [{"store": "HCM-Q1-001", "sku": "AO-THUN-M", "qty": 2, "target": 5}],
     "returns": [{"id": "RT-1", "lat": 10.78, "lon": 106.69,
                  "lines": [{"sku": "AO-THUN-M", "qty": 1, "resellable": true}]}],
     "settings": {"max_km": 30, "prefer_shortage_km": 2.0, "time_limit_s": 1.0}}

A candidate is a store that accepts returns within `max_km` of the collection point. Each candidate gets a score in
km: its distance, minus `prefer_shortage_km` times the share of the return's resellable units that fill a gap
(`target - qty`, never below 0) at that store. So a store short of the SKU wins over a nearer one exactly when it
is at most `prefer_shortage_km` further away (a full gap share); ties go to the nearer store, then the store id.
Damaged units fill no gap (they go to quarantine wherever they land).

One return: the best score is the answer (exhaustive, so `optimal`). Several returns at once share the gaps (two
returns of the last missing unit cannot both fill it) and the stores' receiving `capacity` (units): CP-SAT
maximises the same total score jointly, seeded with the greedy plan (returns in id order, each taking its best
store given what earlier ones used), which is also the fallback.

Plan:

    {"status": "optimal" | "feasible" | "greedy",
     "assignments": [{"return": "RT-1", "store": "HCM-Q1-001", "distance_km": 1.2, "fills": 1, "score": -0.8,
                      "reason": "...", "candidates": [{"store", "distance_km", "shortage", "fills", "score",
                                                       "chosen", "note"}]}],
     "unassigned": [{"return": "RT-9", "reason": "no_store_in_range"}],
     "total_score": -0.8, "solve_seconds": 0.001}
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from ortools.sat.python import cp_model

from .problem import ProblemError

SCALE = 1000  # CP-SAT works in integers: metres, and milli-km of shortage bonus
EARTH_RADIUS_KM = 6371.0088


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), the same measure the order router uses for delivery cost."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class ReturnStore:
    id: str
    lat: float
    lon: float
    accepts_returns: bool
    capacity: int | None  # units it can receive in this round; None: no limit


@dataclass(frozen=True, slots=True)
class ReturnLine:
    sku: str
    qty: int
    resellable: bool


@dataclass(frozen=True, slots=True)
class CollectedReturn:
    id: str
    lat: float
    lon: float
    lines: tuple[ReturnLine, ...]

    @property
    def units(self) -> int:
        return sum(line.qty for line in self.lines)

    @property
    def resellable(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.lines:
            if line.resellable:
                out[line.sku] = out.get(line.sku, 0) + line.qty
        return out


@dataclass(frozen=True, slots=True)
class ReturnSettings:
    max_km: float = 30.0
    prefer_shortage_km: float = 2.0
    time_limit_s: float = 1.0
    num_workers: int = 4


@dataclass(frozen=True, slots=True)
class ReturnsProblem:
    stores: tuple[ReturnStore, ...]
    stock: dict[tuple[str, str], tuple[int, int]]  # (store, sku) -> (qty, target)
    returns: tuple[CollectedReturn, ...]
    settings: ReturnSettings = field(default_factory=ReturnSettings)

    def gap(self, store: str, sku: str) -> int:
        qty, target = self.stock.get((store, sku), (0, 0))
        return max(0, target - qty)


def _number(raw: Any, where: str, *, minimum: float | None = None, maximum: float | None = None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ProblemError(f"{where} must be a number")
    if (minimum is not None and raw < minimum) or (maximum is not None and raw > maximum):
        raise ProblemError(f"{where} is out of range")
    return float(raw)


def _whole(raw: Any, where: str, *, minimum: int = 0) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        raise ProblemError(f"{where} must be a whole number ≥ {minimum}")
    return raw


def parse_returns_problem(raw: Any) -> ReturnsProblem:
    """Validate a returns problem (see the module docstring). Raises ProblemError saying what and where."""
    if not isinstance(raw, dict):
        raise ProblemError("the problem must be a JSON object")
    if raw.get("kind", "returns") != "returns":
        raise ProblemError(f"unsupported problem kind {raw.get('kind')!r} (expected 'returns')")
    stores: list[ReturnStore] = []
    seen: set[str] = set()
    for i, s in enumerate(raw.get("stores") or []):
        where = f"stores[{i}]"
        if not isinstance(s, dict) or not isinstance(s.get("id"), str) or not s["id"]:
            raise ProblemError(f"{where}.id must be a non-empty string")
        if s["id"] in seen:
            raise ProblemError(f"{where}.id {s['id']!r} is repeated")
        seen.add(s["id"])
        capacity = s.get("capacity")
        stores.append(
            ReturnStore(
                id=s["id"],
                lat=_number(s.get("lat"), f"{where}.lat", minimum=-90, maximum=90),
                lon=_number(s.get("lon"), f"{where}.lon", minimum=-180, maximum=180),
                accepts_returns=bool(s.get("accepts_returns", True)),
                capacity=None if capacity is None else _whole(capacity, f"{where}.capacity"),
            )
        )
    stock: dict[tuple[str, str], tuple[int, int]] = {}
    for i, row in enumerate(raw.get("stock") or []):
        where = f"stock[{i}]"
        if not isinstance(row, dict) or row.get("store") not in seen or not isinstance(row.get("sku"), str):
            raise ProblemError(f"{where} must name a known store and a sku")
        stock[(row["store"], row["sku"])] = (
            _whole(row.get("qty", 0), f"{where}.qty"),
            _whole(row.get("target", 0), f"{where}.target"),
        )
    returns: list[CollectedReturn] = []
    ids: set[str] = set()
    for i, r in enumerate(raw.get("returns") or []):
        where = f"returns[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not r["id"] or r["id"] in ids:
            raise ProblemError(f"{where}.id must be a unique non-empty string")
        ids.add(r["id"])
        lines = []
        for j, line in enumerate(r.get("lines") or []):
            if not isinstance(line, dict) or not isinstance(line.get("sku"), str):
                raise ProblemError(f"{where}.lines[{j}].sku must be a string")
            lines.append(ReturnLine(line["sku"], _whole(line.get("qty"), f"{where}.lines[{j}].qty", minimum=1),
                                    bool(line.get("resellable", True))))
        if not lines:
            raise ProblemError(f"{where}.lines must not be empty")
        returns.append(
            CollectedReturn(
                id=r["id"],
                lat=_number(r.get("lat"), f"{where}.lat", minimum=-90, maximum=90),
                lon=_number(r.get("lon"), f"{where}.lon", minimum=-180, maximum=180),
                lines=tuple(lines),
            )
        )
    s = raw.get("settings") or {}
    if not isinstance(s, dict):
        raise ProblemError("settings must be an object")
    defaults = ReturnSettings()
    settings = ReturnSettings(
        max_km=_number(s.get("max_km", defaults.max_km), "settings.max_km", minimum=0),
        prefer_shortage_km=_number(s.get("prefer_shortage_km", defaults.prefer_shortage_km),
                                   "settings.prefer_shortage_km", minimum=0),
        time_limit_s=_number(s.get("time_limit_s", defaults.time_limit_s), "settings.time_limit_s", minimum=0),
        num_workers=_whole(s.get("num_workers", defaults.num_workers), "settings.num_workers", minimum=1),
    )
    return ReturnsProblem(tuple(stores), stock, tuple(returns), settings)


@dataclass(slots=True)
class _Candidate:
    store: ReturnStore
    distance_km: float
    shortage: dict[str, int]  # sku -> units short of target (resellable SKUs of the return only)


def _candidates(problem: ReturnsProblem, r: CollectedReturn) -> list[_Candidate]:
    out = []
    for store in problem.stores:
        if not store.accepts_returns:
            continue
        d = _km(r.lat, r.lon, store.lat, store.lon)
        if d > problem.settings.max_km:
            continue
        out.append(_Candidate(store, d, {sku: problem.gap(store.id, sku) for sku in r.resellable}))
    out.sort(key=lambda c: (c.distance_km, c.store.id))
    return out


def _score(problem: ReturnsProblem, r: CollectedReturn, distance_km: float, fills: int) -> float:
    share = fills / r.units if r.units else 0.0
    return distance_km - problem.settings.prefer_shortage_km * share


def _fills(r: CollectedReturn, c: _Candidate, used: dict[tuple[str, str], int]) -> int:
    return sum(min(qty, max(0, c.shortage.get(sku, 0) - used.get((c.store.id, sku), 0))) for sku, qty in r.resellable.items())


Choice = dict[str, tuple[int, int]]  # return id -> (candidate index, units filling a gap there)


def _greedy(problem: ReturnsProblem, cands: dict[str, list[_Candidate]]) -> Choice:
    """Returns in id order, each to its best-scoring store given the gaps and capacity earlier ones used."""
    used: dict[tuple[str, str], int] = {}
    load: dict[str, int] = {}
    choice: Choice = {}
    for r in sorted(problem.returns, key=lambda r: r.id):
        best = None
        for index, c in enumerate(cands[r.id]):
            if c.store.capacity is not None and load.get(c.store.id, 0) + r.units > c.store.capacity:
                continue
            key = (_score(problem, r, c.distance_km, _fills(r, c, used)), c.distance_km, c.store.id)
            if best is None or key < best[0]:
                best = (key, index)
        if best is None:
            continue
        index = best[1]
        c = cands[r.id][index]
        choice[r.id] = (index, _fills(r, c, used))
        load[c.store.id] = load.get(c.store.id, 0) + r.units
        for sku, qty in r.resellable.items():
            take = min(qty, max(0, c.shortage.get(sku, 0) - used.get((c.store.id, sku), 0)))
            used[(c.store.id, sku)] = used.get((c.store.id, sku), 0) + take
    return choice


def _cpsat(problem: ReturnsProblem, cands: dict[str, list[_Candidate]], hint: Choice) -> tuple[Choice, str] | None:
    """Joint assignment: every return that has a feasible store gets one; the total score is minimal."""
    m = cp_model.CpModel()
    x: dict[tuple[str, int], cp_model.IntVar] = {}
    fill_terms: dict[tuple[str, str], list] = {}
    fills_of: dict[tuple[str, int], list] = {}
    cap_terms: dict[str, list] = {}
    objective = []
    bonus_km = problem.settings.prefer_shortage_km
    servable = [r for r in problem.returns if cands[r.id]]
    for r in servable:
        lits = []
        for index, c in enumerate(cands[r.id]):
            v = m.NewBoolVar(f"x_{r.id}_{c.store.id}")
            x[(r.id, index)] = v
            lits.append(v)
            objective.append(round(c.distance_km * SCALE) * v)
            if c.store.capacity is not None:
                cap_terms.setdefault(c.store.id, []).append(r.units * v)
            for sku, qty in r.resellable.items():
                gap = c.shortage.get(sku, 0)
                if gap <= 0:
                    continue
                f = m.NewIntVar(0, min(qty, gap), f"f_{r.id}_{c.store.id}_{sku}")
                m.Add(f <= min(qty, gap) * v)
                fill_terms.setdefault((c.store.id, sku), []).append(f)
                fills_of.setdefault((r.id, index), []).append(f)
                # Each filled unit is worth bonus_km / units of this return (the score of the module docstring).
                objective.append(-round(bonus_km * SCALE / r.units) * f)
            m.AddHint(v, 1 if hint.get(r.id, (None,))[0] == index else 0)
        m.AddExactlyOne(lits)
    for (store_id, sku), terms in fill_terms.items():
        m.Add(sum(terms) <= problem.gap(store_id, sku))
    capacity = {s.id: s.capacity for s in problem.stores}
    for store_id, terms in cap_terms.items():
        m.Add(sum(terms) <= capacity[store_id])
    m.Minimize(sum(objective))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, problem.settings.time_limit_s)
    solver.parameters.num_workers = problem.settings.num_workers
    solver.parameters.random_seed = 0
    status = solver.Solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    choice: Choice = {}
    for (rid, index), v in x.items():
        if solver.Value(v):
            choice[rid] = (index, sum(solver.Value(f) for f in fills_of.get((rid, index), [])))
    return choice, "optimal" if status == cp_model.OPTIMAL else "feasible"


def _explain(problem: ReturnsProblem, cands: dict[str, list[_Candidate]], choice: Choice) -> list[dict]:
    """Per assignment: every candidate with its distance, gap, the units it could fill and its score, and why the
    chosen one won. `fills` of the chosen store is what the plan gives it (gaps shared with other returns)."""
    out = []
    for r in sorted(problem.returns, key=lambda r: r.id):
        if r.id not in choice:
            continue
        index_chosen, chosen_fills = choice[r.id]
        chosen = cands[r.id][index_chosen]
        nearest = cands[r.id][0]
        listed = []
        for index, c in enumerate(cands[r.id]):
            fills = chosen_fills if index == index_chosen else _fills(r, c, {})
            note = []
            if index == 0:
                note.append("nearest")
            if fills:
                note.append(f"short of target: fills {fills} of {r.units} unit(s)")
            listed.append({
                "store": c.store.id, "distance_km": round(c.distance_km, 3),
                "shortage": {sku: gap for sku, gap in sorted(c.shortage.items()) if gap},
                "fills": fills, "score": round(_score(problem, r, c.distance_km, fills), 3),
                "chosen": index == index_chosen, "note": "; ".join(note),
            })
        if chosen is nearest:
            reason = f"{chosen.store.id} is the nearest store that accepts returns ({chosen.distance_km:.2f} km)"
            if chosen_fills:
                reason += f" and is short of target (fills {chosen_fills} unit(s))"
        elif chosen_fills:
            extra = chosen.distance_km - nearest.distance_km
            reason = (
                f"{chosen.store.id} is short of target for {chosen_fills} returned unit(s) and only {extra:.2f} km "
                f"further than the nearest, {nearest.store.id} (preference up to "
                f"{problem.settings.prefer_shortage_km:g} km)"
            )
        else:
            reason = (
                f"{chosen.store.id} ({chosen.distance_km:.2f} km): nearer stores had no receiving capacity left, "
                "or their gaps went to other returns of this round"
            )
        out.append({
            "return": r.id, "store": chosen.store.id, "distance_km": round(chosen.distance_km, 3),
            "fills": chosen_fills, "score": round(_score(problem, r, chosen.distance_km, chosen_fills), 3),
            "reason": reason, "candidates": listed,
        })
    return out


def route_returns(raw: dict[str, Any] | ReturnsProblem) -> dict[str, Any]:
    """Choose a receiving store for each return (see the module docstring). Raises ProblemError on a bad problem."""
    started = time.perf_counter()
    problem = raw if isinstance(raw, ReturnsProblem) else parse_returns_problem(raw)
    cands = {r.id: _candidates(problem, r) for r in problem.returns}
    choice = _greedy(problem, cands)
    status = "greedy"
    limited = any(s.capacity is not None for s in problem.stores)
    if len(problem.returns) <= 1 and not limited:
        status = "optimal"  # one return without capacity limits: the greedy scan is exhaustive
    elif problem.returns:
        solved = _cpsat(problem, cands, choice)
        if solved is not None:
            choice, status = solved
    unassigned = []
    for r in sorted(problem.returns, key=lambda r: r.id):
        if r.id not in choice:
            reason = "no_store_in_range" if not cands[r.id] else "no_receiving_capacity"
            unassigned.append({"return": r.id, "reason": reason})
    assignments = _explain(problem, cands, choice)
    return {
        "status": status,
        "assignments": assignments,
        "unassigned": unassigned,
        "total_score": round(sum(a["score"] for a in assignments), 3),
        "solve_seconds": round(time.perf_counter() - started, 4),
    }


__all__ = ["ReturnsProblem", "parse_returns_problem", "route_returns"]
