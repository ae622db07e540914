"""The orders app's fast paths and their ORM twins (orders/fast_paths.py) give the same answers and write the same
rows, on PostgreSQL, on the same inputs.

Each case runs twice from the same state: once as deployed (the PostgreSQL statements) and once inside
`orm_twins()` (the ORM code the SQLite demo runs), each inside a savepoint that is rolled back afterwards, so the
second run starts where the first did. What differs between two runs legitimately (new primary keys, the order
number made from them, a pickup code drawn at random, the clock) is replaced by its rank or made relative to the
placement's time; everything else must be equal. A spy on each twin proves that each run took the twin it claims.
"""

import contextlib
import difflib
import json
import re
from datetime import datetime, timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from inventory import services as stock
from inventory.exceptions import InsufficientStock, UnknownSku
from inventory.models import Product, Reservation, Stock, StockMovement, Store
from o2o.fast_paths import orm_twins
from o2o.models import OutboxEvent
from orders import fast_paths, routing_input, services
from orders.candidate_stores import bounding_box
from orders.models import Fulfillment, FulfillmentLine, Order, OrderLine, PickupCode, RoutingDecision
from orders.pricing import selectors as pricing_selectors
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory
from tests.orders.conftest import BEN_THANH, CUSTOMER

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL twins are PostgreSQL's")

TWINS = ("sql", "orm")


class _RolledBack(Exception):
    pass


@pytest.fixture
def spies(monkeypatch):
    """Counts the calls of every twin in orders.fast_paths, by name."""
    calls: dict[str, int] = {}
    for name in dir(fast_paths):
        if re.fullmatch(r"_\w+_(sql|orm)", name):
            real = getattr(fast_paths, name)

            def spy(*args, _real=real, _name=name, **kwargs):
                calls[_name] = calls.get(_name, 0) + 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(fast_paths, name, spy)
    return calls


def _run(twin: str, action, snapshot):
    """(what action returned or raised, the snapshot taken after it), with everything it wrote rolled back."""
    outcome: dict = {}
    with orm_twins() if twin == "orm" else contextlib.nullcontext():
        try:
            with transaction.atomic():
                marks = _marks()
                try:
                    outcome["result"] = action()
                except InsufficientStock as exc:
                    outcome["error"] = (exc.code, exc.details)
                outcome["rows"] = snapshot(marks)
                raise _RolledBack
        except _RolledBack:
            pass
    return outcome


def _marks() -> dict:
    """The highest primary key of each table a placement writes to: rows above it are the run's own."""
    models = (Order, OrderLine, Fulfillment, FulfillmentLine, RoutingDecision, PickupCode, Reservation, StockMovement,
              OutboxEvent)
    return {m: (m.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) for m in models}


class _Normaliser:
    """Replaces a run's own ids, its order numbers and pickup codes by their rank, and times by what they are
    relative to the placement's time `at`."""

    def __init__(self, *, at: datetime, orders: list[Order], fulfillment_ids: list[int], codes: list[str]):
        self.at = at
        self.fulfillments = {fid: f"F{i}" for i, fid in enumerate(sorted(fulfillment_ids))}
        self.strings: list[tuple[str, str]] = [(o.number, f"<order {i}>") for i, o in enumerate(orders)]
        self.strings += [(code, f"<code {i}>") for i, code in enumerate(codes)]

    def moment(self, value: datetime) -> str | float:
        """Stamps of the run's own clock (created, updated, changed) are "now"; the times computed from it (promised
        by, expires at) keep their distance from the placement's time."""
        seconds = (value - self.at).total_seconds()
        return "now" if abs(seconds) < 5 else round(seconds, 1)

    def __call__(self, value, key: str = ""):
        if isinstance(value, dict):
            return {k: self(v, k) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v, key) for v in value]
        if isinstance(value, datetime):
            return self.moment(value)
        if isinstance(value, int) and not isinstance(value, bool) and key in ("id", "fulfillment", "fulfillment_id"):
            return self.fulfillments.get(value, value)
        if isinstance(value, str):
            for real, rank in self.strings:
                value = value.replace(real, rank)
            value = re.sub(r"fulfillment:(\d+)", lambda m: f"fulfillment:{self.fulfillments.get(int(m[1]), m[1])}", value)
            with contextlib.suppress(ValueError):
                if re.fullmatch(r"\d{4}-\d\d-\d\dT.*", value):
                    return self.moment(datetime.fromisoformat(value))
            return value
        return value


