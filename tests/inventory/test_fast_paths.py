"""The stock ledger's fast paths and their ORM twins (inventory/fast_paths.py) give the same answers and write the
same rows on PostgreSQL.

Each scenario drives the public doors (inventory.services, inventory.selectors) twice from the same database state:
once as PostgreSQL runs them (the `_<name>_sql` twins) and once inside `orm_twins()` (the `_<name>_orm` twins), each
run in a transaction rolled back at its end, so both see the same stores, products, stock rows and holds (live and
expired) and use the same references. Then it compares:

    answers   what each call returned (reservations, holds, counts, movements, stores, availability) or the error it
              raised (type, code, message, details: every short line of a shortage)
    rows      every Stock row (quantities, shortfall, target, needs_count), StockMovement and Reservation, field by field

with ids replaced by their rank in their table (sequences are not rolled back), and the times the clock set during a
run and hold_stock's random references by their order of appearance (so "at the same instant" still shows: a
reservation, its movement and its stock row share one). A spy on every twin proves which one
ran: in the SQL run no ORM twin runs but where the SQL twin hands over by design (a cart whose rows carry expired
holds goes to the general path after the statement returned None; an empty batch writes nothing either way), in the
ORM run no SQL twin runs, and each scenario runs the pairs it names in both. test_each_twin_runs_its_own_statements
checks the statements themselves.
"""

import re
from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inventory import fast_paths, selectors, services
from inventory.models import MovementReason, OpeningHours, Reservation, Stock, StockMovement, Store
from inventory.selectors import NearbyStore, StoreAvailability
from inventory.services import Hold, StockChange, StockDelta, StockLine
from o2o.domain_errors import DomainError
from o2o.fast_paths import orm_twins, use_sql
from tests.conftest import put_stock
from tests.factories import ProductFactory, SalesChannelFactory, StoreFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="both twins run on PostgreSQL only (SQLite: the ORM's)"),
]

BEN_THANH = {"lat": 10.7725, "lon": 106.6980}

# Every pair of twins in inventory/fast_paths.py: `_<name>_sql` beside `_<name>_orm`.
PAIRS = sorted(
    name[1:-4] for name in vars(fast_paths)
    if name.startswith("_") and name.endswith("_sql") and callable(getattr(fast_paths, f"{name[:-4]}_orm", None))
)


def test_every_pair_is_covered():
    assert PAIRS == ["active_product_ids", "nearby_stores", "reserve", "sellable_online", "sellable_online_by_sku",
                     "write_movement_batch"]
    assert set(PAIRS) == {pair for _, pairs, _ in SCENARIOS.values() for pair in pairs}


# --- the chain both runs start from ---------------------------------------------------------------------------------


