"""The router against the contract: shape, hard limits, splits, pickups, radius, explicit costs, reasons, fallback,
optimality (brute force on tiny problems) and a property test against nearest-store-first."""

import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.routing import check_plan, nearest_store_first, parse_problem, route
from orders.routing.candidates import ChainIndex, eligible_candidates

PLAN_KEYS = {
    "status",
    "objective",
    "bound",
    "total_cost",
    "shipments",
    "served",
    "unserved",
    "assignments",
    "unassigned",
    "solve_seconds",
}


def shipments_of(plan, oid):
    return next(a["shipments"] for a in plan["assignments"] if a["order"] == oid)


def reasons(plan):
    return {u["order"]: u["reason"] for u in plan["unassigned"]}


def test_contract_shape(build):
    b = build
    p = b.problem(
        [b.store("A"), b.store("B", 0.02)],
        {("A", "X"): 5, ("B", "Y"): 1},
        [
            b.order("o1", {"X": 1}),
            {"id": "o2", "method": "pickup", "pickup_store": "A", "lines": [{"sku": "X", "qty": 2}]},
            b.order("far", {"X": 1}, 1.0),
        ],
    )
    plan = route(p)
    assert PLAN_KEYS <= plan.keys()
    assert plan["status"] in {"optimal", "feasible", "greedy"}
    assert plan["served"] == 2 and plan["unserved"] == 1 and plan["shipments"] == 2
    assert plan["total_cost"] == pytest.approx(sum(s["cost"] for a in plan["assignments"] for s in a["shipments"]))
    assert plan["objective"] == pytest.approx(1_000_000 + 2 * 500 + plan["total_cost"])
    assert plan["bound"] <= plan["objective"]
    sh = shipments_of(plan, "o1")
    assert sh == [{"store": "A", "lines": [{"sku": "X", "qty": 1}], "cost": 0.0, "workload": 1.0}]
    assert reasons(plan) == {"far": "no_store_in_range"}
    assert check_plan(p, plan) == []


def test_split_only_when_needed_and_allowed(build):
    b = build
    stores = [b.store("A"), b.store("B", 0.01), b.store("C", 0.02)]
    stock = {("A", "X"): 1, ("B", "Y"): 1, ("C", "X"): 1, ("C", "Y"): 1}
    # C (2.2 km) holds both lines: no split although A and B are nearer
    plan = route(b.problem(stores, stock, [b.order("o", {"X": 1, "Y": 1}, allow_split=True)]))
    assert [s["store"] for s in shipments_of(plan, "o")] == ["C"]
    assert plan["status"] == "optimal"
    # without C, a split is the only way, and only if allowed
    stock2 = {("A", "X"): 1, ("B", "Y"): 1}
    plan = route(b.problem(stores, stock2, [b.order("o", {"X": 1, "Y": 1}, allow_split=True)]))
    assert sorted(s["store"] for s in shipments_of(plan, "o")) == ["A", "B"]
    plan = route(b.problem(stores, stock2, [b.order("o", {"X": 1, "Y": 1})]))
    assert reasons(plan) == {"o": "insufficient_stock"}


def test_split_of_one_line_by_quantity(build):
    b = build
    p = b.problem(
        [b.store("A"), b.store("B", 0.01)], {("A", "X"): 2, ("B", "X"): 1}, [b.order("o", {"X": 3}, allow_split=True)]
    )
    plan = route(p)
    assert {s["store"]: s["lines"][0]["qty"] for s in shipments_of(plan, "o")} == {"A": 2, "B": 1}
    assert check_plan(p, plan) == []


def test_wave_splits_when_whole_store_is_needed_by_another_order(build):
    """Store A could serve `flex` whole, but `fixed` has only A; serving both needs `flex` split over B and C."""
    b = build
    stores = [b.store("A"), b.store("B", 0.01), b.store("C", -0.01)]
    stock = {("A", "X"): 1, ("A", "Y"): 1, ("B", "X"): 1, ("C", "Y"): 1}
    p = b.problem(
        stores, stock, [b.order("flex", {"X": 1, "Y": 1}, allow_split=True), b.order("fixed", {"X": 1, "Y": 1})]
    )
    plan = route(p)
    assert plan["served"] == 2
    assert [s["store"] for s in shipments_of(plan, "fixed")] == ["A"]
    assert len(shipments_of(plan, "flex")) == 2
    assert check_plan(p, plan) == []
    # nearest-store-first gives A to the first order and loses the second
    assert nearest_store_first(p)["served"] == 1