def _placement_rows(marks: dict) -> dict:
    """Every row the placement wrote, and every stock row, made comparable between the two runs."""
    orders = list(Order.objects.filter(pk__gt=marks[Order]).order_by("pk"))
    for order in orders:  # the number comes from the id in both twins: PREFIX-000123
        prefix = order.channel.code[:3].upper() or "ORD"
        assert order.number == f"{prefix}-{order.pk:06d}", order.number
    fids = list(Fulfillment.objects.filter(pk__gt=marks[Fulfillment]).values_list("pk", flat=True))
    codes = list(PickupCode.objects.filter(pk__gt=marks[PickupCode]).values_list("code", flat=True))
    at = orders[0].created_at if orders else timezone.now()
    norm = _Normaliser(at=at, orders=orders, fulfillment_ids=fids, codes=codes)

    def rows(model, *, drop=(), order_by=("pk",)) -> list:
        found = model.objects.filter(pk__gt=marks[model]).order_by(*order_by).values()
        return [norm({k: v for k, v in row.items() if k not in ("id", *drop)}) for row in found]

    return {
        "orders": rows(Order, drop=("promise_id",)),
        "order_lines": rows(OrderLine, drop=("order_id",)),
        "fulfillments": rows(Fulfillment, drop=("order_id",)),
        "fulfillment_lines": rows(FulfillmentLine),
        "decisions": rows(RoutingDecision, drop=("order_id", "solve_ms", "plan")),
        "plans": [
            norm({k: v for k, v in plan.items() if k not in ("solve_seconds",)})
            for plan in RoutingDecision.objects.filter(pk__gt=marks[RoutingDecision]).order_by("pk")
            .values_list("plan", flat=True)
        ],
        "pickup_codes": rows(PickupCode),
        "reservations": rows(Reservation),
        "movements": rows(StockMovement),
        "events": rows(OutboxEvent, drop=("event_id",)),
        "stock": list(Stock.objects.order_by("store_id", "product_id").values_list(
            "store_id", "product_id", "on_hand", "reserved", "safety", "unavailable", "needs_count")),
    }


def _assert_same_rows(orm: dict, sql: dict) -> None:
    """Equal, or a failure that shows the difference table by table (the rows are long)."""
    assert orm.keys() == sql.keys()
    for table in sql:
        if orm[table] != sql[table]:
            before = json.dumps(sql[table], sort_keys=True, default=str, indent=1).splitlines()
            after = json.dumps(orm[table], sort_keys=True, default=str, indent=1).splitlines()
            diff = "\n".join(difflib.unified_diff(before, after, "sql twin", "orm twin", lineterm=""))
            pytest.fail(f"{table} differ:\n{diff}")


@pytest.fixture
def district_1(channel):
    """Four stores around Bến Thành with uneven stock of three SKUs, one of them scarce (a single unit)."""
    stores = [
        StoreFactory(code="FP-Q1-001", lat=10.7743, lon=106.7038),
        StoreFactory(code="FP-Q1-002", lat=10.7760, lon=106.7001),
        StoreFactory(code="FP-Q3-001", lat=10.7835, lon=106.6870),
        StoreFactory(code="FP-PU-001", lat=10.7712, lon=106.6951, offers_delivery=False),
    ]
    shirt = ProductFactory(sku="FP-AO", price_vnd=199_000)
    bag = ProductFactory(sku="FP-TUI", price_vnd=99_000)
    scarce = ProductFactory(sku="FP-NON", price_vnd=150_000)
    for store, units in zip(stores, [(3, 0, 1), (1, 2, 0), (5, 4, 0), (2, 2, 0)], strict=True):
        for product, n in zip((shirt, bag, scarce), units, strict=True):
            if n:
                put_stock(store, product, n)
    # The price policy's first read makes its version row: made here, before the twins' runs, both price with it.
    pricing_selectors.active_policy()
    return {"channel": channel, "stores": stores, "shirt": shirt, "bag": bag, "scarce": scarce}


def _place(chain, lines, **extra):
    def action():
        order = services.place_order(
            channel=chain["channel"], lines=lines, customer_name=CUSTOMER["name"], customer_phone=CUSTOMER["phone"],
            actor="test", **extra,
        )
        return order.number

    return action