class Chain:
    """Stores around Bến Thành (one closed now, one closed at lunch in another time zone, one inactive, one far
    away), three SKUs and an inactive one, stock with safety and unavailable units, live holds and holds that expired
    without being cleaned up yet."""

    def __init__(self):
        self.at = timezone.now()
        self.later = (self.at + timedelta(days=1)).replace(microsecond=0)  # a hold's expiry the scenarios pass
        self.past = (self.at - timedelta(hours=1)).replace(microsecond=0)
        self.near = StoreFactory(code="PX-NEAR", lat=10.7743, lon=106.7038)  # ~0.7 km
        self.mid = StoreFactory(code="PX-MID", lat=10.7835, lon=106.6870, offers_delivery=False,  # ~1.7 km
                                timezone="Asia/Bangkok", hours=False)  # closed at lunch, every day
        OpeningHours.objects.bulk_create([OpeningHours(store=self.mid, weekday=d, opens=o, closes=e) for d in range(7)
                                          for o, e in ((time(13), time(23, 59, 59)), (time(0), time(11, 30)))])
        self.closed = StoreFactory(code="PX-CLOSED", lat=10.7800, lon=106.6990, hours=False)  # ~1 km, closed now
        OpeningHours.objects.create(store=self.closed, weekday=(self.at.weekday() + 2) % 7, opens=time(8),
                                    closes=time(12))
        self.far = StoreFactory(code="PX-FAR", lat=10.7295, lon=106.7218, delivery_radius_km=3,
                                offers_pickup=False)  # ~5.4 km, delivers within 3 km of itself
        self.inactive = StoreFactory(code="PX-INACTIVE", lat=10.7750, lon=106.7000, is_active=False)
        self.hanoi = StoreFactory(code="PX-HANOI", lat=21.0285, lon=105.8542)
        self.web = SalesChannelFactory()  # the website of the checkout holds that say whose they are
        self.shirt, self.hat, self.bag = (ProductFactory(sku=f"PX-{n}") for n in ("SHIRT", "HAT", "BAG"))
        self.gone = ProductFactory(sku="PX-GONE", is_active=False)
        for store, product, on_hand, safety in [
            (self.near, self.shirt, 10, 2), (self.near, self.hat, 3, 0), (self.near, self.bag, 4, 0),
            (self.mid, self.shirt, 2, 0), (self.mid, self.hat, 5, 1), (self.closed, self.shirt, 6, 0),
            (self.closed, self.hat, 1, 0), (self.far, self.shirt, 9, 0), (self.far, self.bag, 7, 3),
            (self.inactive, self.shirt, 50, 0), (self.hanoi, self.shirt, 5, 0), (self.near, self.gone, 5, 0),
            (self.hanoi, self.hat, 1, 3),  # more safety than stock: nothing to sell, not less than nothing
        ]:
            put_stock(store, product, on_hand, safety=safety)
        services.adjust_stock(store=self.near, product=self.bag, reason=MovementReason.DAMAGE, actor="t", unavailable=1)
        self.reserve("live:1", (self.near, self.shirt, 3), expires_at=self.later)
        self.reserve("order:1", (self.mid, self.hat, 1))
        for ref, line in [("old:1", (self.near, self.hat, 2)), ("old:2", (self.far, self.bag, 2)),
                          ("old:3", (self.mid, self.shirt, 1))]:
            self.reserve(ref, line, expires_at=self.later)
        Reservation.objects.filter(reference__startswith="old:").update(expires_at=self.past)  # expired, not released

    @staticmethod
    def reserve(reference, *lines, expires_at=None):
        services.reserve_stock(lines=[StockLine(s.pk, p.pk, q) for s, p, q in lines], reference=reference, actor="t",
                               expires_at=expires_at)

    def line(self, store, product, qty) -> StockLine:
        return StockLine(store.pk, product.pk, qty)

    @property
    def stores(self) -> list[Store]:
        return [self.near, self.mid, self.closed, self.far, self.inactive, self.hanoi]


@pytest.fixture
def chain(db):
    return Chain()


# --- one run: the answers and the rows, normalised ------------------------------------------------------------------


class _Rollback(Exception):
    pass


class Run:
    """What one run of a scenario saw: each call's answer, in order."""

    def __init__(self, chain: Chain):
        self.chain = chain
        self.answers: list[tuple] = []
        self.started = timezone.now()

    def do(self, label: str, call, **kwargs):
        """Call a door and record its answer or the error it raised; returns the answer, None after an error. No
        savepoint around the call: the run goes on in the same transaction, as a caller's would (a refused
        reservation must leave it usable)."""
        try:
            result = call(**kwargs)
        except (DomainError, DatabaseError) as exc:
            self.answers.append((label, "error", type(exc).__name__, getattr(exc, "code", None),
                                 getattr(exc, "message", None), getattr(exc, "details", None)))
            return None
        for obj in _instances(result):  # what a twin returns is what it stored (COPY gives no ids back: not read)
            if obj.pk is not None:
                fields = [f.attname for f in type(obj)._meta.concrete_fields]
                stored = type(obj).objects.filter(pk=obj.pk).values(*fields).get()
                assert stored == {f: getattr(obj, f) for f in fields}, f"{label}: not the row stored"
        self.answers.append((label, "ok", result))
        return result


def _instances(value):
    """The rows (reservations, movements) in an answer."""
    if isinstance(value, Hold):
        yield from value.reservations
    elif isinstance(value, list):
        for v in value:
            yield from _instances(v)
    elif isinstance(value, Reservation | StockMovement):
        yield value


ID_FIELDS = {  # the id columns of each table and the table they point at (stores and products: the chain's, shared)
    Stock: {"id": Stock},
    StockMovement: {"id": StockMovement},
    Reservation: {"id": Reservation},
}
TABLES = {"Stock": Stock, "StockMovement": StockMovement, "Reservation": Reservation}
CLOCK_FIELDS = {"updated_at", "created_at", "expires_at"}


