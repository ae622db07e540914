"""The checkout fast paths of the router give exactly what the general code gives.

parse_problem checks the common valid store, stock row, order and settings inline (and memoises settings) and
builds stores, options and candidates by their slots; orders
that name their stores (options, pickups) get their candidates in plain Python instead of numpy; route() and
check_plan() share the parsed problem of one exact input. Each is compared here with the general path on many random
problems, valid and broken: the same Problem (to the repr, so 1 and 1.0 or -0.0 and 0.0 would differ), the same
error message, the same candidates, plans and violations."""

import contextlib
import copy
import math
import random

import pytest

from orders.routing import ProblemError, check_plan, parse_problem, route
from orders.routing import candidates as cand_mod
from orders.routing import problem as prob_mod

LAT, LON = 10.7769, 106.7009
BAD = [None, True, False, "", "  ", "x", -1, 0, 1, 2.5, -0.0, math.nan, math.inf, 10**400, [], {}, (1,), 3.0, 1e301]


@contextlib.contextmanager
def general_only(monkeypatch):
    """Every checkout fast path off: the helper-per-field order and stock parser, no memo, no sharing, numpy
    candidates for every order. The inline store check is older than these paths and stays, as it was: without the
    settings' default radius, which parse_problem fills in afterwards."""
    fast_store = prob_mod._fast_store
    with monkeypatch.context() as m:
        m.setattr(prob_mod, "_fast_order", lambda raw: None)
        m.setattr(prob_mod, "_fast_store", lambda raw, default_radius_km=math.nan: fast_store(raw))
        m.setattr(prob_mod, "_fast_stock", lambda rows, store_index: None)
        m.setattr(prob_mod, "exact_key", lambda raw: None)
        m.setattr(cand_mod, "exact_key", lambda raw: None)
        m.setattr(cand_mod, "_listed_candidates", cand_mod._array_candidates)
        yield


def random_problem(rng: random.Random, *, n_orders: int | None = None) -> dict:
    n_stores = rng.randint(1, 24)
    skus = [f"SKU-{i}" for i in range(rng.randint(1, 5))]
    stores = []
    for i in range(n_stores):
        s = {
            "id": f"S{i:03d}",
            "lat": LAT + rng.uniform(-0.06, 0.06),
            "lon": LON + rng.uniform(-0.06, 0.06),
            "capacity": rng.choice([0, 1, 2, 3, 5, 17, 40, 2.5, 0.0015]),
            "methods": rng.choice([["delivery", "pickup"], ["delivery"], ["pickup"], []]),
        }
        r = rng.random()
        if r < 0.7:
            s["delivery_radius_km"] = rng.choice([3, 5, 8.0, 10, 0.5])
        elif r < 0.8:
            s["delivery_radius_km"] = None
        if rng.random() < 0.1:
            del s["methods"]
        stores.append(s)
    stock = [
        {"store": s["id"], "sku": sku, "qty": rng.choice([0, 1, 1, 2, 3, 5, 20])}
        for s in stores
        for sku in skus
        if rng.random() < 0.7
    ]
    orders = []
    for oi in range(n_orders if n_orders is not None else rng.choice([1, 1, 1, 2, 3])):
        lines = [{"sku": rng.choice(skus + ["NOWHERE"] * (rng.random() < 0.05)), "qty": rng.choice([1, 1, 2, 3])}
                 for _ in range(rng.randint(1, 4))]
        kind = rng.random()
        o: dict = {"id": f"O{oi}", "lines": lines}
        if kind < 0.15:
            o["method"] = "pickup"
            o["pickup_store"] = rng.choice([s["id"] for s in stores] + ["GONE"])
            if rng.random() < 0.3:
                o["options"] = [{"store": o["pickup_store"], "cost": rng.choice([None, 0.5]),
                                 "workload": rng.choice([None, 2, 0.0001])}]
        else:
            o["method"] = "delivery"
            o["allow_split"] = rng.random() < 0.6
            if kind < 0.85:
                chosen = rng.sample(stores, rng.randint(1, len(stores)))
                o["options"] = [
                    {
                        "store": s["id"],
                        "cost": rng.choice([round(rng.uniform(0, 6), 3), None, 0, 2]),
                        "workload": rng.choice([len(lines), None, 1.5, 2]),
                    }
                    for s in chosen
                ]
                if rng.random() < 0.1:
                    o["options"].append({"store": "GONE", "cost": 1.0})
            if kind >= 0.85 or rng.random() < 0.8:
                o["lat"], o["lon"] = LAT + rng.uniform(-0.05, 0.05), LON + rng.uniform(-0.05, 0.05)
            if "lat" in o and rng.random() < 0.1:
                o["lat"] = 10  # an int coordinate
        if rng.random() < 0.3:
            o["workload"] = rng.choice([1, 2.5, 3, 0.0004])
        orders.append(o)
    settings: dict = {"time_limit_s": rng.choice([0.05, 0.2, 0, 1])}
    if rng.random() < 0.3:
        settings.update(cost_per_km=rng.choice([1, 2.5]), cost_fixed=rng.choice([0, 1.25]))
    if rng.random() < 0.2:
        settings["weights"] = {"balance": rng.choice([0, 10])}
    if rng.random() < 0.2:
        settings["explain"] = rng.random() < 0.5
    if rng.random() < 0.2:
        settings["default_radius_km"] = rng.choice([2, 6.5])
    return {"stores": stores, "stock": stock, "orders": orders, "settings": settings}


