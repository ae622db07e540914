"""check_plan finds every kind of hard-limit violation (the service's gate before applying a plan)."""

import copy

import pytest

from orders.routing import PlanViolation, check_plan, route


def base_problem(build):
    b = build
    stores = [b.store("A", capacity=2), b.store("B", 0.01), b.store("FAR", 0.2), b.store("P", 0.002)]
    stock = {("A", "X"): 1, ("A", "Y"): 1, ("B", "X"): 5, ("B", "Y"): 5, ("FAR", "X"): 5, ("P", "X"): 5}
    orders = [
        b.order("d", {"X": 1}),
        b.order("s", {"X": 1, "Y": 1}, allow_split=True),
        {"id": "pu", "method": "pickup", "pickup_store": "P", "lines": [{"sku": "X", "qty": 1}]},
    ]
    return b.problem(stores, stock, orders)


def ship(store, **lines):
    return {"store": store, "lines": [{"sku": k, "qty": q} for k, q in lines.items()], "cost": 0}


def plan_with(**assign):
    return {"assignments": [{"order": o, "shipments": s} for o, s in assign.items()], "unassigned": []}


def test_router_plan_passes(build):
    p = base_problem(build)
    assert check_plan(p, route(p)) == []


@pytest.mark.parametrize(
    ("assign", "expected"),
    [
        ({"d": [ship("FAR", X=1)], "s": [ship("B", X=1, Y=1)], "pu": [ship("P", X=1)]}, "out of radius"),
        ({"d": [ship("B", X=1)], "s": [ship("B", X=1, Y=1)], "pu": [ship("B", X=1)]}, "pickup order moved"),
        ({"d": [ship("A", X=1), ship("B", X=0)], "s": [ship("B", X=1, Y=1)], "pu": [ship("P", X=1)]}, "split over"),
        (
            {"d": [ship("B", X=1)], "s": [ship("A", X=1), ship("B", Y=1)], "pu": [ship("P", X=1)]},
            "could serve it whole",
        ),
        ({"d": [ship("A", X=1)], "s": [ship("A", X=1, Y=1)], "pu": [ship("P", X=1)]}, "2 units planned, 1 available"),
        ({"d": [ship("B", X=2)], "s": [ship("B", X=1, Y=1)], "pu": [ship("P", X=1)]}, "differ from the order"),
        ({"d": [ship("B", X=1)], "s": [ship("B", X=1, Y=1)]}, "neither assigned nor unassigned"),
        (
            {"d": [ship("B", X=1)], "s": [ship("B", X=1, Y=1)], "pu": [ship("P", X=1)], "zz": [ship("B", X=1)]},
            "unknown order",
        ),
        ({"d": [ship("NOPE", X=1)], "s": [ship("B", X=1, Y=1)], "pu": [ship("P", X=1)]}, "unknown store"),
    ],
)
def test_violations_found(build, assign, expected):
    p = base_problem(build)
    violations = check_plan(p, plan_with(**assign))
    assert any(expected in v for v in violations), violations
    with pytest.raises(PlanViolation):
        check_plan(p, plan_with(**assign), raise_on_violation=True)


def test_capacity_violation(build):
    b = build
    p = b.problem([b.store("A", capacity=1)], {("A", "X"): 5}, [b.order("o1", {"X": 1}), b.order("o2", {"X": 1})])
    v = check_plan(p, plan_with(o1=[ship("A", X=1)], o2=[ship("A", X=1)]))
    assert any("workload 2 planned, capacity 1" in x for x in v)


def test_unassigned_needs_a_reason(build):
    p = base_problem(build)
    plan = copy.deepcopy(route(p))
    plan["assignments"] = [a for a in plan["assignments"] if a["order"] != "d"]
    plan["unassigned"].append({"order": "d", "reason": ""})
    assert any("without a reason" in x for x in check_plan(p, plan))
