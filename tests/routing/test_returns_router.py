"""The return router (orders.routing.returns), pure: nearest store that accepts returns, the shortage preference and
its limit, damaged units, range, capacity, explanations, bad problems, and joint routing of several returns checked
against brute force."""

import itertools
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from hypothesis import given, settings
from hypothesis import strategies as st

from orders.routing import ProblemError
from orders.routing.returns import _km, parse_returns_problem, route_returns

LAT, LON = 10.7769, 106.7009  # District 1; 0.009 degree of latitude is about 1 km


def store(sid, dkm=0.0, *, accepts=True, capacity=None):
    s = {"id": sid, "lat": LAT + dkm * 0.009, "lon": LON, "accepts_returns": accepts}
    if capacity is not None:
        s["capacity"] = capacity
    return s


def ret(rid, lines, dkm=0.0):
    return {"id": rid, "lat": LAT + dkm * 0.009, "lon": LON,
            "lines": [{"sku": sku, "qty": qty, "resellable": ok} for sku, qty, ok in lines]}


def problem(stores, returns, stock=(), **settings_):
    return {"kind": "returns", "stores": stores, "returns": returns,
            "stock": [{"store": s, "sku": sku, "qty": q, "target": t} for s, sku, q, t in stock],
            "settings": {"prefer_shortage_km": 2.0, "max_km": 30, **settings_}}


def chosen(plan, rid):
    return next(a["store"] for a in plan["assignments"] if a["return"] == rid)


def test_nearest_store_that_accepts_returns():
    p = problem([store("NEAR", 0.5, accepts=False), store("MID", 1.0), store("FAR", 3.0)],
                [ret("R1", [("S", 1, True)])])
    plan = route_returns(p)
    assert plan["status"] == "optimal" and chosen(plan, "R1") == "MID"
    a = plan["assignments"][0]
    assert [c["store"] for c in a["candidates"]] == ["MID", "FAR"]  # the one refusing returns is no candidate
    assert "nearest" in a["reason"]


def test_store_short_of_target_wins_when_only_a_little_further():
    stock = [("NEAR", "S", 5, 5), ("SHORT", "S", 1, 4)]
    plan = route_returns(problem([store("NEAR", 0.2), store("SHORT", 1.8)], [ret("R1", [("S", 1, True)])], stock))
    a = plan["assignments"][0]
    assert a["store"] == "SHORT" and a["fills"] == 1
    assert "short of target" in a["reason"]
    by_store = {c["store"]: c for c in a["candidates"]}
    assert by_store["SHORT"]["shortage"] == {"S": 3} and by_store["NEAR"]["shortage"] == {}
    assert by_store["SHORT"]["score"] < by_store["NEAR"]["score"]


def test_shortage_preference_has_a_limit():
    stock = [("SHORT", "S", 0, 4)]
    far_short = problem([store("NEAR", 0.2), store("SHORT", 2.5)], [ret("R1", [("S", 1, True)])], stock)
    assert chosen(route_returns(far_short), "R1") == "NEAR"  # 2.3 km further > 2 km preference
    wider = problem([store("NEAR", 0.2), store("SHORT", 2.5)], [ret("R1", [("S", 1, True)])], stock,
                    prefer_shortage_km=3.0)
    assert chosen(route_returns(wider), "R1") == "SHORT"


def test_damaged_units_fill_no_gap():
    stock = [("SHORT", "S", 0, 4)]
    plan = route_returns(problem([store("NEAR", 0.2), store("SHORT", 1.0)], [ret("R1", [("S", 1, False)])], stock))
    assert chosen(plan, "R1") == "NEAR"


def test_out_of_range_and_capacity_are_explained():
    p = problem([store("A", 0.0, capacity=1)], [ret("R1", [("S", 1, True)], 0.1), ret("R2", [("S", 1, True)], 0.2),
                                                ret("R3", [("S", 1, True)], 50)])
    plan = route_returns(p)
    assert {u["return"]: u["reason"] for u in plan["unassigned"]} in (
        {"R2": "no_receiving_capacity", "R3": "no_store_in_range"},
        {"R1": "no_receiving_capacity", "R3": "no_store_in_range"},
    )
    assert len(plan["assignments"]) == 1


def test_several_returns_share_one_gap_jointly():
    """Two returns of the last missing unit: greedy in id order gives the gap to R1 (a small gain), the joint model
    to R2 (which is right next to the short store)."""
    stock = [("SHORT", "S", 0, 1)]
    stores = [store("A", 0.0), store("SHORT", 1.0)]
    returns = [ret("R1", [("S", 1, True)], 0.1), ret("R2", [("S", 1, True)], 0.95)]
    plan = route_returns(problem(stores, returns, stock))
    assert plan["status"] == "optimal"
    assert chosen(plan, "R2") == "SHORT" and chosen(plan, "R1") == "A"
    assert sum(a["fills"] for a in plan["assignments"]) == 1