PLACEMENTS = {
    "delivery, one store": ({"FP-AO": 2}, {"method": "delivery", **BEN_THANH}),
    "delivery, split over two stores": ({"FP-AO": 4, "FP-TUI": 4, "FP-NON": 1}, {"method": "delivery", **BEN_THANH}),
    "pickup with its code": ({"FP-TUI": 2, "FP-AO": 1}, {"method": "pickup", "pickup_store_code": "FP-PU-001"}),
}


@pytest.mark.parametrize("case", list(PLACEMENTS))
def test_placement_writes_the_same_rows_through_either_twin(district_1, spies, case):
    lines, extra = PLACEMENTS[case]
    sql = _run("sql", _place(district_1, lines, **extra), _placement_rows)
    after_sql = dict(spies)
    orm = _run("orm", _place(district_1, lines, **extra), _placement_rows)
    assert "error" not in sql, sql
    assert sql["rows"]["orders"] and sql["rows"]["movements"] and sql["rows"]["events"]
    _assert_same_rows(orm["rows"], sql["rows"])
    # Each run took its own twins.
    assert after_sql.get("_write_placement_sql") == 1 and after_sql.get("_active_products_sql") == 1
    assert "_write_placement_orm" not in after_sql and "_active_products_orm" not in after_sql
    assert spies.get("_write_placement_orm") == 1 and spies.get("_active_products_orm") == 1
    assert spies["_write_placement_sql"] == 1


def test_a_placement_whose_reservation_fails_leaves_no_row_through_either_twin(district_1, spies):
    """The promise is kept only if its stock is still there: the SQL twin writes the order's rows first and takes
    them back (undo_placement) when the reservation fails, the ORM twin rolls back a savepoint. Neither may leave a
    row behind, and both answer with the same 409."""
    promise = services.quote_promise(channel=district_1["channel"], lines={"FP-NON": 1}, **BEN_THANH)
    option = next(o for o in promise.options if o["method"] == "delivery")
    holder = next(s for s in district_1["stores"] if s.code == option["shipments"][0]["store"])
    stock.adjust_stock(store=holder, product=district_1["scarce"], reason="adjustment", actor="test", on_hand=-1,
                       reference="sold at the till")
    action = _place(district_1, {"FP-NON": 1}, method="delivery", promise_id=promise.pk, option_id=option["id"])
    sql = _run("sql", action, _placement_rows)
    orm = _run("orm", action, _placement_rows)
    assert sql["error"][0] == "insufficient_stock"
    assert orm["error"] == sql["error"]
    _assert_same_rows(orm["rows"], sql["rows"])
    assert not sql["rows"]["orders"] and not sql["rows"]["fulfillment_lines"] and not sql["rows"]["reservations"]
    assert spies["_write_placement_sql"] == 1 and spies["_write_placement_orm"] == 1


@pytest.mark.parametrize("twin", TWINS)
def test_products_by_sku_through_either_twin(district_1, spies, twin):
    ProductFactory(sku="FP-OLD", is_active=False)
    with orm_twins() if twin == "orm" else contextlib.nullcontext():
        found = fast_paths.active_products(["FP-AO", "FP-TUI"])
        with pytest.raises(UnknownSku) as refused:
            fast_paths.active_products(["FP-AO", "FP-OLD", "FP-NONE"])
    assert {sku: p.pk for sku, p in found.items()} == {"FP-AO": district_1["shirt"].pk, "FP-TUI": district_1["bag"].pk}
    assert all(isinstance(p, Product) and p.price_vnd for p in found.values())
    assert refused.value.details == UnknownSku(["FP-NONE", "FP-OLD"]).details
    assert spies == {f"_active_products_{twin}": 2}


@pytest.mark.parametrize("twin", TWINS)
def test_store_place_through_either_twin(district_1, spies, twin):
    store = StoreFactory(code="FP-HN", city="Hà Nội", timezone="Asia/Bangkok")
    with orm_twins() if twin == "orm" else contextlib.nullcontext():
        assert fast_paths.store_place(store.pk) == ("Asia/Bangkok", "Hà Nội")
        with pytest.raises(Store.DoesNotExist):
            fast_paths.store_place(store.pk + 10_000)
    assert spies == {f"_store_place_{twin}": 2}


