"""The shop floor is the truth (issue #18): inventory.services.ShopFloor against locked stock rows.

An event's units are found free first (on hand, not reserved or quarantined; safety included), then from the
reservations in the order the caller's policy gives, then beyond the ledger (a shortfall). Several takes of one floor
see what the earlier ones used; `undo` gives back exactly; `write` shrinks or deletes the reservations taken and
appends one TakenReservation per (reservation, cause). The takes' movements (FloorTake.leaving / quarantined),
applied with apply_movements, keep the ledger's audits clean and the rows within the database's constraints.

The policy here is the tests' own (inventory must not import orders): checkout holds newest first, then orders
oldest first; any other reference (a packed fulfilment, say) is never offered.
"""

from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory import services
from inventory.models import EventKind, MovementReason, Reservation, Stock, TakenReservation
from inventory.selectors import reservation_differences, stock_ledger_differences
from inventory.services import FloorTake, ShopFloor, StockDelta, StockLine
from tests.conftest import put_stock
from tests.factories import ProductFactory, SalesChannelFactory, StoreFactory

pytestmark = pytest.mark.django_db


def holds_newest_first(reservations):
    """The tests' policy: holds ('hold:...') newest first, then orders ('order:...') oldest first; nothing else."""
    holds = sorted((r for r in reservations if r.reference.startswith("hold:")), key=lambda r: (r.created_at, r.pk),
                   reverse=True)
    orders = sorted((r for r in reservations if r.reference.startswith("order:")), key=lambda r: r.pk)
    return holds + orders


def reserve(store, product, qty, reference, *, channel=None, hold=False):
    (reservation,) = services.reserve_stock(
        lines=[StockLine(store.pk, product.pk, qty)], reference=reference, actor="t", channel=channel,
        expires_at=timezone.now() + timedelta(hours=1) if hold else None,
    )
    return reservation


def quarantine(store, product, units):
    services.adjust_stock(store=store, product=product, reason=MovementReason.DAMAGE, actor="t", unavailable=units)


def row_of(store, product) -> Stock:
    return Stock.objects.get(store=store, product=product)


def assert_clean():
    assert stock_ledger_differences() == []
    assert reservation_differences() == []
    for row in Stock.objects.all():
        row.validate_constraints()  # the CHECKs, in Python too (the database already refused any break)
        assert row.shortfall >= 0 and (row.shortfall == 0 or row.needs_count)


def apply(rows, takes, *, reason=MovementReason.SALE, how="leaving"):
    services.apply_movements(rows, [(t.pair, getattr(t, how)()) for t in takes], reason=reason, reference="ev",
                             actor="t")


class Shelf:
    """One store and SKU with 12 on hand: an order (3), an older hold (2) and a newer one (3) of the website, a packed
    fulfilment (2) no policy offers, 1 quarantined, 2 of safety: 1 free at the till."""

    def __init__(self):
        self.web = SalesChannelFactory()
        self.store, self.product = StoreFactory(), ProductFactory()
        self.pair = (self.store.pk, self.product.pk)
        put_stock(self.store, self.product, 12)
        self.order = reserve(self.store, self.product, 3, "order:1")
        self.older = reserve(self.store, self.product, 2, "hold:older", channel=self.web, hold=True)
        self.newer = reserve(self.store, self.product, 3, "hold:newer", channel=self.web, hold=True)
        self.packed = reserve(self.store, self.product, 2, "fulfillment:packed")
        quarantine(self.store, self.product, 1)
        services.set_stock_levels(store=self.store, product=self.product, actor="t", safety=2)

    def floor(self, takeable=holds_newest_first):
        rows = services.lock_stock_rows([self.pair])
        return rows, ShopFloor(rows, takeable=takeable)


@pytest.fixture
def shelf(db):
    return Shelf()


def taken(take: FloorTake) -> list[tuple[str, int]]:
    return [(r.reference, n) for r, n in take.taken]


