"""The benchmark baselines: same plan format, same hard limits, their own (simple) decisions."""

from orders.routing import check_plan, nearest_store_first, priority_list


def test_nearest_store_first(build):
    b = build
    stores = [b.store("A", 0.02), b.store("B", 0.01), b.store("C", 0.001)]
    stock = {("A", "X"): 1, ("A", "Y"): 1, ("B", "X"): 1, ("C", "Y"): 1}
    p = b.problem(
        stores,
        stock,
        [
            b.order("whole", {"X": 1, "Y": 1}, allow_split=True),
            b.order("split", {"X": 1, "Y": 1}, allow_split=True),
            b.order("nosplit", {"X": 1}),
        ],
    )
    plan = nearest_store_first(p)
    assert check_plan(p, plan) == []
    ships = {a["order"]: [s["store"] for s in a["shipments"]] for a in plan["assignments"]}
    assert ships == {"whole": ["A"], "split": ["C", "B"]}  # nearest holding everything; then split nearest first
    assert plan["unassigned"] == [{"order": "nosplit", "reason": "insufficient_stock"}]
    assert plan["status"] == "baseline" and plan["bound"] is None


def test_priority_list_respects_capacity(build):
    b = build
    stores = [b.store("NEAR", 0.001, capacity=5), b.store("FLAG", 0.03, capacity=1)]
    stock = {("NEAR", "X"): 5, ("FLAG", "X"): 5}
    p = b.problem(stores, stock, [b.order("o1", {"X": 1}), b.order("o2", {"X": 1})])
    plan = priority_list(p, ["FLAG"])
    assert check_plan(p, plan) == []
    ships = {a["order"]: a["shipments"][0]["store"] for a in plan["assignments"]}
    assert ships == {"o1": "FLAG", "o2": "NEAR"}  # flagship first until its capacity is used