def test_pickup_stays_and_is_never_split(build):
    b = build
    stores = [b.store("A"), b.store("B", 0.001), b.store("P", 0.05, methods=("delivery",))]
    stock = {("A", "X"): 1, ("B", "X"): 5, ("B", "Y"): 5, ("A", "Y"): 0, ("P", "X"): 5}
    orders = [
        {"id": "pu", "method": "pickup", "pickup_store": "A", "lines": [{"sku": "X", "qty": 1}]},
        {
            "id": "pu-short",
            "method": "pickup",
            "pickup_store": "A",
            "allow_split": True,
            "lines": [{"sku": "X", "qty": 1}, {"sku": "Y", "qty": 1}],
        },
        {"id": "pu-nomethod", "method": "pickup", "pickup_store": "P", "lines": [{"sku": "X", "qty": 1}]},
        {"id": "pu-unknown", "method": "pickup", "pickup_store": "ZZ", "lines": [{"sku": "X", "qty": 1}]},
    ]
    plan = route(b.problem(stores, stock, orders))
    assert shipments_of(plan, "pu") == [{"store": "A", "lines": [{"sku": "X", "qty": 1}], "cost": 0.0, "workload": 1.0}]
    assert reasons(plan) == {
        "pu-short": "insufficient_stock",
        "pu-nomethod": "pickup_store_cannot_serve",
        "pu-unknown": "unknown_store",
    }


def test_radius_and_method_respected(build):
    b = build
    # B is 3.3 km away with a 3 km radius; C is near but only offers pickup; D is 4.4 km with an 8 km radius
    stores = [b.store("B", 0.03, radius=3), b.store("C", 0.001, methods=("pickup",)), b.store("D", 0.04)]
    stock = {(s, "X"): 5 for s in "BCD"}
    plan = route(b.problem(stores, stock, [b.order("o", {"X": 1})]))
    assert [s["store"] for s in shipments_of(plan, "o")] == ["D"]
    plan = route(
        b.problem(stores[:2], stock | {}, [b.order("o", {"X": 1})])
        | {"stock": [{"store": "B", "sku": "X", "qty": 5}, {"store": "C", "sku": "X", "qty": 5}]}
    )
    assert reasons(plan) == {"o": "no_store_in_range"}


def test_explicit_options_cost_model(build):
    b = build
    stores = [b.store("A"), b.store("B", 0.5), b.store("C")]  # B is 55 km away: options ignore the radius
    stock = {(s, "X"): 5 for s in "ABC"}
    o = b.order("o", {"X": 1}, options=[{"store": "A", "cost": 30}, {"store": "B", "cost": 12.5, "workload": 3}])
    plan = route(b.problem(stores, stock, [o]))
    assert shipments_of(plan, "o") == [{"store": "B", "lines": [{"sku": "X", "qty": 1}], "cost": 12.5, "workload": 3.0}]
    # the option's workload is what counts against capacity
    plan = route(b.problem([b.store("A"), b.store("B", 0.5, capacity=2), b.store("C")], stock, [o]))
    assert shipments_of(plan, "o")[0]["store"] == "A"
    only_unknown = b.order("u", {"X": 1}, options=[{"store": "GONE", "cost": 1}])
    assert reasons(route(b.problem(stores, stock, [only_unknown]))) == {"u": "unknown_store"}


def test_capacity_is_a_hard_limit_and_reason(build):
    b = build
    stores = [b.store("A", capacity=2)]
    p = b.problem(
        stores,
        {("A", "X"): 10},
        [
            b.order("o1", {"X": 1}),
            b.order("o2", {"X": 1}),
            b.order("o3", {"X": 1}),
            b.order("big", {"X": 1}, workload=5),
        ],
    )
    plan = route(p)
    assert plan["served"] == 2
    left = reasons(plan)
    assert left.pop("big") == "insufficient_capacity"  # workload 5 > capacity 2, whatever else happens
    assert list(left.values()) == ["insufficient_capacity"]  # one of the three equal orders
    assert check_plan(p, plan) == []


def test_contended_stock_reason(build):
    b = build
    p = b.problem([b.store("A")], {("A", "X"): 1}, [b.order("o1", {"X": 1}), b.order("o2", {"X": 1})])
    plan = route(p)
    assert plan["served"] == 1 and list(reasons(plan).values()) == ["insufficient_stock"]


def test_balance_weight_spreads_work(build):
    b = build
    stores = [b.store("A", capacity=4), b.store("B", 0.01, capacity=4)]
    stock = {("A", "X"): 9, ("B", "X"): 9}
    orders = [b.order(f"o{i}", {"X": 1}) for i in range(4)]
    plain = route(b.problem(stores, stock, orders))
    assert {s["store"] for a in plain["assignments"] for s in a["shipments"]} == {"A"}
    balanced = route(b.problem(stores, stock, orders, weights={"balance": 10_000}))
    assert balanced["max_load_ratio"] == pytest.approx(0.5)


