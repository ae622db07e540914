"""Issue #18, "the shop floor is the truth", as a Hypothesis state machine over a small chain: three stores 0.4 km
apart around Bến Thành, two SKUs, two units of each per store (few, so events run out of free units quickly).

Rules, all through the services. The shop floor: till sales made now (sync_sales); late offline sales, made before
the latest count (or minutes ago) and synced now; counts of a SKU at counted_at now or 2-45 minutes ago; damaged
units found; goods received; a receipt voided; an earlier receipt batch sent again. The website: checkout holds,
delivery and pickup orders (place_order routed now), fulfilment moves (pick, pack, hand to the courier, ready,
collect, deliver; never a lone cancel), short picks, answers to pickup change offers (move, keep, cancel). The
periodic task: reconcile_taken(). And targeted mixes that the uniform rule choice rarely reaches: a till that sells
into a fresh checkout hold or a fresh pickup order (free units + 1 or 2), a count below what a fulfilment's row has
set aside (packed fulfilments included: their units must stay), and a sale at a fulfilment's store whose
reconciliation the caller defers (apply_sale with `taken`) while the fulfilment is picked, packed and handed over
meanwhile: the race reconcile_taken records as `packed`; those takes are reconciled by the `reconcile_pending`
rule (the periodic task, after PENDING_GRACE: their created_at is moved back to stand for the time passing).

Invariants after every step:
    * `inventory_audit` and `loyalty_audit` pass (every stock row equals its ledger, reserved equals its live
      reservations, every posting balances);
    * every stock row: reserved + unavailable <= on_hand, and shortfall == 0 or needs_count;
    * every TakenReservation is reconciled: the POS reconciles what a sale, count or damage report took in the same
      flow, right after its commit, so a row left pending means reconcile_taken failed on it (its logged exception
      is shown). The only pending ones allowed are those of a deferred sale (its caller asked to reconcile them)
      until `reconcile_pending`, which must settle exactly those and then find nothing left;
    * every receipt sent is recorded exactly once (TillReceipt rows == distinct receipt ids sent; a resent batch
      answers `duplicate` with the first answer and writes no movement);
    * every live fulfilment not yet gone holds reservations only at its store and never more units than its lines
      will hand over; those assigned or picking (the ones events may take from) hold exactly what they will hand
      over once their takes are reconciled; fulfilments gone or closed hold nothing;
    * no fulfilment holds reservations on a row whose ledger cannot back them (reserved > on_hand - unavailable);
    * every unit ordered is accounted for: in a fulfilment not cancelled, unfulfilled, or missing in an open change
      offer (orders not cancelled as a whole);
    * nothing new is reserved (holds, orders) on a row whose shortfall waits for a count (its online ATP is 0).
The sale, damage, goods-receipt and count rules also check their own effect on the row against a model of the
policy: units free at the till first, then the takeable reservations, the rest a shortfall; a late sale takes
nothing; a count made now settles the shortfall and leaves on hand at what was counted (plus what stays reserved
for packed orders).

Database: the test runs under pytest-django's `django_db` (one transaction around the test); each example opens
its own `transaction.atomic()` (a savepoint) in `__init__` and rolls it back in `teardown`, so the examples start
from the same chain and never see each other's rows. Nothing the flow needs waits for a commit: the POS calls
orders.services.reconcile_taken directly after its own transaction (a savepoint here), not from an on_commit hook,
and reconcile_taken's per-holder transactions are savepoints too, so the in-flow reconciliation runs as it does in
production. The stock is backdated 3 hours (like tests/pos) so that counts and late sales in the past find it.

Runs derandomised (40 examples of up to 25 steps, no example database: the same sequence every run, ~20 s of test on
an idle 2-core machine) and ends by checking the mix reached every path it is meant to prove. SHOP_FLOOR_EXPLORE=<n>
runs n random examples instead, to hunt for new failures (no coverage check then).
"""

import io
import itertools
import logging
import os
from collections import defaultdict
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from inventory import services as stock
from inventory.models import Reservation, Stock, StockMovement, TakenReservation
from o2o.domain_errors import DomainError
from o2o.models import SalesChannel
from orders import services as order_services
from orders.models import (
    ChangeOffer,
    ChangeOfferStatus,
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    OrderLine,
    OrderStatus,
)
from orders.pos import services as pos
from orders.pos.models import StockCountLine, TillReceipt, TillReceiptLine
from orders.services.store_events import PENDING_GRACE
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