def _candidate_key(c) -> tuple:
    return (
        c.code, c.distance_km, c.delivery_radius_km, tuple(c.methods), c.capacity_per_hour,
        tuple(sorted(c.stock.items())), c.load, c.open_now, c.closes_at, c.next_opening, c.time_zone,
    )


def test_candidate_readers_agree_on_a_random_city(city, spies):
    """stores_with_stock and hours_and_load, and checkout's nearest_candidates against its twin (the general path,
    ORM all the way down), on the 60-store city of test_candidates_fast_path: the same stores with the same units,
    hours and load; checkout's partial stores a nearest-first prefix of the general path's."""
    rng, products, at, stores = city["rng"], city["products"], city["now"], city["stores"]
    compared = 0
    for _ in range(40):
        lat, lon = 10.7769 + rng.gauss(0, 0.03), 106.7009 + rng.gauss(0, 0.03)
        lines = {p.pk: rng.choice([1, 1, 2]) for p in rng.sample(products, rng.randint(1, 3))}
        method = rng.choice(["delivery", "delivery", "pickup"])
        radius = rng.choice([3.0, routing_input.widest_delivery_radius_km()])
        exclude = {s.pk for s in rng.sample(stores, rng.randint(0, 5))}
        pinned = [s.pk for s in rng.sample(stores, 3)] if rng.random() < 0.2 else None
        reach = dict(lat=lat, lon=lon, lines=lines, method=method, at=at, radius=radius,
                     box=bounding_box(lat, lon, radius), only_store_ids=pinned, exclude=exclude)
        by_sql = fast_paths._stores_with_stock_sql(**reach)
        by_orm = fast_paths._stores_with_stock_orm(**reach)
        assert {pk: _candidate_key(c) for pk, c in by_sql.items()} == {pk: _candidate_key(c) for pk, c in by_orm.items()}
        ids = [s.pk for s in rng.sample(stores, 8)]
        slot = rng.choice([1, 2])
        hours_sql, load_sql = fast_paths._hours_and_load_sql(store_ids=ids, at=at, slot_hours=slot)
        hours_orm, load_orm = fast_paths._hours_and_load_orm(store_ids=ids, at=at, slot_hours=slot)
        assert {k: sorted(v) for k, v in hours_sql.items()} == {k: sorted(v) for k, v in hours_orm.items()}
        assert load_sql == load_orm
        asked = dict(lat=lat, lon=lon, lines=lines, method=method, at=at, k=rng.choice([2, 4]), radius_km=radius,
                     exclude_store_ids=exclude, only_whole_cart=method == "pickup", slot_hours=slot)
        fast = routing_input.load_candidates(**asked)
        with orm_twins():
            general = routing_input.load_candidates(**asked)
        whole = [_candidate_key(c) for c in fast if c.serves_whole(lines)]
        assert whole == [_candidate_key(c) for c in general if c.serves_whole(lines)]
        partial = [_candidate_key(c) for c in fast if not c.serves_whole(lines)]
        assert partial == [_candidate_key(c) for c in general if not c.serves_whole(lines)][: len(partial)]
        compared += bool(by_sql) + bool(general)
    assert compared > 30
    assert spies["_nearest_candidates_sql"] == 40
    assert spies["_stores_with_stock_orm"] >= 40 and spies["_hours_and_load_orm"] >= 40  # the general path's twins


def test_expired_holds_count_as_sellable_in_both_twins(district_1):
    """A hold past its expiry that the cleanup has not released yet still counts in `reserved`; both twins add its
    units back."""
    store, shirt = district_1["stores"][0], district_1["shirt"]
    stock.reserve_stock(lines=[stock.StockLine(store.pk, shirt.pk, 3)], reference="hold:late", actor="test",
                        expires_at=timezone.now() + timedelta(minutes=5))
    Reservation.objects.filter(reference="hold:late").update(expires_at=timezone.now() - timedelta(minutes=1))
    reach = dict(lat=BEN_THANH["lat"], lon=BEN_THANH["lon"], lines={shirt.pk: 1}, method="delivery",
                 at=timezone.now(), radius=5, box=bounding_box(BEN_THANH["lat"], BEN_THANH["lon"], 5),
                 only_store_ids=None, exclude=set())
    assert fast_paths._stores_with_stock_sql(**reach)[store.pk].stock == {shirt.pk: 3}
    assert fast_paths._stores_with_stock_orm(**reach)[store.pk].stock == {shirt.pk: 3}