def test_free_first_then_reservations_in_the_policys_order_then_beyond(shelf):
    with transaction.atomic():
        rows, floor = shelf.floor()
        assert floor.sellable(shelf.pair) == 1  # 12 - 10 reserved - 1 quarantined; safety is the tills' to sell
        first = floor.take(shelf.pair, 3, cause="pos:R-1")
        assert (first.free, first.reserved, first.beyond, first.units) == (1, 2, 0, 3)
        assert taken(first) == [("hold:newer", 2)]
        assert floor.sellable(shelf.pair) == 0
        # The second take sees what the first used: the newer hold's last unit, the older hold, then the order.
        second = floor.take(shelf.pair, 4, cause="pos:R-2")
        assert (second.free, second.reserved, second.beyond) == (0, 4, 0)
        assert taken(second) == [("hold:newer", 1), ("hold:older", 2), ("order:1", 1)]
        # The third runs out of what the policy offers: the packed fulfilment is never taken, the rest is beyond.
        third = floor.take(shelf.pair, 4, cause="damage:D-1")
        assert (third.free, third.reserved, third.beyond) == (0, 2, 2)
        assert taken(third) == [("order:1", 2)]
        assert floor.takes == [first, second, third]
        # Planning writes nothing: the rows and reservations are as they were.
        assert row_of(shelf.store, shelf.product).reserved == 10 and Reservation.objects.count() == 4
        assert not TakenReservation.objects.exists()

        apply(rows, [first, second])
        services.apply_movements(rows, [(third.pair, third.quarantined())], reason=MovementReason.DAMAGE,
                                 reference="damage:D-1", actor="t")
        ids = floor.write(kind=EventKind.SALE, actor="till:1")
    assert floor.takes == []
    assert list(Reservation.objects.values_list("reference", "quantity")) == [("fulfillment:packed", 2)]
    rows_taken = TakenReservation.objects.filter(pk__in=ids).order_by("pk")
    assert len(ids) == 5 and TakenReservation.objects.count() == 5
    by_key = {(t.reference, t.cause): t for t in rows_taken}
    assert {k: t.units for k, t in by_key.items()} == {
        ("hold:newer", "pos:R-1"): 2, ("hold:newer", "pos:R-2"): 1, ("hold:older", "pos:R-2"): 2,
        ("order:1", "pos:R-2"): 1, ("order:1", "damage:D-1"): 2,
    }
    for t in rows_taken:
        assert t.channel_id == (shelf.web.pk if t.reference.startswith("hold:") else None)
        assert (t.kind, t.actor, t.store_id, t.product_id, t.reconciled_at) == (
            EventKind.SALE, "till:1", shelf.store.pk, shelf.product.pk, None)
    row = row_of(shelf.store, shelf.product)
    # on hand 12 - 3 - 4 left; 8 of 10 reserved taken; 2 more quarantined; 2 beyond the ledger: flagged.
    assert (row.on_hand, row.reserved, row.unavailable, row.safety, row.shortfall, row.needs_count) == (
        5, 2, 3, 2, 2, True)
    assert row.available == 0 and services.online_available(row) == 0
    assert_clean()


def test_write_shrinks_what_is_left_and_groups_per_reservation_and_cause(shelf):
    with transaction.atomic():
        rows, floor = shelf.floor()
        takes = [floor.take(shelf.pair, 2, cause="pos:R-1"), floor.take(shelf.pair, 1, cause="pos:R-1"),
                 floor.take(shelf.pair, 1, cause="pos:R-9")]
        assert [taken(t) for t in takes] == [[("hold:newer", 1)], [("hold:newer", 1)], [("hold:newer", 1)]]
        apply(rows, takes)
        ids = floor.write(kind=EventKind.TRANSFER, actor="t")
    left = dict(Reservation.objects.values_list("reference", "quantity"))
    assert left == {"order:1": 3, "hold:older": 2, "fulfillment:packed": 2}  # the newer hold: 3 taken, gone
    assert sorted(TakenReservation.objects.filter(pk__in=ids).values_list("cause", "units", "kind")) == [
        ("pos:R-1", 2, EventKind.TRANSFER), ("pos:R-9", 1, EventKind.TRANSFER)]
    with transaction.atomic():
        rows, floor = shelf.floor()
        take = floor.take(shelf.pair, 1, cause="pos:R-10")
        assert taken(take) == [("hold:older", 1)]
        apply(rows, [take])
        floor.write(kind=EventKind.SALE, actor="t")
    assert Reservation.objects.get(reference="hold:older").quantity == 1  # shrunk, kept
    assert_clean()


