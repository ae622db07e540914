"""A Hypothesis state machine mixes till sales (some paid partly with points), web orders (delivered, or cancelled
before they leave), till voids and refunds, returns at any store of receipts and orders, courier collections
(received or cancelled) and the inspection of quarantined units, all through the services. After every step: the
stock ledger and the loyalty ledger audit clean, no purchase line has more units back than it sold, and no purchase
has refunded more than was paid for it or given back more points than were spent on it."""

import itertools
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from inventory.models import Stock
from loyalty import services as loyalty
from o2o.domain_errors import DomainError
from o2o.models import SalesChannel
from orders import services as order_services
from orders.loyalty_tender import LoyaltyInput
from orders.models import Order
from orders.pos import services as pos
from orders.pos.models import TillReceipt, TillReceiptLine
from orders.returns import services
from orders.returns.models import Disposition, Return, ReturnedOrderLine, ReturnLine, ReturnStatus
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory
from tests.returns.conftest import BEN_THANH, audits_clean, deliver

pytestmark = pytest.mark.django_db
_runs = itertools.count()
SEEN = {"refunded": 0, "collections": 0, "quarantined": 0, "points_back_on_orders": 0}  # what the runs exercised, checked at the end
conditions = st.sampled_from(["resellable", "resellable", "damaged", "missing_parts"])


class ReturnsMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        run = next(_runs)
        self.stores = [
            StoreFactory(code=f"SM{run}-{i}", lat=BEN_THANH["lat"] + 0.004 * i, lon=BEN_THANH["lon"]) for i in range(3)
        ]
        self.products = [ProductFactory(sku=f"SM{run}-P{i}", price_vnd=100_000 * (i + 1)) for i in range(2)]
        for s in self.stores:
            for p in self.products:
                put_stock(s, p, 6)
        self.channel, _ = SalesChannel.objects.get_or_create(code="website", defaults={"name": "Website"})
        self.phone = f"0909{run % 1000:03d}{run // 1000 % 1000:03d}"
        member, _ = loyalty.get_or_create_member(phone=self.phone, channel="pos")
        loyalty.earn_points(member=member, amount_paid_vnd=5_000 * 10_000, source=loyalty.PostingSource(actor="test"),
                            idempotency_key=f"sm-grant-{run}")
        self.receipts: list[tuple[str, str]] = []  # (store code, receipt id)
        self.orders: list[str] = []
        self.handed_over: list[str] = []  # orders delivered: what a courier can collect
        self.collections: list[str] = []
        self.n = 0

    def teardown(self):
        mine = Return.objects.filter(receiving_store__in=self.stores)
        SEEN["refunded"] += mine.filter(status=ReturnStatus.REFUNDED).count()
        SEEN["collections"] += mine.filter(opened_via="website").count()
        SEEN["points_back_on_orders"] += mine.filter(order__isnull=False, points_given_back__gt=0).count()
        SEEN["quarantined"] += ReturnLine.objects.filter(ret__in=mine).exclude(condition="resellable").count()
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def next_id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"

    @rule(store=st.integers(0, 2), product=st.integers(0, 1), qty=st.integers(1, 3), points=st.sampled_from([0, 0, 300]),
          discount=st.sampled_from([0, 5_000]))
    def till_sale(self, store, product, qty, points, discount):
        p = self.products[product]
        total = qty * p.price_vnd - discount
        tenders = [pos.Tender("cash", amount_vnd=total - points * 100)] + ([pos.Tender("points", points=points)]
                                                                          if points else [])
        rid = self.next_id("R")
        sale = pos.Sale(receipt_id=rid, sold_at=timezone.now() - timedelta(minutes=1),
                        lines=(pos.SaleLine(p.sku, qty, p.price_vnd, discount),), tenders=tuple(tenders),
                        content_hash=rid, member_phone=self.phone)
        try:
            pos.apply_sale(store=self.stores[store], sale=sale)
        except DomainError:
            return
        self.receipts.append((self.stores[store].code, rid))

    @rule(product=st.integers(0, 1), qty=st.integers(1, 2), handed_over=st.sampled_from([True, True, False]),
          points=st.sampled_from([0, 200, 200]))
    def web_order(self, product, qty, handed_over, points):
        hold_id = None
        try:
            if points:
                member = loyalty.get_or_create_member(phone=self.phone, channel=self.channel.code)[0]
                hold_id = loyalty.hold_redemption(
                    member=member, points=points, idempotency_key=self.next_id("hold"),
                    source=loyalty.PostingSource(channel=self.channel.code, actor="sm"),
                ).pk
            order = order_services.place_order(
                channel=self.channel, lines={self.products[product].sku: qty}, customer_name="Khách",
                customer_phone=self.phone, method="delivery", lat=BEN_THANH["lat"], lon=BEN_THANH["lon"], actor="sm",
                payment_state="paid", loyalty=LoyaltyInput(hold_id=hold_id),
            )
        except DomainError:
            if hold_id:
                loyalty.void_redemption(hold=hold_id, reason="order not placed", actor="sm")
            return
        if handed_over:
            deliver(order)
            self.handed_over.append(order.number)
        self.orders.append(order.number)

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def cancel_order(self, data):
        order = Order.objects.get(number=data.draw(st.sampled_from(self.orders)))
        try:
            order_services.cancel_order(order=order, actor="sm")
        except DomainError:
            pass  # goods already left: not cancellable

    @precondition(lambda self: self.receipts)
    @rule(data=st.data())
    def void_at_till(self, data):
        code, rid = data.draw(st.sampled_from(self.receipts))
        try:
            pos.void_receipt(store=next(s for s in self.stores if s.code == code), receipt_id=rid)
        except DomainError:
            pass  # refunded or returned already

    @precondition(lambda self: self.receipts)
    @rule(data=st.data(), qty=st.integers(1, 2), resellable=st.booleans())
    def refund_at_till(self, data, qty, resellable):
        code, rid = data.draw(st.sampled_from(self.receipts))
        sku = TillReceiptLine.objects.filter(receipt__receipt_id=rid, receipt__store__code=code).values_list(
            "product__sku", flat=True).first()
        refund_id = self.next_id("RF")
        try:
            services.refund_till_receipt(
                store=next(s for s in self.stores if s.code == code), receipt_id=rid, refund_id=refund_id,
                items=[services.ReturnItem(sku, qty, "resellable" if resellable else "damaged")],
                content_hash=refund_id, actor="sm")
        except DomainError:
            pass

    @precondition(lambda self: self.receipts)
    @rule(data=st.data(), at=st.integers(0, 2), qty=st.integers(1, 3), condition=conditions)
    def return_receipt(self, data, at, qty, condition):
        code, rid = data.draw(st.sampled_from(self.receipts))
        sku = TillReceiptLine.objects.filter(receipt__receipt_id=rid, receipt__store__code=code).values_list(
            "product__sku", flat=True).first()
        try:
            services.return_at_store(store=self.stores[at], items=[services.ReturnItem(sku, qty, condition)],
                                     receipt_store=code, receipt_id=rid, actor="sm")
        except DomainError:
            pass

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), at=st.integers(0, 2), qty=st.sampled_from([1, 1, 2]), condition=conditions)
    def return_order(self, data, at, qty, condition):
        number = data.draw(st.sampled_from(self.orders))
        sku = Order.objects.get(number=number).lines.values_list("product__sku", flat=True).first()
        try:
            services.return_at_store(store=self.stores[at], items=[services.ReturnItem(sku, qty, condition)],
                                     order_number=number, actor="sm")
        except DomainError:
            pass

    # Collections draw among delivered orders (return_order tries the others): drawing among every order, the
    # derandomised runs could end without a single collection opened, and the end check failed.
    @precondition(lambda self: self.handed_over)
    @rule(data=st.data(), qty=st.integers(1, 2), condition=conditions)
    def collect_order(self, data, qty, condition):
        number = data.draw(st.sampled_from(self.handed_over))
        sku = Order.objects.get(number=number).lines.values_list("product__sku", flat=True).first()
        try:
            ret = services.open_collection(channel=self.channel, order_number=number,
                                           items=[services.ReturnItem(sku, qty, condition)], lat=BEN_THANH["lat"],
                                           lon=BEN_THANH["lon"], actor="sm")
        except DomainError:
            return
        self.collections.append(ret.number)

    @precondition(lambda self: self.collections)
    @rule(data=st.data(), receive=st.booleans())
    def finish_collection(self, data, receive):
        ret = Return.objects.select_related("receiving_store").get(number=data.draw(st.sampled_from(self.collections)))
        try:
            if receive:
                services.receive_return(store=ret.receiving_store, number=ret.number, actor="sm")
            else:
                services.cancel_return(channel=self.channel, number=ret.number, actor="sm")
        except DomainError:
            pass

    @rule(write_off=st.booleans())
    def inspect(self, write_off):
        line = ReturnLine.objects.filter(disposition=Disposition.QUARANTINED,
                                         ret__receiving_store__in=self.stores).order_by("pk").first()
        if line is not None:
            services.dispose_quarantined(line=line, write_off=write_off, actor="sm")

    @invariant()
    def ledgers_balance(self):
        assert audits_clean()

    @invariant()
    def nothing_promised_that_is_not_on_the_shelf(self):
        # Units reserved for web orders or quarantined are always on hand, so online ATP is never below zero.
        assert not Stock.objects.filter(store__in=self.stores, on_hand__lt=F("reserved") + F("unavailable")).exists()

    @invariant()
    def never_more_back_than_bought(self):
        assert not TillReceiptLine.objects.filter(refunded_qty__gt=F("qty")).exists()
        assert not ReturnedOrderLine.objects.filter(returned_qty__gt=F("handed_over_qty")).exists()
        for receipt in TillReceipt.objects.filter(store__in=self.stores):
            refunded = Return.objects.filter(receipt=receipt).aggregate(v=Sum("refund_vnd", default=0))["v"]
            assert refunded <= receipt.total_vnd
            given = Return.objects.filter(receipt=receipt).aggregate(p=Sum("points_given_back", default=0))["p"]
            assert given <= receipt.points_redeemed
        for number in self.orders:
            order = Order.objects.get(number=number)
            refunded = Return.objects.filter(order=order, status=ReturnStatus.REFUNDED).aggregate(
                v=Sum("refund_vnd", default=0))["v"]
            assert refunded <= order.total_vnd - order.delivery_fee_vnd  # the goods, never the fee
            given = Return.objects.filter(order=order).aggregate(p=Sum("points_given_back", default=0))["p"]
            assert given <= order.points_redeemed


def test_returns_sales_orders_and_cancellations_keep_both_ledgers_clean():
    # 12 runs: since till refunds became returns (one refund door) the derandomised 10 first runs no longer reach a
    # received courier collection; the end check below asks that the mix exercise every kind.
    run_state_machine_as_test(
        ReturnsMachine,
        settings=settings(max_examples=12, stateful_step_count=30, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]),
    )
    assert all(SEEN.values()), SEEN  # the mix really returned, collected and quarantined goods
