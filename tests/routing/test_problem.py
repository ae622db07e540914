"""parse_problem: clear errors for bad problems, defaults for the optional fields."""

import pytest

from orders.routing import ProblemError, parse_problem

STORE = {"id": "A", "lat": 10.77, "lon": 106.7, "capacity": 5}
ORDER = {"id": "o", "lat": 10.77, "lon": 106.7, "lines": [{"sku": "X", "qty": 1}]}


def raw(**over):
    p = {"stores": [STORE], "stock": [{"store": "A", "sku": "X", "qty": 1}], "orders": [ORDER]}
    p.update(over)
    return p


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ([], "problem must be an object"),
        ({"stores": [STORE]}, "missing field 'orders'"),
        (raw(stock=[{"store": "B", "sku": "X", "qty": 1}]), "unknown store 'B'"),
        (raw(stock=[{"store": "A", "sku": "X", "qty": -1}]), "must be >= 0"),
        (raw(stock=[{"store": "A", "sku": "X", "qty": 1}] * 2), "duplicate stock row"),
        (raw(orders=[ORDER, ORDER]), "duplicate order id 'o'"),
        (raw(stores=[STORE, STORE]), "duplicate store id 'A'"),
        (raw(orders=[ORDER | {"lines": [{"sku": "X", "qty": 0}]}]), "qty must be >= 1"),
        (raw(orders=[ORDER | {"lines": []}]), "no lines"),
        (raw(orders=[{k: v for k, v in ORDER.items() if k != "lat"}]), "missing field 'lat'"),
        (raw(orders=[ORDER | {"method": "drone"}]), "method must be one of"),
        (raw(orders=[{"id": "p", "method": "pickup", "lines": ORDER["lines"]}]), "pickup_store"),
        (raw(stores=[{k: v for k, v in STORE.items() if k != "capacity"}]), "missing field 'capacity'"),
        (raw(stores=[STORE | {"capacity": True}]), "must be a number"),
        (raw(stores=[STORE | {"lat": 99}]), "out of range"),
        (raw(settings={"weights": {"unserved": -1}}), "must be >= 0"),
        (raw(settings={"weights": {"speed": 1}}), "unknown weight"),
        (raw(orders=[ORDER | {"options": [{"store": "A", "cost": -3}]}]), "cost must be >= 0"),
        (raw(kind="collection"), "unsupported problem kind"),
    ],
)
def test_invalid_problems_are_refused_clearly(problem, message):
    with pytest.raises(ProblemError, match=message):
        parse_problem(problem)


def test_defaults():
    p = parse_problem(
        raw(orders=[ORDER | {"lines": [{"sku": "X", "qty": 1}, {"sku": "Y", "qty": 2}, {"sku": "X", "qty": 1}]}])
    )
    order = p.orders[0]
    assert order.method == "delivery" and order.allow_split is False
    assert [(ln.sku, ln.qty) for ln in order.lines] == [("X", 2), ("Y", 2)]  # same SKU twice: one line
    assert order.workload_milli == 2000  # workload defaults to the number of lines
    assert p.stores[0].radius_km == p.settings.default_radius_km
    assert p.settings.weights.unserved == 1_000_000 and p.settings.weights.shipment == 500