def test_undo_gives_back_exactly(shelf):
    with transaction.atomic():
        rows, floor = shelf.floor()
        kept = floor.take(shelf.pair, 2, cause="pos:R-1")
        refused = floor.take(shelf.pair, 6, cause="pos:R-2")
        assert (refused.free, refused.reserved, refused.beyond) == (0, 6, 0)
        floor.undo(refused)
        assert floor.takes == [kept] and floor.sellable(shelf.pair) == 0
        again = floor.take(shelf.pair, 6, cause="pos:R-3")
        assert (again.free, again.reserved, again.beyond, taken(again)) == (
            refused.free, refused.reserved, refused.beyond, taken(refused))
        floor.undo(kept)
        assert floor.sellable(shelf.pair) == 1  # the free unit is back
        assert floor.takes == [again]
        apply(rows, floor.takes)
        ids = floor.write(kind=EventKind.SALE, actor="t")
    assert sorted(TakenReservation.objects.filter(pk__in=ids).values_list("reference", "cause", "units")) == [
        ("hold:newer", "pos:R-3", 2), ("hold:older", "pos:R-3", 2), ("order:1", "pos:R-3", 2)]
    # The newer hold's unit that `kept` took came back with it.
    assert dict(Reservation.objects.values_list("reference", "quantity")) == {
        "hold:newer": 1, "order:1": 1, "fulfillment:packed": 2}
    assert_clean()


def test_use_free_false_skips_the_free_units(shelf):
    """A count that already set on hand takes what no longer fits straight from the reservations."""
    with transaction.atomic():
        rows, floor = shelf.floor()
        take = floor.take(shelf.pair, 4, cause="count:C-1", use_free=False)
        assert (take.free, take.reserved, take.beyond, taken(take)) == (0, 4, 0, [("hold:newer", 3),
                                                                             ("hold:older", 1)])
        assert floor.sellable(shelf.pair) == 1  # still there for a later sale
        sale = floor.take(shelf.pair, 2, cause="pos:R-1")
        assert (sale.free, sale.reserved, taken(sale)) == (1, 1, [("hold:older", 1)])
        apply(rows, [take, sale])
        floor.write(kind=EventKind.COUNT, actor="t")
    assert dict(Reservation.objects.values_list("reference", "quantity")) == {"order:1": 3, "fulfillment:packed": 2}
    assert_clean()


def test_a_row_not_locked_has_nothing_to_give(shelf):
    other = ProductFactory()
    with transaction.atomic():
        _rows, floor = shelf.floor()
        pair = (shelf.store.pk, other.pk)
        assert floor.sellable(pair) == 0
        take = floor.take(pair, 3, cause="pos:R-1")
        assert (take.free, take.reserved, take.beyond, take.taken) == (0, 0, 3, [])
        assert floor.write(kind=EventKind.SALE, actor="t") == []


def test_the_policy_sees_the_rows_reservations_once(shelf):
    """The policy is asked once per row, with that row's reservations only, and may offer none."""
    other_store = StoreFactory()
    put_stock(other_store, shelf.product, 5)
    reserve(other_store, shelf.product, 2, "hold:elsewhere", hold=True)
    seen = []

    def policy(reservations):
        seen.append(sorted(r.reference for r in reservations))
        return []

    with transaction.atomic():
        rows, floor = shelf.floor(takeable=policy)
        first, second = floor.take(shelf.pair, 1, cause="a"), floor.take(shelf.pair, 3, cause="b")
        assert (first.free, first.reserved, second.free, second.reserved, second.beyond) == (1, 0, 0, 0, 3)
        apply(rows, [first, second])
        assert floor.write(kind=EventKind.SALE, actor="t") == []
    assert seen == [["fulfillment:packed", "hold:newer", "hold:older", "order:1"]]
    row = row_of(shelf.store, shelf.product)
    assert (row.on_hand, row.reserved, row.shortfall, row.needs_count) == (11, 10, 3, True)
    assert_clean()