def test_explanations_say_why(build):
    b = build
    stores = [b.store("A"), b.store("B", 0.01), b.store("C", 0.02)]
    stock = {("A", "X"): 1, ("B", "X"): 1, ("C", "X"): 1}
    plan = route(b.problem(stores, stock, [b.order("o", {"X": 1}, 0.01)]))
    cands = plan["assignments"][0]["candidates"]
    chosen = [c for c in cands if c["chosen"]]
    assert [c["store"] for c in chosen] == ["B"]
    assert {c["store"]: c["why_not"] for c in cands if not c["chosen"]} == {"A": "higher_cost", "C": "higher_cost"}
    assert all("distance_km" in c and "can_serve_whole" in c for c in cands)
    assert (
        "candidates" not in route(b.problem(stores, stock, [b.order("o", {"X": 1})]), explain=False)["assignments"][0]
    )


def test_candidates_pruned_to_k(build):
    b = build
    stores = [b.store(f"S{i}", 0.001 * i) for i in range(30)]
    stock = {(f"S{i}", "X"): 1 for i in range(30)}
    plan = route(b.problem(stores, stock, [b.order("o", {"X": 1})], candidates_k=5))
    assert len(plan["assignments"][0]["candidates"]) == 5
    assert shipments_of(plan, "o")[0]["store"] == "S0"


def test_pruning_keeps_a_split_possible(build):
    """Twenty near stores hold X only; the one holding Y is the 25th nearest: k=3 must still reach it."""
    b = build
    stores = [b.store(f"S{i:02d}", 0.001 * i) for i in range(25)]
    stock = {(f"S{i:02d}", "X"): 1 for i in range(24)} | {("S24", "Y"): 1}
    plan = route(b.problem(stores, stock, [b.order("o", {"X": 1, "Y": 1}, allow_split=True)], candidates_k=3))
    assert sorted(s["store"] for s in shipments_of(plan, "o")) == ["S00", "S24"]


def test_greedy_fallback_when_time_limit_is_zero_or_tiny(build):
    b = build
    stores = [b.store("A"), b.store("B", 0.01), b.store("C", -0.01)]
    stock = {("A", "X"): 1, ("A", "Y"): 1, ("B", "X"): 1, ("C", "Y"): 1}
    p = b.problem(
        stores,
        stock,
        [
            b.order("flex", {"X": 1, "Y": 1}, allow_split=True),
            b.order("fixed", {"X": 1, "Y": 1}),
            b.order("third", {"X": 1}),
        ],
    )
    for limit in (0, 1e-6):
        plan = route(p, time_limit_s=limit)
        assert plan["status"] in {"greedy", "feasible", "optimal"}
        assert check_plan(p, plan) == []
    assert route(p, time_limit_s=0)["status"] == "greedy"