@pytest.mark.parametrize(
    "bad",
    [
        [], {"kind": "fulfilment"}, {"stores": [{"id": "A", "lat": 99, "lon": 0}]},
        {"stores": [{"id": "A", "lat": 1, "lon": 1}, {"id": "A", "lat": 1, "lon": 1}]},
        {"returns": [{"id": "R", "lat": 1, "lon": 1, "lines": []}]},
        {"returns": [{"id": "R", "lat": 1, "lon": 1, "lines": [{"sku": "S", "qty": 0}]}]},
        {"stores": [], "stock": [{"store": "X", "sku": "S"}]},
        {"settings": {"max_km": -1}},
    ],
)
def test_bad_problems_are_refused_clearly(bad):
    with pytest.raises(ProblemError):
        parse_returns_problem(bad)


def _brute_force(p) -> float:
    parsed = parse_returns_problem(p)
    cands = {r.id: [s for s in parsed.stores if _km(r.lat, r.lon, s.lat, s.lon) <= parsed.settings.max_km]
             for r in parsed.returns}
    best = None
    for combo in itertools.product(*[cands[r.id] for r in parsed.returns]):
        # Gaps go to the returns that gain most per unit: brute-force that allocation too.
        total = sum(_km(r.lat, r.lon, s.lat, s.lon) for r, s in zip(parsed.returns, combo, strict=True))
        units = [(parsed.settings.prefer_shortage_km / r.units, s.id, line.sku)
                 for r, s in zip(parsed.returns, combo, strict=True) for line in r.lines if line.resellable
                 for _ in range(line.qty)]
        left = {}
        for gain, sid, sku in sorted(units, reverse=True):
            left.setdefault((sid, sku), parsed.gap(sid, sku))
            if left[(sid, sku)] > 0:
                left[(sid, sku)] -= 1
                total -= gain
        best = total if best is None else min(best, total)
    return best


@settings(max_examples=25, deadline=None)
@given(
    where=st.lists(st.floats(min_value=0, max_value=4), min_size=3, max_size=3),
    returns=st.lists(st.tuples(st.floats(min_value=0, max_value=4), st.integers(1, 2), st.booleans()),
                     min_size=1, max_size=4),
    gaps=st.lists(st.integers(0, 2), min_size=3, max_size=3),
)
def test_joint_plan_matches_brute_force(where, returns, gaps):
    stores = [store(f"S{i}", d) for i, d in enumerate(where)]
    stock = [(f"S{i}", "SKU", 0, g) for i, g in enumerate(gaps)]
    rs = [ret(f"R{i}", [("SKU", qty, ok)], d) for i, (d, qty, ok) in enumerate(returns)]
    p = problem(stores, rs, stock)
    plan = route_returns(p)
    assert not plan["unassigned"]
    assert plan["total_score"] == pytest.approx(_brute_force(p), abs=0.01 * len(rs))


def test_route_returns_command_replays_a_problem_with_other_settings(tmp_path):
    stock = [("SHORT", "S", 0, 4)]
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(problem([store("NEAR", 0.2), store("SHORT", 2.5)], [ret("R1", [("S", 1, True)])],
                                       stock)))
    out = StringIO()
    call_command("route_returns", str(path), stdout=out)
    assert json.loads(out.getvalue())["assignments"][0]["store"] == "NEAR"
    out = StringIO()
    call_command("route_returns", str(path), "--prefer-shortage-km", "3", stdout=out)
    assert json.loads(out.getvalue())["assignments"][0]["store"] == "SHORT"
    bad = tmp_path / "bad.json"
    bad.write_text('{"returns": [{"id": "R", "lat": 1, "lon": 1, "lines": []}]}')
    with pytest.raises(CommandError):
        call_command("route_returns", str(bad))


def test_route_problem_hands_a_returns_problem_to_the_returns_router(tmp_path):
    path = tmp_path / "problem.json"
    raw = problem([store("NEAR", 0.2), store("SHORT", 2.5)], [ret("R1", [("S", 1, True)])], [("SHORT", "S", 0, 4)])
    path.write_text(json.dumps({**raw, "kind": "returns"}))
    out = StringIO()
    call_command("route_problem", str(path), stdout=out)
    def without_timing(plan: dict) -> dict:
        return {k: v for k, v in plan.items() if k != "solve_seconds"}

    plan = json.loads(out.getvalue())
    assert "solve_seconds" in plan
    assert without_timing(plan) == without_timing(route_returns({**raw, "kind": "returns"}))