def test_leaving_and_quarantined_deltas():
    take = FloorTake(pair=(1, 2), cause="x", free=2, reserved=3, beyond=4)
    assert take.units == 9
    assert take.leaving() == StockDelta(on_hand=-5, reserved=-3, shortfall=4)
    assert take.quarantined() == StockDelta(unavailable=5, reserved=-3, shortfall=4)


# --- the property: random rows, reservations and takes -------------------------------------------------------------


class _Rollback(Exception):
    pass


RESERVATION = st.tuples(st.sampled_from(["hold", "order", "packed"]), st.integers(1, 3), st.booleans())
ROW = st.fixed_dictionaries({
    "extra": st.integers(0, 4),  # free units beyond what is set aside
    "unavailable": st.integers(0, 3),
    "safety": st.integers(0, 3),
    "shortfall": st.integers(0, 2),  # already beyond the ledger before the event
    "reservations": st.lists(RESERVATION, max_size=4),
})
TAKE = st.tuples(st.just("take"), st.integers(0, 1), st.integers(0, 8), st.sampled_from(["a", "b", "c"]),
                 st.booleans(), st.sampled_from(["leaving", "quarantined"]))
UNDO = st.tuples(st.just("undo"), st.integers(0, 10))


class Oracle:
    """The rule written the plain way: free pool per row, then the policy's queue, then beyond; undo adds back."""

    def __init__(self, free, queues):
        self.free, self.queues = free, queues  # pair -> units; pair -> [[reservation pk, units left], ...]

    def take(self, pair, units, use_free):
        free = min(units, self.free[pair]) if use_free else 0
        self.free[pair] -= free
        need, got = units - free, []
        for entry in self.queues[pair]:
            n = min(need, entry[1])
            if n:
                entry[1] -= n
                got.append((entry[0], n))
                need -= n
        return free, got, need

    def undo(self, pair, free, got):
        self.free[pair] += free
        for pk, n in got:
            next(e for e in self.queues[pair] if e[0] == pk)[1] += n


def _build(specs, web):
    store = StoreFactory()
    pairs, reservations = [], {}
    for i, spec in enumerate(specs):
        product = ProductFactory()
        pair = (store.pk, product.pk)
        pairs.append(pair)
        on_hand = spec["extra"] + spec["unavailable"] + sum(q for _, q, _ in spec["reservations"])
        if on_hand:
            put_stock(store, product, on_hand)
        else:
            Stock.objects.create(store=store, product=product)
        for j, (kind, qty, on_web) in enumerate(spec["reservations"]):
            r = reserve(store, product, qty, f"{kind}:{i}-{j}", channel=web if on_web else None, hold=kind == "hold")
            reservations[r.pk] = r
        if spec["unavailable"]:
            quarantine(store, product, spec["unavailable"])
        if spec["safety"]:
            services.set_stock_levels(store=store, product=product, actor="t", safety=spec["safety"])
        if spec["shortfall"]:
            with transaction.atomic():
                rows = services.lock_stock_rows([pair])
                services.apply_movements(rows, [(pair, StockDelta(shortfall=spec["shortfall"]))],
                                         reason=MovementReason.SALE, reference="earlier", actor="t")
    return pairs, reservations


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(specs=st.lists(ROW, min_size=1, max_size=2), ops=st.lists(st.one_of(TAKE, TAKE, UNDO), max_size=8))
def test_random_takes_keep_the_ledger(db, specs, ops):
    try:
        with transaction.atomic():
            _check_random_takes(specs, ops)
            raise _Rollback
    except _Rollback:
        pass