pytestmark = pytest.mark.django_db
S = FulfillmentStatus
BEN_THANH = {"lat": 10.7725, "lon": 106.6980}
UNITS = 2  # of each SKU at each store
_runs = itertools.count()
# What the runs exercised, checked at the end (a machine that never takes a reservation proves little).
SEEN: dict[str, int] = defaultdict(int)
HOLDING = (S.ASSIGNED, S.PICKING, S.PACKED, S.READY_FOR_PICKUP)  # live, goods not gone: a reservation may be held
TAKEABLE = (S.ASSIGNED, S.PICKING)


class _Errors(logging.Handler):
    """Collects what reconcile_taken logs when a holder cannot be reconciled (it swallows the exception)."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(self.format(record))


class ShopFloorMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.run = run = next(_runs)
        self.stores = [
            StoreFactory(code=f"SF{run}-{i}", lat=BEN_THANH["lat"] + 0.004 * i, lon=BEN_THANH["lon"] + 0.001 * i)
            for i in range(3)
        ]
        self.products = [ProductFactory(sku=f"SF{run}-P{i}", price_vnd=100_000 * (i + 1)) for i in range(2)]
        for s in self.stores:
            for p in self.products:
                put_stock(s, p, UNITS)
        StockMovement.objects.update(created_at=timezone.now() - timedelta(hours=3))
        self.channel, _ = SalesChannel.objects.get_or_create(code="website", defaults={"name": "Website"})
        self.batches: list[tuple[int, list[pos.Sale], list[dict]]] = []  # (store index, sales, first answers)
        self.sent: set[tuple[int, str]] = set()  # (store pk, receipt id)
        self.orders: list[int] = []
        self.counts: dict[int, list] = defaultdict(list)  # store index -> counted_at of its counts
        self.n = 0
        self.pending: set[int] = set()  # TakenReservation ids a deferred sale left to its caller
        self.errors = _Errors()
        logging.getLogger("orders.services.store_events").addHandler(self.errors)

    def teardown(self):
        logging.getLogger("orders.services.store_events").removeHandler(self.errors)
        try:
            mine = TakenReservation.objects.filter(store__in=self.stores)
            SEEN["taken_from_holds"] += mine.filter(reference__startswith="hold:").count()
            SEEN["taken_from_fulfilments"] += mine.filter(reference__startswith="fulfillment:").count()
            SEEN["taken_by_counts"] += mine.filter(kind="count").count()
            SEEN["change_offers"] += ChangeOffer.objects.filter(order_id__in=self.orders).count()
            SEEN["late_for_count"] += TillReceiptLine.objects.filter(
                receipt__store__in=self.stores, late_for_count__isnull=False).count()
            SEEN["shortfalls"] += TillReceiptLine.objects.filter(
                receipt__store__in=self.stores, shortfall__gt=0).count()
            SEEN["collected_or_handed"] += Fulfillment.objects.filter(
                order_id__in=self.orders, status__in=(S.COLLECTED, S.HANDED_TO_COURIER, S.DELIVERED)).count()
        finally:
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)

    # --- helpers ------------------------------------------------------------------------------------------------------

    def next_id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.run}-{self.n}"

    def row(self, store, product) -> Stock:
        return Stock.objects.get(store=store, product=product)

    def takeable_units(self, store, product) -> int:
        on_row = list(Reservation.objects.filter(store=store, product=product).order_by("pk"))
        return sum(r.quantity for r in order_services.takeable(on_row))

    def sale(self, rid: str, sold_at, lines: list[tuple[int, int]]) -> pos.Sale:
        sale_lines = tuple(pos.SaleLine(self.products[p].sku, q, self.products[p].price_vnd) for p, q in lines)
        total = sum(line.qty * line.unit_price_vnd for line in sale_lines)
        return pos.Sale(receipt_id=rid, sold_at=sold_at, lines=sale_lines, tenders=(pos.Tender("cash", total),),
                        content_hash=f"{rid}:{lines}")

    def send(self, store_i: int, sales: list[pos.Sale], *, defer: bool = False) -> None:
        """Sync a batch of new receipts at a store, checking each row's change against the selling policy. `defer`:
        one receipt through apply_sale with `taken`, so reconciling what it took is left to this caller."""
        store = self.stores[store_i]
        expected = {}
        for sale in sales:  # one sale per batch touches a row at most once (distinct products)
            for line in sale.lines:
                p = next(p for p in self.products if p.sku == line.sku)
                before = self.row(store, p)
                late = StockCountLine.objects.filter(
                    count__store=store, product=p, count__counted_at__gte=sale.sold_at).exists()
                expected[p.pk] = (before, late, line.qty, self.takeable_units(store, p))
        if defer:
            taken: list[int] = []
            result = pos.apply_sale(store=store, sale=sales[0], till="sm", taken=taken)
            outcomes = [pos.Outcome(sales[0].receipt_id, "applied", result=result)]
            self.pending |= set(taken)
        else:
            outcomes = sync_sales(store, sales)
        assert [o.status for o in outcomes] == ["applied"] * len(sales), [o.as_dict() for o in outcomes]
        for sale in sales:
            self.sent.add((store.pk, sale.receipt_id))
        self.batches.append((store_i, sales, [o.result for o in outcomes]))
        for _pid, (before, late, qty, takeable_units) in expected.items():
            after = Stock.objects.get(pk=before.pk)
            if late:  # the count saw these units gone
                assert (after.on_hand, after.reserved, after.shortfall) == (
                    before.on_hand, before.reserved, before.shortfall), (before.__dict__, after.__dict__)
                continue
            free = min(qty, max(0, before.on_hand - before.reserved - before.unavailable))
            from_reserved = min(qty - free, takeable_units)
            beyond = qty - free - from_reserved
            assert after.on_hand == before.on_hand - free - from_reserved, (qty, before.__dict__, after.__dict__)
            assert after.reserved == before.reserved - from_reserved, (qty, before.__dict__, after.__dict__)
            assert after.shortfall == before.shortfall + beyond, (qty, before.__dict__, after.__dict__)
            if beyond:
                assert after.needs_count

    def fulfilments(self, statuses) -> list[int]:
        return list(Fulfillment.objects.filter(order_id__in=self.orders, status__in=statuses)
                    .order_by("pk").values_list("pk", flat=True))

    # --- the shop floor -----------------------------------------------------------------------------------------------

    @rule(store=st.integers(0, 2), lines=st.sampled_from([[(0, 1)], [(1, 1)], [(0, 2)], [(1, 3)], [(0, 1), (1, 1)],
                                                          [(0, 3)], [(1, 2)], [(0, 2), (1, 1)]]))
    def till_sale_now(self, store, lines):
        self.send(store, [self.sale(self.next_id("R"), timezone.now(), lines)])

    @rule(store=st.sampled_from([0, 0, 1, 2]), lines=st.sampled_from([[(0, 1)], [(1, 2)], [(0, 2), (1, 1)]]))
    def till_sale_reconciled_later(self, store, lines):
        """A sale whose caller reconciles what it took later (apply_sale with `taken`): until then the fulfilments
        it took from may be picked, packed, handed over or short-picked (the race reconcile_taken records)."""
        self.send(store, [self.sale(self.next_id("RL"), timezone.now(), lines)], defer=True)

    @rule(store=st.integers(0, 2), product=st.integers(0, 1), extra=st.integers(1, 2))
    def till_sells_into_a_checkout_hold(self, store, product, extra):
        """A website holds units at a store, then the till sells more than it has free: the newest holds go first."""
        s, p = self.stores[store], self.products[product]
        try:
            stock.hold_stock(store=s, quantities={p: 1}, ttl_seconds=900, actor="sm", channel=self.channel)
        except DomainError:
            pass  # no online ATP here: the sale below may still take older holds or go beyond the ledger
        row = self.row(s, p)
        qty = max(0, row.on_hand - row.reserved - row.unavailable) + extra
        self.send(store, [self.sale(self.next_id("RH"), timezone.now(), [(product, qty)])])

    @rule(store=st.integers(0, 2), product=st.integers(0, 1))
    def till_sells_a_pickup(self, store, product):
        """A pickup order is placed at a store, then its till sells more than it has free: the customer is offered a
        change (move the order, keep what is left, cancel)."""
        n = len(self.orders)
        self.place({product: 1}, method="pickup", pickup_store_code=self.stores[store].code)
        if len(self.orders) == n:
            return
        s, p = self.stores[store], self.products[product]
        row = self.row(s, p)
        qty = max(0, row.on_hand - row.reserved - row.unavailable) + 1
        self.send(store, [self.sale(self.next_id("RK"), timezone.now(), [(product, qty)])])

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), steps=st.integers(0, 3))
    def till_sells_a_parcel_then_it_moves_on(self, data, steps):
        """The race reconcile_taken records: a sale at a fulfilment's store takes units it holds (more than the till
        has free), its reconciliation is left for later, and meanwhile the fulfilment is picked, packed, handed
        over or collected."""
        ids = self.fulfilments(TAKEABLE)
        if not ids:
            return
        f = Fulfillment.objects.select_related("store").get(pk=data.draw(st.sampled_from(ids)))
        line = data.draw(st.sampled_from(list(f.lines.order_by("product_id"))))
        row = self.row(f.store, line.product)
        free = max(0, row.on_hand - row.reserved - row.unavailable)
        product = next(i for i, p in enumerate(self.products) if p.pk == line.product_id)
        store = next(i for i, st_ in enumerate(self.stores) if st_.pk == f.store_id)
        qty = free + data.draw(st.integers(1, max(1, line.units)))
        self.send(store, [self.sale(self.next_id("RP"), timezone.now(), [(product, qty)])], defer=True)
        for _ in range(steps):
            targets = [t for t in order_services.allowed_transitions(f) if t != S.CANCELLED]
            if not targets:
                return
            f = order_services.transition_fulfillment(fulfillment=f, to=data.draw(st.sampled_from(targets)),
                                                      actor="sm")

    @rule(store=st.integers(0, 2), product=st.integers(0, 1), qty=st.integers(1, 3),
          before_count=st.booleans(), minutes=st.integers(1, 90))
    def late_offline_sale(self, store, product, qty, before_count, minutes):
        """Made in the past, synced now: before the store's last count (the count saw it), or just minutes ago."""
        counted = [(at, i) for i, ats in self.counts.items() for at in ats]
        if before_count and counted:  # at the store of the latest count, just before it
            last, store = max(counted)
            sold_at = last - timedelta(minutes=minutes % 10 + 1)
        else:
            sold_at = timezone.now() - timedelta(minutes=minutes)
        self.send(store, [self.sale(self.next_id("OFF"), sold_at, [(product, qty)])])

    @rule(store=st.integers(0, 2), product=st.integers(0, 1), counted=st.integers(0, 4),
          ago=st.sampled_from([0, 0, 0, 2, 15, 45]))
    def count(self, store, product, counted, ago):
        self.do_count(store, product, counted, ago)

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), ago=st.sampled_from([0, 0, 3, 30]))
    def count_finds_less_than_set_aside(self, data, ago):
        """A count at a fulfilment's store that finds fewer units than are reserved and quarantined: it takes from
        the reservations (assigned and picking ones), never from packed ones (their units are in a bag)."""
        ids = self.fulfilments(HOLDING)
        if not ids:
            return
        f = Fulfillment.objects.get(pk=data.draw(st.sampled_from(ids)))
        line = data.draw(st.sampled_from(list(f.lines.order_by("product_id"))))
        row = self.row(f.store, line.product)
        counted = data.draw(st.integers(0, max(0, row.reserved + row.unavailable - 1)))
        store = next(i for i, st_ in enumerate(self.stores) if st_.pk == f.store_id)
        product = next(i for i, p in enumerate(self.products) if p.pk == line.product_id)
        packed = Reservation.objects.filter(
            store_id=f.store_id, product_id=line.product_id,
            reference__in=[f"fulfillment:{pk}" for pk in self.fulfilments((S.PACKED, S.READY_FOR_PICKUP))],
        ).aggregate(n=Sum("quantity"))["n"] or 0
        self.do_count(store, product, counted, ago)
        after = self.row(f.store, line.product)
        assert after.reserved >= packed, ("a count took units packed in a bag", packed, after.__dict__)

    def do_count(self, store, product, counted, ago):
        s, p = self.stores[store], self.products[product]
        before = self.row(s, p)
        counted_at = timezone.now() - timedelta(minutes=ago)
        cid = self.next_id("C")
        result, replayed = pos.record_count(store=s, count_id=cid, counted_at=counted_at,
                                            lines=[pos.CountLine(sku=p.sku, counted=counted)], content_hash=cid)
        assert not replayed
        self.counts[store].append(counted_at)
        after = self.row(s, p)
        line = result["lines"][0]
        assert after.needs_count == (after.shortfall > 0), after.__dict__
        assert after.shortfall == line["shortfall_after"]
        assert after.reserved == before.reserved - line["taken_from_online"]
        assert after.unavailable == before.unavailable - line["from_quarantine"]
        if ago == 0:  # nothing happened after it: the shelf is what was counted, the shortfall settled
            assert after.shortfall == 0 and not after.needs_count, after.__dict__
            assert after.on_hand == counted + line["kept_for_packed"], (counted, result)

    @rule(store=st.integers(0, 2), product=st.integers(0, 1), qty=st.integers(1, 2))
    def damage_found(self, store, product, qty):
        """Damaged units go to quarantine: free ones first, then reserved ones, the rest a shortfall."""
        s, p = self.stores[store], self.products[product]
        before = self.row(s, p)
        takeable_units = self.takeable_units(s, p)
        rid = self.next_id("D")
        pos.report_damage(store=s, report_id=rid, lines={p.sku: qty}, content_hash=rid)
        after = self.row(s, p)
        free = min(qty, max(0, before.on_hand - before.reserved - before.unavailable))
        from_reserved = min(qty - free, takeable_units)
        assert after.on_hand == before.on_hand, (qty, before.__dict__, after.__dict__)
        assert after.unavailable == before.unavailable + free + from_reserved, (qty, before.__dict__, after.__dict__)
        assert after.reserved == before.reserved - from_reserved, (qty, before.__dict__, after.__dict__)
        assert after.shortfall == before.shortfall + qty - free - from_reserved, (qty, before.__dict__, after.__dict__)

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def void_a_receipt(self, data):
        """A receipt entered in error is voided at the till: what it took off the ledger goes back on hand."""
        store_i, sales, _ = self.batches[data.draw(st.integers(0, len(self.batches) - 1))]
        sale = data.draw(st.sampled_from(sales))
        try:
            pos.void_receipt(store=self.stores[store_i], receipt_id=sale.receipt_id, till="sm")
        except DomainError:
            pass

    @rule(store=st.integers(0, 2), product=st.integers(0, 1), qty=st.integers(1, 3))
    def goods_received(self, store, product, qty):
        """A delivery from the warehouse: on hand up; a row waiting for a count keeps waiting (its shortfall stays)."""
        s, p = self.stores[store], self.products[product]
        before = self.row(s, p)
        rid = self.next_id("GR")
        pos.receive_goods(store=s, receipt_id=rid, source="DC-HCM", lines={p.sku: qty}, content_hash=rid)
        after = self.row(s, p)
        assert (after.on_hand, after.reserved, after.shortfall) == (
            before.on_hand + qty, before.reserved, before.shortfall), (before.__dict__, after.__dict__)

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def resend_batch(self, data):
        """A till that lost the answer sends an earlier batch again: every receipt answers duplicate, nothing moves."""
        store_i, sales, first = self.batches[data.draw(st.integers(0, len(self.batches) - 1))]
        moves = StockMovement.objects.count()
        outcomes = sync_sales(self.stores[store_i], sales)
        assert [o.status for o in outcomes] == ["duplicate"] * len(sales), [o.as_dict() for o in outcomes]
        assert [o.result for o in outcomes] == first
        assert StockMovement.objects.count() == moves

    # --- the website ----------------------------------------------------------------------------------------------

    @rule(store=st.integers(0, 2), product=st.integers(0, 1), qty=st.integers(1, 2))
    def checkout_hold(self, store, product, qty):
        short = self.rows_short()
        try:
            hold = stock.hold_stock(store=self.stores[store], quantities={self.products[product]: qty},
                                    ttl_seconds=900, actor="sm", channel=self.channel)
        except DomainError:
            return  # not enough online ATP
        self.not_on_short_rows(short, [hold.reference])

    @rule(lines=st.sampled_from([{0: 1}, {1: 1}, {0: 2}, {0: 1, 1: 1}, {1: 4}, {0: 2, 1: 2}]))
    def delivery_order(self, lines):
        self.place(lines, method="delivery", lat=BEN_THANH["lat"], lon=BEN_THANH["lon"])

    @rule(store=st.integers(0, 2), lines=st.sampled_from([{0: 1}, {1: 1}, {0: 2}, {0: 1, 1: 1}]))
    def pickup_order(self, store, lines):
        self.place(lines, method="pickup", pickup_store_code=self.stores[store].code)

    def rows_short(self) -> set[tuple[int, int]]:
        return set(Stock.objects.filter(store__in=self.stores, shortfall__gt=0).values_list("store_id", "product_id"))

    def not_on_short_rows(self, short, references) -> None:
        """Online ATP is 0 on a row whose shortfall waits for a count: nothing new is reserved there."""
        on = set(Reservation.objects.filter(reference__in=references).values_list("store_id", "product_id"))
        assert not on & short, ("reserved on a row waiting for a count", on & short, references)

    def place(self, lines, **kw):
        short = self.rows_short()
        try:
            order = order_services.place_order(
                channel=self.channel, lines={self.products[p].sku: q for p, q in lines.items()},
                customer_name="Khách", customer_phone="0901 234 567", actor="sm", **kw,
            )
        except DomainError:
            return
        self.orders.append(order.pk)
        self.not_on_short_rows(short, [f.reference for f in order.fulfillments.all()])

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), steps=st.integers(1, 4))
    def move_fulfilment(self, data, steps):
        """Up to `steps` moves of one fulfilment: pick, pack, hand to the courier or mark ready, collect, deliver
        (never cancel one fulfilment alone: that is not a shop-floor event)."""
        ids = self.fulfilments((S.ASSIGNED, S.PICKING, S.PACKED, S.READY_FOR_PICKUP, S.HANDED_TO_COURIER))
        if not ids:
            return
        f = Fulfillment.objects.get(pk=data.draw(st.sampled_from(ids)))
        for _ in range(steps):
            targets = [t for t in order_services.allowed_transitions(f) if t != S.CANCELLED]
            if not targets:
                return
            f = order_services.transition_fulfillment(fulfillment=f, to=data.draw(st.sampled_from(targets)),
                                                      actor="sm")

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def short_pick(self, data):
        ids = self.fulfilments(TAKEABLE)
        if not ids:
            return
        f = Fulfillment.objects.get(pk=data.draw(st.sampled_from(ids)))
        lines = list(f.lines.order_by("product_id"))
        found = {line.product_id: data.draw(st.integers(0, line.units)) for line in lines}
        order_services.report_short_pick(fulfillment=f, found=found, actor="sm")

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def answer_change_offer(self, data):
        offers = list(ChangeOffer.objects.filter(order_id__in=self.orders, status=ChangeOfferStatus.OPEN).order_by("pk"))
        if not offers:
            return
        offer = data.draw(st.sampled_from(offers))
        option = data.draw(st.sampled_from([o["id"] for o in offer.options]))
        try:
            order_services.accept_change_offer(order=offer.order_id, offer=offer.pk, option=option, actor="sm")
        except DomainError:
            pass  # the offered store can no longer serve the whole order

    @rule()
    def reconcile_pending(self):
        """The periodic task: what the flows reconciled themselves it leaves alone; the takes a deferred sale left
        pending (made to look older than the grace period the task gives the flows) it settles, once."""
        if self.pending:
            TakenReservation.objects.filter(pk__in=self.pending).update(
                created_at=timezone.now() - PENDING_GRACE - timedelta(seconds=1))
        done = order_services.reconcile_taken()
        settled = {pk for r in done for pk in r.taken_ids}
        assert settled == self.pending, (settled, self.pending, [r.outcome for r in done])
        SEEN["reconciled_late"] += len(settled)
        SEEN["reconciled_late_packed"] += sum(r.result == "packed" for r in done)
        self.pending = set()
        assert order_services.reconcile_taken() == []

    # --- invariants -----------------------------------------------------------------------------------------------

    @invariant()
    def audits_clean(self):
        out = io.StringIO()
        call_command("inventory_audit", stdout=out)
        call_command("loyalty_audit", stdout=out)

    @invariant()
    def rows_possible(self):
        rows = Stock.objects.filter(store__in=self.stores)
        assert not rows.filter(on_hand__lt=F("reserved") + F("unavailable")).exists()
        assert not rows.filter(shortfall__gt=0, needs_count=False).exists()

    @invariant()
    def takes_reconciled(self):
        """Reconciled in the flow that took them; pending only when the caller deferred it (till_sale_reconciled_later)
        and the periodic task has not run since."""
        pending = list(TakenReservation.objects.filter(reconciled_at__isnull=True).exclude(pk__in=self.pending).values(
            "pk", "reference", "cause", "units", "kind"))
        assert not pending, (pending, self.errors.records)
        assert not self.errors.records, self.errors.records

    @invariant()
    def receipts_once(self):
        recorded = list(TillReceipt.objects.filter(store__in=self.stores).values_list("store_id", "receipt_id"))
        assert len(recorded) == len(set(recorded)) == len(self.sent)
        assert set(recorded) == self.sent

    @invariant()
    def orders_and_reservations(self):
        """Read once per step (a few queries), then checked in memory: fulfilments hold what they will hand over,
        their rows can back it, and every unit ordered is accounted for."""
        if not self.orders:
            return
        fulfilments = {pk: (status, store_id, order_id) for pk, status, store_id, order_id in Fulfillment.objects.filter(
            order_id__in=self.orders).values_list("pk", "status", "store_id", "order_id")}
        units: dict[int, dict[int, int]] = defaultdict(dict)
        for fid, pid, qty, picked in FulfillmentLine.objects.filter(fulfillment_id__in=list(fulfilments)).values_list(
                "fulfillment_id", "product_id", "qty", "picked_qty"):
            units[fid][pid] = qty if picked is None else picked
        held: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for reference, store_id, pid, qty in Reservation.objects.filter(
                reference__in=[f"fulfillment:{pk}" for pk in fulfilments]).values_list(
                "reference", "store_id", "product_id", "quantity"):
            fid = int(reference.split(":")[1])
            assert store_id == fulfilments[fid][1], ("reserved at another store", fid, store_id)
            held[fid][pid] += qty
        rows = {(r.store_id, r.product_id): r for r in Stock.objects.filter(store__in=self.stores)}
        waiting = set(TakenReservation.objects.filter(pk__in=self.pending).values_list("reference", flat=True))
        for fid, (status, store_id, _) in fulfilments.items():
            reserved = {pid: q for pid, q in held.get(fid, {}).items() if q}
            if status not in HOLDING:
                assert not reserved, ("a fulfilment gone or closed still holds units", fid, status, reserved)
                continue
            for pid, qty in reserved.items():
                assert qty <= units[fid].get(pid, 0), (
                    "reserves more than it will hand over", fid, status, reserved, units[fid])
                row = rows[(store_id, pid)]
                assert row.reserved <= row.on_hand - row.unavailable, ("reserved beyond the ledger", row.__dict__)
            if status in TAKEABLE and f"fulfillment:{fid}" not in waiting:  # reconciled: lines shrank to what it holds
                assert reserved == {pid: u for pid, u in units[fid].items() if u}, (
                    "will hand over units it does not hold", fid, status, reserved, units[fid])
        # Every unit ordered: in a fulfilment not cancelled, unfulfilled, or missing in an open change offer.
        sku_pk = {p.sku: p.pk for p in self.products}
        accounted: dict[tuple[int, int], int] = defaultdict(int)
        for fid, (status, _, order_id) in fulfilments.items():
            if status != S.CANCELLED:
                for pid, u in units[fid].items():
                    accounted[(order_id, pid)] += u
        for order_id, missing in ChangeOffer.objects.filter(
                order_id__in=self.orders, status=ChangeOfferStatus.OPEN).values_list("order_id", "missing"):
            for m in missing:
                accounted[(order_id, sku_pk[m["sku"]])] += m["qty"]
        for order_id, pid, qty, unfulfilled in OrderLine.objects.filter(order_id__in=self.orders).exclude(
                order__status=OrderStatus.CANCELLED).values_list("order_id", "product_id", "qty", "unfulfilled_qty"):
            assert qty == accounted[(order_id, pid)] + unfulfilled, (
                "units ordered not accounted for", order_id, pid, qty, accounted[(order_id, pid)], unfulfilled)


def sync_sales(store, sales):
    return pos.sync_sales(store=store, sales=list(sales), till="sm")


def test_shop_floor_state_machine():
    # SHOP_FLOOR_EXPLORE=<n> runs n random examples instead of the fixed (derandomised) 40, to hunt for new failures.
    explore = int(os.environ.get("SHOP_FLOOR_EXPLORE", "0"))
    run_state_machine_as_test(
        ShopFloorMachine,
        settings=settings(max_examples=explore or 40, stateful_step_count=25, deadline=None, derandomize=not explore,
                          database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]),
    )
    print("SEEN", dict(SEEN))
    # The mix really took reservations (holds, fulfilments, by counts), offered pickup changes, hit late sales and
    # shortfalls, and handed goods over.
    assert explore or all(SEEN[k] for k in ("reconciled_late", "taken_from_holds", "taken_from_fulfilments", "late_for_count", "shortfalls",
                                 "change_offers", "collected_or_handed")), str(dict(SEEN))