def _paths(obj, prefix=()):
    """Every (container, key) inside a problem, to break one of them."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield obj, k
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield obj, i
            yield from _paths(v, prefix + (i,))


def broken(rng: random.Random, raw: dict) -> dict:
    raw = copy.deepcopy(raw)
    spots = list(_paths(raw))
    for _ in range(rng.choice([1, 1, 2])):
        container, key = rng.choice(spots)
        r = rng.random()
        if r < 0.15 and isinstance(container, dict):
            del container[key]
            spots = list(_paths(raw))
        elif r < 0.3 and isinstance(container, list) and container:
            container.append(copy.deepcopy(container[key]))  # duplicate store, row, order or option
        else:
            container[key] = copy.deepcopy(rng.choice(BAD))
        spots = list(_paths(raw))
    return raw


def outcome(raw):
    try:
        return repr(parse_problem(raw))
    except ProblemError as e:
        return ("ProblemError", e.message)
    except (OverflowError, TypeError, AttributeError, ValueError) as e:  # what the general path let through before
        return (type(e).__name__, str(e))


def test_parse_fast_equals_general_on_valid_and_broken_problems(monkeypatch):
    rng = random.Random(1)
    accepted = errors = 0
    for n in range(1500):
        raw = random_problem(rng)
        if n % 3:
            raw = broken(rng, raw)
        fast = outcome(raw)
        with general_only(monkeypatch):
            general = outcome(raw)
        assert fast == general, raw
        if isinstance(fast, str):
            accepted += 1
        else:
            errors += 1
    assert accepted > 400 and errors > 400  # both sides were exercised


def test_fast_order_and_store_build_exactly_the_general_objects():
    rng = random.Random(2)
    taken = 0
    for _ in range(800):
        raw = broken(rng, random_problem(rng)) if rng.random() < 0.5 else random_problem(rng)
        orders, stores = raw.get("orders"), raw.get("stores")
        for o in orders if isinstance(orders, list) else []:
            fast = prob_mod._fast_order(o)
            if fast is not None:
                taken += 1
                general = prob_mod._parse_order(o, 0)
                assert repr(fast) == repr(general) and fast == general and hash(fast) == hash(general)
        for s in stores if isinstance(stores, list) else []:
            methods = s.get("methods", []) if isinstance(s, dict) else None
            if not (isinstance(methods, list) and all(isinstance(m, str) for m in methods)):
                continue  # the general path refuses a tuple, and both fail alike on a list inside the list
            fast = prob_mod._fast_store(s)
            if fast is not None:
                general = prob_mod._parse_store(s, 0)
                assert repr(fast) == repr(general) and fast == general and hash(fast) == hash(general)
    assert taken > 500


def test_settings_memo_is_exact():
    # 1 and True, 1 and 1.0, 0.0 and -0.0 are equal in Python and must still be told apart
    assert prob_mod._parse_settings({"explain": True}).explain is True
    with pytest.raises(ProblemError, match="explain"):
        prob_mod._parse_settings({"explain": 1})
    a = prob_mod._parse_settings({"cost_fixed": 0.0})
    b = prob_mod._parse_settings({"cost_fixed": -0.0})
    assert math.copysign(1, a.cost_fixed) == 1 and math.copysign(1, b.cost_fixed) == -1
    for _ in range(2):  # once parsed, once from the memo
        with pytest.raises(ProblemError, match="candidates_k"):
            prob_mod._parse_settings({"candidates_k": 0})
        assert prob_mod._parse_settings(None) == prob_mod.Settings()


def test_listed_candidates_equal_the_array_rules():
    rng = random.Random(3)
    compared = 0
    for _ in range(1500):
        p = parse_problem(random_problem(rng))
        index = cand_mod.ChainIndex(p)
        for o in p.orders:
            if o.method == "pickup" or o.options is not None:
                fast = cand_mod._listed_candidates(index, o)
                general = cand_mod._array_candidates(index, o)
                assert repr(fast) == repr(general) and fast == general
                assert [hash(c) for c in fast[0]] == [hash(c) for c in general[0]]
                compared += 1
    assert compared > 1500


def _without_time(plan):
    return {k: v for k, v in plan.items() if k != "solve_seconds"}


def _corrupt(rng: random.Random, plan: dict) -> dict:
    plan = copy.deepcopy(plan)
    r = rng.random()
    if plan["assignments"] and r < 0.5:
        sh = rng.choice(rng.choice(plan["assignments"])["shipments"])
        what = rng.random()
        if what < 0.3:
            sh["store"] = rng.choice(["S000", "S001", "S005", "GONE"])
        elif what < 0.6 and sh["lines"]:
            sh["lines"][0]["qty"] = rng.choice([0, 2, 5, 1.0, True, 50])
        else:
            sh["lines"].append({"sku": "SKU-0", "qty": 1})
    elif plan["unassigned"] and r < 0.7:
        plan["unassigned"][0]["reason"] = ""
    elif plan["assignments"]:
        plan["assignments"].append(copy.deepcopy(plan["assignments"][0]))
    return plan


def test_route_and_check_plan_equal_the_general_path(monkeypatch):
    rng = random.Random(4)
    for n in range(250):
        raw = random_problem(rng, n_orders=1 if n % 4 else rng.randint(2, 3))
        raw["settings"]["time_limit_s"] = 0.2
        fast = route(copy.deepcopy(raw))
        bad = [_corrupt(rng, fast) for _ in range(3)]
        fast_checks = [check_plan(raw, fast)] + [check_plan(raw, b) for b in bad]
        with general_only(monkeypatch):
            general = route(copy.deepcopy(raw))
            general_checks = [check_plan(raw, general)] + [check_plan(raw, b) for b in bad]
        assert _without_time(fast) == _without_time(general), raw
        assert fast_checks == general_checks
        assert fast_checks[0] == []


def test_check_plan_sees_a_problem_changed_after_routing():
    rng = random.Random(5)
    raw = random_problem(rng, n_orders=1)
    raw["stores"] = [{"id": "A", "lat": LAT, "lon": LON, "capacity": 10, "delivery_radius_km": 5}]
    raw["stock"] = [{"store": "A", "sku": "X", "qty": 3}]
    raw["orders"] = [{"id": "o", "lat": LAT, "lon": LON, "lines": [{"sku": "X", "qty": 2}],
                      "options": [{"store": "A", "cost": 1.0}]}]
    plan = route(raw)
    assert cand_mod.shared_index(raw) is cand_mod.shared_index(raw)  # route's parse is reused by the check
    assert check_plan(raw, plan) == []
    raw["stock"][0]["qty"] = 1  # the same dict, changed: parsed again
    assert check_plan(raw, plan) == [
        "order 'o': store 'A' may not serve it (not among the order's options)",
        "store 'A' sku 'X': 2 units planned, 1 available",
    ]
    raw["stock"][0]["qty"] = True  # equal to 1 but not a valid quantity
    with pytest.raises(ProblemError, match="qty"):
        check_plan(raw, plan)
    raw["stock"][0]["qty"] = 3
    assert check_plan(raw, plan) == []


def test_invalid_problems_are_never_shared():
    raw = {"stores": [{"id": "A", "lat": LAT, "lon": LON, "capacity": -1}], "orders": []}
    for _ in range(2):
        with pytest.raises(ProblemError, match="capacity"):
            route(raw)
        with pytest.raises(ProblemError, match="capacity"):
            check_plan(raw, {"assignments": [], "unassigned": []})