def _check_random_takes(specs, ops):
    web = SalesChannelFactory()
    pairs, reservations = _build(specs, web)
    before = {pair: Stock.objects.get(store_id=pair[0], product_id=pair[1]) for pair in pairs}
    quantities = {pk: r.quantity for pk, r in reservations.items()}
    offered: dict[tuple, list[int]] = {}

    def policy(on_row):
        order = holds_newest_first(on_row)
        offered[(on_row[0].store_id, on_row[0].product_id)] = [r.pk for r in order]
        return order

    with transaction.atomic():
        rows = services.lock_stock_rows(pairs)
        floor = ShopFloor(rows, takeable=policy)
        oracle = Oracle(
            {p: rows[p].on_hand - rows[p].reserved - rows[p].unavailable for p in pairs},
            {p: [[r.pk, r.quantity] for r in holds_newest_first(
                [r for r in reservations.values() if (r.store_id, r.product_id) == p])] for p in pairs},
        )
        live: list[tuple[FloorTake, str]] = []
        for op in ops:
            if op[0] == "undo":
                if live:
                    take, _how = live.pop(op[1] % len(live))
                    floor.undo(take)
                    oracle.undo(take.pair, take.free, [(r.pk, n) for r, n in take.taken])
                continue
            _, index, units, cause, use_free, how = op
            pair = pairs[index % len(pairs)]
            take = floor.take(pair, units, cause=cause, use_free=use_free)
            assert take.free + take.reserved + take.beyond == take.units == units  # units are conserved
            assert take.reserved == sum(n for _, n in take.taken) and all(n > 0 for _, n in take.taken)
            assert (take.free, [(r.pk, n) for r, n in take.taken], take.beyond) == oracle.take(pair, units, use_free)
            if not use_free:
                assert take.free == 0
            live.append((take, how))
            for p in pairs:
                assert floor.sellable(p) == oracle.free[p] >= 0
        assert floor.takes == [t for t, _ in live]
        # Never more taken from a reservation than it held, and only from what the policy offered.
        per_reservation: Counter = Counter()
        per_event: dict[tuple[int, str], int] = defaultdict(int)
        for take, _ in live:
            for r, n in take.taken:
                per_reservation[r.pk] += n
                per_event[(r.pk, take.cause)] += n
                assert r.pk in offered.get(take.pair, [])
        assert all(per_reservation[pk] <= quantities[pk] for pk in per_reservation)
        free_used = Counter()
        for take, _ in live:
            free_used[take.pair] += take.free
        for p in pairs:
            assert free_used[p] <= max(0, before[p].on_hand - before[p].reserved - before[p].unavailable)

        services.apply_movements(rows, [(t.pair, getattr(t, how)()) for t, how in live], reason=MovementReason.SALE,
                                 reference="ev", actor="t")
        ids = floor.write(kind=EventKind.SALE, actor="t")

    written = list(TakenReservation.objects.filter(pk__in=ids))
    assert len(written) == len(ids) == TakenReservation.objects.count() == len(per_event)
    for t in written:
        r = reservations[next(pk for (pk, cause) in per_event if reservations[pk].reference == t.reference
                              and cause == t.cause)]
        assert t.units == per_event[(r.pk, t.cause)]
        assert (t.store_id, t.product_id, t.channel_id) == (r.store_id, r.product_id, r.channel_id)
    left = dict(Reservation.objects.values_list("pk", "quantity"))
    for pk, qty in quantities.items():
        remaining = qty - per_reservation[pk]
        assert left.get(pk) == (remaining or None)
    for p in pairs:
        row = Stock.objects.get(store_id=p[0], product_id=p[1])
        beyond = sum(t.beyond for t, _ in live if t.pair == p)
        assert row.shortfall == before[p].shortfall + beyond
        assert row.needs_count == (row.shortfall > 0)
        assert row.reserved == before[p].reserved - sum(t.reserved for t, _ in live if t.pair == p)
    assert_clean()