def test_single_order_is_fast_and_proven(build):
    b = build
    stores = [b.store(f"S{i}", 0.0001 * (i % 97), 0.0001 * (i // 97), capacity=20) for i in range(1000)]
    stock = {(f"S{i}", "X"): 1 for i in range(0, 1000, 7)} | {(f"S{i}", "Y"): 2 for i in range(0, 1000, 3)}
    p = parse_problem(b.problem(stores, stock, [b.order("o", {"X": 1, "Y": 1}, 0.003, allow_split=True)]))
    route(p)
    t0 = time.perf_counter()
    plan = route(p)
    assert time.perf_counter() - t0 < 0.05
    assert plan["status"] == "optimal" and plan["bound"] == plan["objective"] and plan["shipments"] == 1


# --- optimality against brute force -----------------------------------------------------------------------------


def brute_force(raw):
    """The best objective over every plan the contract allows, by enumeration (tiny problems, unit lines)."""
    p = parse_problem(raw)
    idx = ChainIndex(p)
    w = p.settings.weights
    per_order = []
    for o in p.orders:
        cands = eligible_candidates(idx, o)[0]
        opts = [None]  # unserved
        opts += [[(c, {ln.sku: ln.qty for ln in o.lines})] for c in cands if c.whole]
        if o.splittable:
            for pick in itertools.product(cands, repeat=len(o.lines)):
                if len({c.store for c in pick}) < 2:
                    continue
                ship = {}
                for c, ln in zip(pick, o.lines, strict=True):
                    ship.setdefault(c.store, (c, {}))[1][ln.sku] = ln.qty
                opts.append(list(ship.values()))
        per_order.append(opts)
    best = None
    for combo in itertools.product(*per_order):
        stock, cap, obj, ok = {}, {}, 0.0, True
        for o, ch in zip(p.orders, combo, strict=True):
            if ch is None:
                obj += w.unserved
                continue
            for c, lines in ch:
                obj += w.shipment + w.cost * c.cost
                cap[c.store] = cap.get(c.store, 0) + sum(
                    lw for ln, lw in zip(o.lines, c.line_workloads, strict=True) if ln.sku in lines
                )
                for sku, q in lines.items():
                    stock[(c.store, sku)] = stock.get((c.store, sku), 0) + q
        for (s, sku), q in stock.items():
            ok &= q <= p.stock_of(p.stores[s].id, sku)
        for s, q in cap.items():
            ok &= q <= p.stores[s].capacity_milli
        if ok and (best is None or obj < best[0]):
            best = (obj, combo)
    return best[0]


@pytest.mark.parametrize("seed", range(25))
def test_optimal_against_brute_force(seed):
    import random

    rng = random.Random(seed)
    stores = [
        {
            "id": f"S{i}",
            "lat": 10.77 + rng.uniform(-0.03, 0.03),
            "lon": 106.70 + rng.uniform(-0.03, 0.03),
            "capacity": rng.randint(1, 3),
            "delivery_radius_km": rng.choice([3, 5, 8]),
        }
        for i in range(3)
    ]
    stock = [{"store": s["id"], "sku": k, "qty": rng.randint(0, 2)} for s in stores for k in "XY"]
    orders = [
        {
            "id": f"o{j}",
            "lat": 10.77 + rng.uniform(-0.03, 0.03),
            "lon": 106.70 + rng.uniform(-0.03, 0.03),
            "allow_split": rng.random() < 0.6,
            "lines": [{"sku": k, "qty": 1} for k in rng.sample("XY", rng.randint(1, 2))],
        }
        for j in range(3)
    ]
    raw = {"stores": stores, "stock": stock, "orders": orders}
    plan = route(raw, time_limit_s=5)
    assert check_plan(raw, plan) == []
    assert plan["status"] == "optimal"
    assert plan["objective"] == pytest.approx(brute_force(raw), abs=1e-3)


# --- property: limits hold and never worse than nearest-store-first -------------------------------------------


@st.composite
def problems(draw):
    n_stores = draw(st.integers(1, 5))
    skus = ["A", "B", "C"][: draw(st.integers(1, 3))]
    stores = [
        {
            "id": f"S{i}",
            "lat": 10.77 + draw(st.floats(-0.05, 0.05)),
            "lon": 106.7 + draw(st.floats(-0.05, 0.05)),
            "capacity": draw(st.integers(0, 4)),
            "delivery_radius_km": draw(st.sampled_from([2, 4, 8])),
            "methods": draw(st.sampled_from([["delivery", "pickup"], ["delivery"], ["pickup"]])),
        }
        for i in range(n_stores)
    ]
    stock = [{"store": s["id"], "sku": k, "qty": draw(st.integers(0, 3))} for s in stores for k in skus]
    orders = []
    for j in range(draw(st.integers(1, 6))):
        lines = [
            {"sku": k, "qty": draw(st.integers(1, 2))}
            for k in draw(st.lists(st.sampled_from(skus), min_size=1, max_size=3, unique=True))
        ]
        kind = draw(st.sampled_from(["delivery", "delivery", "pickup", "options"]))
        o = {"id": f"o{j}", "lines": lines, "allow_split": draw(st.booleans())}
        if kind == "pickup":
            o.update(method="pickup", pickup_store=draw(st.sampled_from([s["id"] for s in stores] + ["ZZ"])))
        else:
            o.update(
                method="delivery", lat=10.77 + draw(st.floats(-0.05, 0.05)), lon=106.7 + draw(st.floats(-0.05, 0.05))
            )
            if kind == "options":
                o["options"] = [
                    {"store": s["id"], "cost": draw(st.floats(0, 50)), "workload": draw(st.integers(1, 3))}
                    for s in stores
                    if draw(st.booleans())
                ]
        orders.append(o)
    return {"stores": stores, "stock": stock, "orders": orders, "settings": {"num_workers": 2}}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.sampled_from([0, 0.5]))
def test_plans_respect_limits_and_beat_nearest_store_first(raw, time_limit):
    plan = route(raw, time_limit_s=time_limit)
    assert check_plan(raw, plan) == []
    base = nearest_store_first(raw)
    assert check_plan(raw, base) == []
    assert plan["served"] >= base["served"]
    assert plan["objective"] <= base["objective"] + 1e-6
    assert plan["bound"] is None or plan["bound"] <= plan["objective"] + 1e-6
    assert all(u["reason"] for u in plan["unassigned"])