class Normaliser:
    """Ids by their rank in their table; the times the clock set during the run, and hold_stock's references, by
    their order of appearance (answers first, in order, then the tables)."""

    def __init__(self, run: Run, tables: dict):
        self.run = run
        answered = [obj for _, outcome, *rest in run.answers if outcome == "ok" for obj in _instances(rest[0])]
        self.ranks = {}
        for name, model in TABLES.items():
            pks = {r["id"] for r in tables[name]} | {obj.pk for obj in answered if type(obj) is model}
            self.ranks[model] = {pk: i for i, pk in enumerate(sorted(pk for pk in pks if pk is not None))}
        self.clock: dict[datetime, str] = {}
        self.references: dict[str, str] = {}

    def is_clock(self, t: datetime) -> bool:
        return t >= self.run.started and t != self.run.chain.later

    def time(self, t: datetime | None):
        if t is None:
            return None
        if self.is_clock(t):
            return self.clock.setdefault(t, f"clock #{len(self.clock)}")
        return t.astimezone(UTC).isoformat()

    def reference(self, ref: str) -> str:
        if re.fullmatch(r"hold:[0-9a-f]{32}", ref):
            return self.references.setdefault(ref, f"hold #{len(self.references)}")
        return ref

    def pk(self, model, pk):
        return None if pk is None else self.ranks[model][pk]

    def row(self, model, values: dict) -> dict:
        out = {}
        for name, value in values.items():
            if name in ID_FIELDS[model]:
                out[name] = self.pk(ID_FIELDS[model][name], value)
            elif name in CLOCK_FIELDS:
                out[name] = self.time(value)
            elif name == "reference":
                out[name] = self.reference(value)
            else:
                out[name] = value
        return out

    def instance(self, obj) -> dict:
        """A row as a twin returned it (saved by the ORM, or built from the statement's RETURNING)."""
        model = type(obj)
        values = {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
        if model is StockMovement:
            values.pop("id")  # COPY does not give the batch's ids back, and nothing reads them
        return self.row(model, values)

    def answer(self, value):
        if isinstance(value, list | tuple):
            return [self.answer(v) for v in value]
        if isinstance(value, dict):  # keys: ids of the chain's stores and products, SKUs
            return {k: self.answer(v) for k, v in value.items()}
        if isinstance(value, Reservation | StockMovement):
            return type(value).__name__, self.instance(value)
        if isinstance(value, Hold):
            return "Hold", self.reference(value.reference), self.time(value.expires_at), self.answer(value.reservations)
        if isinstance(value, NearbyStore):
            store = {f.attname: getattr(value.store, f.attname) for f in Store._meta.concrete_fields}
            return ("NearbyStore", store, value.distance_km, value.store.distance_km, value.open_now,
                    value.next_opening, value.closes_at)
        if isinstance(value, StoreAvailability):
            return "StoreAvailability", self.answer(value.nearby), value.available, value.serves_whole_cart
        assert value is None or isinstance(value, int | str), value
        return value


def snapshot(run: Run) -> dict:
    """The run's answers and every row of the stock ledger, normalised; and the ledger's own audits."""
    tables = {name: list(model.objects.order_by("pk").values()) for name, model in TABLES.items()}
    norm = Normaliser(run, tables)
    answers = []
    for label, outcome, *rest in run.answers:
        if outcome == "error":
            answers.append((label, outcome, *rest))
        else:
            answers.append((label, outcome, norm.answer(rest[0])))
    rows = {name: [norm.row(model, r) for r in tables[name]] for name, model in TABLES.items()}
    assert selectors.stock_ledger_differences() == [] and selectors.reservation_differences() == []
    return {"answers": answers, **rows}


# --- the spy: which twin ran ----------------------------------------------------------------------------------------


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls of every twin, by name, and the hand-overs by design apart ("_reserve_sql:general path": the
    statement returned None, a row carries expired holds; "_write_movement_batch_orm:empty": nothing to write). The
    choosers look their twins up in the module at every call, so patching the module's names catches every call."""
    calls: Counter = Counter()

    def wrap(name, real):
        def wrapper(*args, **kwargs):
            label = name
            if name == "_write_movement_batch_orm" and not args[1]:
                label += ":empty"
            calls[label] += 1
            result = real(*args, **kwargs)
            if name == "_reserve_sql" and result is None:
                calls[f"{name}:general path"] += 1
            return result

        return wrapper

    for pair in PAIRS:
        for twin in (f"_{pair}_sql", f"_{pair}_orm"):
            monkeypatch.setattr(fast_paths, twin, wrap(twin, getattr(fast_paths, twin)))
    return calls


def run_both(scenario, chain: Chain, spy: Counter, *, pairs) -> tuple[dict, dict]:
    """Run `scenario(run)` with the SQL twins, then with the ORM twins, from the same state (each run rolled back);
    check each took its own twins (and ran every pair in `pairs`). Returns both snapshots."""
    snaps = []
    for orm in (False, True):
        spy.clear()
        run = Run(chain)
        try:
            with transaction.atomic():
                if orm:
                    with orm_twins():
                        assert not use_sql()
                        scenario(run)
                else:
                    assert use_sql()
                    scenario(run)
                snaps.append(snapshot(run))
                raise _Rollback
        except _Rollback:
            pass
        ran = {name for name, n in spy.items() if n}
        if orm:
            assert not {name for name in ran if "_sql" in name}, f"an SQL twin ran under orm_twins(): {dict(spy)}"
            assert {f"_{pair}_orm" for pair in pairs} <= ran, f"not every ORM twin ran: {dict(spy)}"
        else:
            assert not {name for name in ran if "_orm" in name} - {"_reserve_orm", "_write_movement_batch_orm:empty"}, \
                f"an ORM twin ran: {dict(spy)}"
            assert spy["_reserve_orm"] == spy["_reserve_sql:general path"], f"an ORM twin ran: {dict(spy)}"
            assert {f"_{pair}_sql" for pair in pairs} <= ran, f"not every SQL twin ran: {dict(spy)}"
        snaps[-1]["handed over"] = spy["_reserve_sql:general path"]
    return snaps[0], snaps[1]


def assert_same(sql: dict, orm: dict) -> None:
    """Answer by answer, row by row, so that a failure names the first thing that differs."""
    assert sql.keys() == orm.keys()
    for i, (a, b) in enumerate(zip(sql["answers"], orm["answers"], strict=False)):
        assert a == b, f"answer {i} ({a[0]}) differs:\n SQL {a}\n ORM {b}"
    assert len(sql["answers"]) == len(orm["answers"])
    for table in TABLES:
        for i, (a, b) in enumerate(zip(sql[table], orm[table], strict=False)):
            assert a == b, f"{table} row {i} differs:\n SQL {a}\n ORM {b}"
        assert len(sql[table]) == len(orm[table]), f"{table}: not as many rows"


# --- the scenarios --------------------------------------------------------------------------------------------------


def reservations(run: Run) -> None:
    """Carts that fit, merged lines, multi-line carts over several stores, short carts (every short line listed,
    also a SKU with no stock row), safety and unavailable units, expired holds released inside a reservation (then
    it fits, or it is still short and the release is undone), holds then commit (part, all, too much) and release,
    the periodic clean-up, refusals of bad input, a reference longer than its column."""
    c, reserve = run.chain, services.reserve_stock
    run.do("fits", reserve, lines=[c.line(c.near, c.shirt, 2)], reference="web:1", actor="web", expires_at=c.later)
    run.do("merged lines, an order", reserve, lines=[c.line(c.near, c.shirt, 1), c.line(c.near, c.shirt, 1)],
           reference="order:2", actor="web")
    run.do("multi-line cart", reserve, lines=[c.line(c.mid, c.hat, 3), c.line(c.near, c.bag, 3),
                                              c.line(c.far, c.shirt, 4)], reference="order:3", actor="web")
    run.do("short: safety", reserve, lines=[c.line(c.near, c.shirt, 2)], reference="web:2", actor="web")
    run.do("short lines, all listed", reserve, reference="web:3", actor="web", lines=[
        c.line(c.far, c.shirt, 5), c.line(c.mid, c.hat, 1), c.line(c.far, c.hat, 1), c.line(c.closed, c.hat, 2),
        c.line(c.near, c.bag, 1)])
    run.do("after a refusal, the transaction goes on", reserve, lines=[c.line(c.closed, c.shirt, 6)],
           reference="order:4", actor="web")
    run.do("expired holds released, then it fits", reserve, lines=[c.line(c.near, c.hat, 3)], reference="web:4",
           actor="web", expires_at=c.later)
    run.do("expired holds, still short", reserve, lines=[c.line(c.far, c.bag, 5), c.line(c.far, c.shirt, 1)],
           reference="web:5", actor="web")
    run.do("a quantity of 0", reserve, lines=[c.line(c.far, c.shirt, 0)], reference="web:6", actor="web")
    run.do("an expiry in the past", reserve, lines=[c.line(c.far, c.shirt, 1)], reference="web:7", actor="web",
           expires_at=c.past)
    hold = run.do("hold", services.hold_stock, store=c.far, quantities={c.shirt: 2}, ttl_seconds=600, actor="web")
    run.do("commit part of the hold", services.commit_reservations, reference=hold.reference, actor="pick",
           quantities={c.shirt.pk: 1})
    run.do("commit more than is held", services.commit_reservations, reference=hold.reference, actor="pick",
           quantities={c.shirt.pk: 5})
    run.do("release the rest", services.release_reservations, reference=hold.reference, actor="web")
    run.do("release again", services.release_reservations, reference=hold.reference, actor="web")
    run.do("commit an order", services.commit_reservations, reference="order:3", actor="pick", note="shipped")
    run.do("commit nothing held", services.commit_reservations, reference="order:404", actor="pick")
    run.do("clean-up", services.release_expired_holds)
    run.do("after the clean-up", reserve, lines=[c.line(c.mid, c.shirt, 2), c.line(c.far, c.bag, 4)],
           reference="web:8", actor="web", expires_at=c.later)
    run.do("a reference longer than its column", reserve, lines=[c.line(c.closed, c.hat, 1)],
           reference="order:" + "9" * 130, actor="web")  # cut to 120 characters, as in the movements


def batches(run: Run) -> None:
    """Till batches: many movements over a few rows (the same row several times, a zero change, a new row), a batch
    refused halfway by the stock rules, one refused by a used idempotency key, an empty one; the count flags."""
    c = run.chain
    with transaction.atomic():
        rows = services.lock_stock_rows([(c.near.pk, c.shirt.pk), (c.near.pk, c.hat.pk), (c.far.pk, c.shirt.pk),
                                         (c.closed.pk, c.bag.pk)], create_missing=True)
        changes = [
            StockChange((c.near.pk, c.shirt.pk), StockDelta(on_hand=-2), "R-1", "R-1#0", note="sold"),
            StockChange((c.near.pk, c.hat.pk), StockDelta(on_hand=-1), "R-1", "R-1#1"),
            StockChange((c.near.pk, c.shirt.pk), StockDelta(on_hand=-1), "R-2"),
            StockChange((c.far.pk, c.shirt.pk), StockDelta(), "R-2"),
            StockChange((c.closed.pk, c.bag.pk), StockDelta(on_hand=4, unavailable=1), "GR-1", note="received"),
            StockChange((c.far.pk, c.shirt.pk), StockDelta(on_hand=-3, safety=1), "R-3"),
        ]
        run.do("batch", services.apply_movement_batch, rows=rows, changes=changes, reason=MovementReason.SALE,
               actor="pos:PX", now=timezone.now())
    with transaction.atomic():
        rows = services.lock_stock_rows([(c.near.pk, c.shirt.pk), (c.mid.pk, c.hat.pk)])
        run.do("refused halfway", services.apply_movement_batch, rows=rows, reason=MovementReason.SALE, actor="pos:PX",
               now=timezone.now(), changes=[StockChange((c.mid.pk, c.hat.pk), StockDelta(on_hand=-1), "R-4"),
                                            StockChange((c.near.pk, c.shirt.pk), StockDelta(on_hand=-8), "R-4")])
    try:
        with transaction.atomic():
            rows = services.lock_stock_rows([(c.mid.pk, c.hat.pk)])
            run.do("a used idempotency key", services.apply_movement_batch, rows=rows, reason=MovementReason.SALE,
                   actor="pos:PX", now=timezone.now(),
                   changes=[StockChange((c.mid.pk, c.hat.pk), StockDelta(on_hand=-1), "R-5", "R-1#0")])
            raise _Rollback  # the failed statement's transaction is unusable: undo the savepoint either way
    except _Rollback:
        pass
    with transaction.atomic():
        run.do("empty", services.apply_movement_batch, rows={}, changes=[], reason=MovementReason.SALE, actor="pos:PX",
               now=timezone.now())
    run.do("flag for count", services.flag_for_count, store_id=c.near.pk, product_ids=[c.shirt.pk, c.bag.pk])


def reads(run: Run) -> None:
    """Stores near a point (every service, a limit, nothing near; a closed store, an inactive one, one out of
    reach), carts near a point (whole carts only, unknown and inactive SKUs, nothing near), network ATP, the ATP
    reads themselves: with safety and unavailable units, live holds counted, expired ones not; again after a hold."""
    c, near = run.chain, selectors.stores_near
    for service in (None, "delivery", "pickup", "returns", "unknown"):
        run.do(f"stores near, {service}", near, **BEN_THANH, radius_km=10, service=service, at=c.at)
    run.do("stores near, 2 of them", near, **BEN_THANH, radius_km=10, limit=2, at=c.at)
    run.do("stores near, far away", near, lat=0.0, lon=0.0, radius_km=10)
    stores, products = [s.pk for s in c.stores], [c.shirt.pk, c.hat.pk, c.bag.pk, c.gone.pk]
    for when in ("before", "after"):
        cart = {"PX-SHIRT": 2, "PX-HAT": 1}
        run.do(f"cart, {when}", selectors.cart_availability, **BEN_THANH, lines=cart, radius_km=10)
        run.do(f"whole carts only, {when}", selectors.cart_availability, **BEN_THANH, lines=cart, radius_km=10,
               only_whole_cart=True, limit=1)
        run.do(f"cart by delivery, {when}", selectors.cart_availability, **BEN_THANH, lines={"PX-BAG": 1},
               radius_km=10, service="delivery")
        run.do(f"sellable online, {when}", selectors.sellable_online, store_ids=stores, product_ids=products)
        run.do(f"sellable by sku, {when}", selectors.sellable_online_by_sku, store_ids=stores,
               skus=["PX-SHIRT", "PX-BAG", "PX-GONE", "PX-NONE", "PX-SHIRT"])
        run.do(f"network ATP, {when}", selectors.network_atp, skus=["PX-SHIRT", "PX-HAT", "PX-BAG"])
        run.do(f"network ATP by pickup, {when}", selectors.network_atp, skus=["PX-SHIRT"], channel_service="pickup")
        services.reserve_stock(lines=[c.line(c.near, c.hat, 1), c.line(c.far, c.shirt, 4)], reference=f"r:{when}",
                               actor="web", expires_at=c.later)
    run.do("cart, unknown and inactive SKUs", selectors.cart_availability, **BEN_THANH, radius_km=10,
           lines={"PX-SHIRT": 1, "PX-GONE": 1, "PX-NONE": 1})
    run.do("cart, nothing near", selectors.cart_availability, lat=0.0, lon=0.0, lines={"PX-SHIRT": 1}, radius_km=10)
    run.do("cart, nothing near, unknown SKU", selectors.cart_availability, lat=0.0, lon=0.0, radius_km=10,
           lines={"PX-SHIRT": 1, "PX-NONE": 1})
    run.do("product ids", selectors.product_ids_by_sku, skus=["PX-SHIRT", "PX-HAT"])
    run.do("product ids, unknown", selectors.product_ids_by_sku, skus=["PX-SHIRT", "PX-GONE"])
    run.do("sellable online, no stores", selectors.sellable_online, store_ids=[], product_ids=products)
    run.do("sellable by sku, no stores", selectors.sellable_online_by_sku, store_ids=[], skus=["PX-SHIRT"])


def shortfalls(run: Run) -> None:
    """Rows with a shortfall (issue #18): a till batch that sells beyond the ledger (a row sold out and then some, a
    shortfall given and taken back in one batch: flagged all the same, a new row), one taken below zero (refused); a
    row given a shortfall with an expired hold still on it. Reservations on those rows are refused on both twins with
    the same details (alone, among lines that fit, through the general path), the ATP reads answer 0 for them; a count
    settles one, then it sells again (a hold with its website); the count flag cleared where it may be."""
    c, reserve = run.chain, services.reserve_stock
    pairs = [(c.near.pk, c.shirt.pk), (c.far.pk, c.shirt.pk), (c.closed.pk, c.hat.pk), (c.closed.pk, c.bag.pk),
             (c.mid.pk, c.hat.pk)]
    with transaction.atomic():
        rows = services.lock_stock_rows(pairs, create_missing=True)
        run.do("sold beyond the ledger", services.apply_movement_batch, rows=rows, reason=MovementReason.SALE,
               actor="pos:PX", now=timezone.now(), changes=[
                   StockChange((c.near.pk, c.shirt.pk), StockDelta(on_hand=-2), "R-10", "R-10#0"),
                   StockChange((c.near.pk, c.shirt.pk), StockDelta(shortfall=1), "R-10", "R-10#1", note="short"),
                   StockChange((c.far.pk, c.shirt.pk), StockDelta(on_hand=-9, shortfall=2), "R-11"),
                   StockChange((c.closed.pk, c.hat.pk), StockDelta(shortfall=1), "R-12"),
                   StockChange((c.closed.pk, c.hat.pk), StockDelta(shortfall=-1), "C-12", note="counted"),
                   StockChange((c.closed.pk, c.bag.pk), StockDelta(shortfall=3), "R-13"),
                   StockChange((c.mid.pk, c.hat.pk), StockDelta(on_hand=-1), "R-14"),
               ])
    with transaction.atomic():
        rows = services.lock_stock_rows(pairs)
        run.do("a shortfall below zero", services.apply_movement_batch, rows=rows, reason=MovementReason.COUNT,
               actor="pos:PX", now=timezone.now(),
               changes=[StockChange((c.far.pk, c.shirt.pk), StockDelta(shortfall=-3), "C-13")])
    with transaction.atomic():  # the expired hold old:2 stays on the row: its release is the general path's
        rows = services.lock_stock_rows([(c.far.pk, c.bag.pk)], release_expired=False)
        services.apply_movements(rows, [((c.far.pk, c.bag.pk), StockDelta(shortfall=1))], reason=MovementReason.SALE,
                                 reference="R-15", actor="pos:PX")
    run.do("short: a shortfall", reserve, lines=[c.line(c.far, c.shirt, 1)], reference="web:sf-1", actor="web")
    run.do("short: a shortfall among lines that fit", reserve, reference="web:sf-2", actor="web", channel=c.web,
           expires_at=c.later, lines=[c.line(c.mid, c.hat, 1), c.line(c.near, c.shirt, 1), c.line(c.near, c.bag, 1),
                                      c.line(c.closed, c.bag, 1)])
    run.do("short: a shortfall and an expired hold", reserve, lines=[c.line(c.far, c.bag, 1)], reference="web:sf-3",
           actor="web")
    run.do("flagged, no shortfall: fits", reserve, lines=[c.line(c.closed, c.hat, 1)], reference="web:sf-4",
           actor="web", channel=c.web, expires_at=c.later)
    stores, products = [s.pk for s in c.stores], [c.shirt.pk, c.hat.pk, c.bag.pk, c.gone.pk]
    for when in ("before the count", "after the count"):
        run.do(f"sellable online, {when}", selectors.sellable_online, store_ids=stores, product_ids=products)
        run.do(f"sellable by sku, {when}", selectors.sellable_online_by_sku, store_ids=stores,
               skus=["PX-SHIRT", "PX-HAT", "PX-BAG"])
        run.do(f"network ATP, {when}", selectors.network_atp, skus=["PX-SHIRT", "PX-HAT", "PX-BAG"])
        run.do(f"cart, {when}", selectors.cart_availability, **BEN_THANH, lines={"PX-SHIRT": 1, "PX-BAG": 1},
               radius_km=10)
        if when == "before the count":
            run.do("clear the flags", services.flag_for_count, store_id=c.closed.pk, product_ids=[c.hat.pk, c.bag.pk],
                   flagged=False)
            run.do("count", services.set_stock_levels, store=c.far, product=c.shirt, actor="staff", on_hand=3)
    run.do("after the count, it fits", services.hold_stock, store=c.far, quantities={c.shirt: 2}, ttl_seconds=600,
           actor="web", channel=c.web)
    with transaction.atomic():
        rows = services.lock_stock_rows([(c.near.pk, c.shirt.pk), (c.closed.pk, c.bag.pk)])
        run.do("a count takes part of a shortfall back", services.apply_movement_batch, rows=rows,
               reason=MovementReason.COUNT, actor="pos:PX", now=timezone.now(), changes=[
                   StockChange((c.near.pk, c.shirt.pk), StockDelta(on_hand=1, shortfall=-1), "C-14"),
                   StockChange((c.closed.pk, c.bag.pk), StockDelta(shortfall=-2), "C-14"),
               ])


SCENARIOS = {  # scenario, the pairs it runs, the calls that must be refused (so each case is the case it says)
    "reservations": (reservations, {"reserve"}, {
        "short: safety", "short lines, all listed", "expired holds, still short", "a quantity of 0",
        "an expiry in the past", "commit more than is held", "commit nothing held"}),
    "batches": (batches, {"write_movement_batch"}, {"refused halfway", "a used idempotency key"}),
    "reads": (reads, {"nearby_stores", "active_product_ids", "sellable_online", "sellable_online_by_sku", "reserve"},
              {"cart, unknown and inactive SKUs", "cart, nothing near, unknown SKU", "product ids, unknown"}),
    "shortfalls": (shortfalls, {"write_movement_batch", "reserve", "sellable_online", "sellable_online_by_sku"}, {
        "a shortfall below zero", "short: a shortfall", "short: a shortfall among lines that fit",
        "short: a shortfall and an expired hold"}),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_both_twins_answer_and_write_the_same(name, chain, spy):
    scenario, pairs, refused = SCENARIOS[name]
    sql, orm = run_both(scenario, chain, spy, pairs=pairs)
    assert_same(sql, orm)
    assert {label for label, outcome, *_ in sql["answers"] if outcome == "error"} == refused
    if name == "reservations":
        assert sql["handed over"] == 2  # the two carts over rows with expired holds
        short = next(a for a in sql["answers"] if a[0] == "short lines, all listed")
        assert [(d["store"], d["sku"], d["requested"], d["available"]) for d in short[5]["lines"]] == [
            ("PX-NEAR", "PX-BAG", 1, 0), ("PX-MID", "PX-HAT", 1, 0), ("PX-CLOSED", "PX-HAT", 2, 1),
            ("PX-FAR", "PX-HAT", 1, 0)], short
    if name == "reads":
        answers = {a[0]: a[2] for a in sql["answers"]}
        assert [s[1]["code"] for s in answers["stores near, None"]] == ["PX-NEAR", "PX-CLOSED", "PX-MID", "PX-FAR"]
        open_now = {s[1]["code"]: s[4] for s in answers["stores near, None"]}
        assert (open_now["PX-NEAR"], open_now["PX-CLOSED"], open_now["PX-FAR"]) == (True, False, True)
        assert answers["network ATP, before"]["PX-SHIRT"] != answers["network ATP, after"]["PX-SHIRT"]
    if name == "shortfalls":
        assert sql["handed over"] == 1  # the row with a shortfall and an expired hold
        errors = {a[0]: a for a in sql["answers"] if a[1] == "error"}
        assert {label: [(d["store"], d["sku"], d["requested"], d["available"]) for d in e[5]["lines"]]
                for label, e in errors.items() if e[2] == "InsufficientStock"} == {
            "short: a shortfall": [("PX-FAR", "PX-SHIRT", 1, 0)],
            "short: a shortfall among lines that fit": [("PX-NEAR", "PX-SHIRT", 1, 0), ("PX-CLOSED", "PX-BAG", 1, 0)],
            "short: a shortfall and an expired hold": [("PX-FAR", "PX-BAG", 1, 0)],
        }
        answers = {a[0]: a[2] for a in sql["answers"] if a[1] == "ok"}
        c = chain
        before, after = answers["sellable online, before the count"], answers["sellable online, after the count"]
        for pair in [(c.near, c.shirt), (c.far, c.shirt), (c.closed, c.bag), (c.far, c.bag)]:
            assert before[(pair[0].pk, pair[1].pk)] == 0, pair
        assert after[(c.far.pk, c.shirt.pk)] == 3 and after[(c.near.pk, c.shirt.pk)] == 0
        by_sku = answers["sellable by sku, before the count"][1]
        assert by_sku[(c.far.pk, "PX-SHIRT")] == by_sku[(c.closed.pk, "PX-BAG")] == 0
        assert answers["sellable by sku, after the count"][1][(c.far.pk, "PX-SHIRT")] == 3
        assert answers["clear the flags"] == 1  # the hat (its shortfall taken back); the bag keeps its flag
        stock = {(r["store_id"], r["product_id"]): r for r in sql["Stock"]}
        flags = {pair: (stock[pair[0].pk, pair[1].pk]["shortfall"], stock[pair[0].pk, pair[1].pk]["needs_count"])
                 for pair in [(c.near, c.shirt), (c.far, c.shirt), (c.closed, c.hat), (c.closed, c.bag),
                              (c.mid, c.hat), (c.far, c.bag)]}
        assert flags == {(c.near, c.shirt): (0, True), (c.far, c.shirt): (0, False), (c.closed, c.hat): (0, False),
                         (c.closed, c.bag): (1, True), (c.mid, c.hat): (0, False), (c.far, c.bag): (1, True)}
        held = [r for r in sql["Reservation"] if r["channel_id"] is not None]
        assert len(held) == 2 and {r["channel_id"] for r in held} == {c.web.pk}


# --- the statements each twin runs ----------------------------------------------------------------------------------


def _statements(call) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        call()
    return [q["sql"] for q in queries.captured_queries]


def test_each_twin_runs_its_own_statements(chain):
    """The SQL twin of a reservation is the lock and one statement; its ORM twin locks, looks for expired holds,
    writes row by row. The reads' SQL twins bind arrays and read the hours in the stores' statement."""
    c = chain

    def reserve(reference: str) -> list[str]:
        return _statements(lambda: services.reserve_stock(
            lines=[c.line(c.near, c.shirt, 1), c.line(c.mid, c.hat, 1)], reference=reference, actor="t"))

    def read() -> list[str]:
        return _statements(lambda: selectors.cart_availability(**BEN_THANH, lines={"PX-SHIRT": 1}, radius_km=10))

    sql_reserve, sql_read = reserve("web:sql"), read()
    with orm_twins():
        orm_reserve, orm_read = reserve("web:orm"), read()
    assert len(sql_reserve) == 2 and "FOR UPDATE" in sql_reserve[0] and "INSERT INTO" in sql_reserve[1]
    assert len(orm_reserve) > 2 and not any("unnest" in q for q in orm_reserve)
    assert any("json_agg" in q for q in sql_read) and any("= ANY(" in q for q in sql_read)
    assert not any("json_agg" in q or "ANY(" in q for q in orm_read)
    assert any(OpeningHours._meta.db_table in q for q in orm_read)  # the hours: a read of their own
