"""Returns give back what the goods really cost under the pricing engine (issue #19): each line's net is what the
engine charged for it (qty × unit price less its share of every promotion and code), so the free item of a
buy-2-get-1 refunds its net (here 0), a bundle's items their share of the bundle price, a cart discount is spread as
the engine spread it; the delivery fee is no line's and is never refunded by a return; units returned one by one add
up to exactly the line's net and never more; points earned are reversed on the money really refunded.

The orders are placed through the orders service and then charged as the engine priced their cart
(orders.pricing.services.price), which is what placement stores."""

import itertools
import math
from collections import defaultdict
from fractions import Fraction

import pytest
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from loyalty.models import Posting, PostingKind
from orders.models import Order, OrderLine
from orders.pos import services as pos
from orders.pos.models import TillReceipt
from orders.pricing import engine, selectors
from orders.pricing import services as pricing
from orders.pricing.models import Promotion
from orders.returns import services as returns
from orders.returns.exceptions import ReturnExceedsPurchase
from orders.returns.models import Return, ReturnLine
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory
from tests.returns.conftest import PHONE, audits_clean, deliver, give_points, web_order

pytestmark = pytest.mark.django_db
_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_policy():
    """Each test's promotions only: the process-wide cached policy may hold another test's (rolled back) rows."""
    selectors.forget_cached_policy()
    yield
    selectors.forget_cached_policy()


@pytest.fixture
def shop(db):
    """A store near Bến Thành (web orders ship from it; returns come back to `counter`), shirts and trousers."""
    store = StoreFactory(code="HCM-Q1-301", name="Q1 Lê Lợi", lat=10.7743, lon=106.7038)
    counter = StoreFactory(code="HCM-Q3-301", name="Q3 Võ Văn Tần", lat=10.7835, lon=106.6870)
    products = {
        sku: ProductFactory(sku=sku, price_vnd=price, category=category)
        for sku, price, category in (
            ("AO-POLO", 250_000, "ao-thun"), ("AO-TRON", 200_000, "ao-thun"), ("AO-BA-LO", 120_000, "ao-thun"),
            ("QUAN-KAKI", 300_000, "quan"), ("NON-LUOI", 90_000, "phu-kien"),
        )
    }
    for p in products.values():
        put_stock(store, p, 20)
    return {"store": store, "counter": counter, **products}


def _promotion(**fields) -> Promotion:
    pricing.check_promotion(fields)
    promo = Promotion.objects.create(**fields)
    pricing.policy_changed()
    return promo


def buy_2_get_1() -> Promotion:
    return _promotion(code="ao-mua-2-tang-1", name="Áo thun: mua 2 tặng 1", kind=engine.Kind.BUY_X_GET_Y,
                      target=engine.Target.CATEGORY, categories=["ao-thun"], buy_qty=2, get_qty=1, percent=100,
                      exclusive=True)


def charge(order: Order, priced: engine.PricedCart, *, fee_vnd: int = 0) -> Order:
    """Write the engine's prices on the order as placement stores them: each line's unit price and its share of the
    discounts, the order's discount, fee and breakdown."""
    by_sku = {line.sku: line for line in priced.lines}
    for line in OrderLine.objects.filter(order=order).select_related("product"):
        p = by_sku[line.product.sku]
        assert p.qty == line.qty
        OrderLine.objects.filter(pk=line.pk).update(unit_price_vnd=p.unit_price_vnd, discount_vnd=p.discount_vnd)
    Order.objects.filter(pk=order.pk).update(
        subtotal_vnd=priced.subtotal_vnd, discount_vnd=priced.discount_vnd, delivery_fee_vnd=fee_vnd,
        total_vnd=priced.total_vnd + fee_vnd, pricing=pricing.priced_json(priced),
    )
    return Order.objects.get(pk=order.pk)


def priced_order(channel, lines: dict[str, int], *, fee_vnd: int = 0, points: int = 0) -> tuple[Order, engine.PricedCart]:
    """A web order of `lines`, charged as the engine prices the cart, delivered (it completes and earns when a
    member's: with `points`, part of it is paid with points)."""
    priced = pricing.price(channel=channel.code, lines=lines, member_phone=None)
    order = web_order(channel, lines, member=bool(points), points=points)
    return deliver(charge(order, priced, fee_vnd=fee_vnd)), priced


def give_back(store, order: Order, sku: str, qty: int = 1) -> Return:
    return returns.return_at_store(store=store, items=[returns.ReturnItem(sku=sku, qty=qty)],
                                   order_number=order.number, actor="test")


def refunded_per_line(order: Order) -> dict[str, int]:
    return dict(ReturnLine.objects.filter(ret__order=order).values("product__sku")
                .annotate(v=Sum("refund_vnd")).values_list("product__sku", "v"))


def test_the_free_item_of_a_buy_2_get_1_refunds_what_it_cost_and_all_refunds_the_goods_total(shop, channel):
    buy_2_get_1()
    order, priced = priced_order(channel, {"AO-POLO": 1, "AO-TRON": 1, "AO-BA-LO": 1})
    # The cheapest of the three is free: its line cost nothing.
    assert priced.line("AO-BA-LO").net_vnd == 0 and priced.total_vnd == 450_000
    assert OrderLine.objects.get(order=order, product=shop["AO-BA-LO"]).discount_vnd == 120_000

    free = give_back(shop["counter"], order, "AO-BA-LO")
    assert (free.refund_vnd, free.refund_money_vnd) == (0, 0)
    assert not free.refunds.exists()
    paid = [give_back(shop["counter"], order, sku) for sku in ("AO-POLO", "AO-TRON")]
    assert [r.refund_vnd for r in paid] == [250_000, 200_000]
    assert free.refund_vnd + sum(r.refund_vnd for r in paid) == order.total_vnd == priced.total_vnd
    assert audits_clean()


def test_units_of_one_buy_2_get_1_line_come_back_one_by_one_to_exactly_what_was_paid(shop, channel):
    buy_2_get_1()
    order, priced = priced_order(channel, {"AO-TRON": 5, "NON-LUOI": 1})
    line = priced.line("AO-TRON")
    assert (line.gross_vnd, line.discount_vnd, line.net_vnd) == (1_000_000, 200_000, 800_000)  # one unit in 5 free
    amounts = [give_back(shop["counter"], order, "AO-TRON").refund_vnd for _ in range(5)]
    assert amounts == [160_000] * 5
    assert sum(amounts) == line.net_vnd
    with pytest.raises(ReturnExceedsPurchase):
        give_back(shop["counter"], order, "AO-TRON")
    assert give_back(shop["counter"], order, "NON-LUOI").refund_vnd == priced.line("NON-LUOI").net_vnd == 90_000
    assert sum(r.refund_vnd for r in Return.objects.filter(order=order)) == order.total_vnd
    assert audits_clean()


def test_a_bundles_items_refund_their_share_of_the_bundle_price(shop, channel):
    _promotion(code="combo-ao-quan", name="Combo áo + quần 400.000 ₫", kind=engine.Kind.BUNDLE,
               target=engine.Target.SKU, skus=["AO-TRON", "QUAN-KAKI"], bundle=[["AO-TRON", 1], ["QUAN-KAKI", 1]],
               bundle_price_vnd=400_000)
    order, priced = priced_order(channel, {"AO-TRON": 2, "QUAN-KAKI": 1})
    # One bundle (200,000 + 300,000 for 400,000): the 100,000 saved is shared 2:3 by the bundled units' values.
    assert priced.line("AO-TRON").discount_vnd == 40_000 and priced.line("QUAN-KAKI").discount_vnd == 60_000
    trousers = give_back(shop["counter"], order, "QUAN-KAKI")
    assert trousers.refund_vnd == 240_000
    shirts = [give_back(shop["counter"], order, "AO-TRON").refund_vnd for _ in range(2)]
    assert shirts == [180_000, 180_000]
    assert trousers.refund_vnd + sum(shirts) == priced.total_vnd == 600_000
    assert audits_clean()


def test_a_cart_discount_is_refunded_as_the_engine_spread_it_and_the_delivery_fee_never(shop, channel):
    _promotion(code="mua-500k-giam-50k", name="Mua 500.000 ₫ giảm 50.000 ₫", kind=engine.Kind.SPEND_THRESHOLD,
               target=engine.Target.CART, min_spend_vnd=500_000, amount_vnd=50_000)
    order, priced = priced_order(channel, {"AO-TRON": 2, "QUAN-KAKI": 1}, fee_vnd=25_000)
    assert order.total_vnd == 700_000 - 50_000 + 25_000
    # 50,000 over 400,000 and 300,000 by the largest remainder: 28,571.4 and 21,428.6.
    assert [priced.line(s).discount_vnd for s in ("AO-TRON", "QUAN-KAKI")] == [28_571, 21_429]
    lines = {line.product.sku: line for line in OrderLine.objects.filter(order=order).select_related("product")}
    assert lines["AO-TRON"].discount_vnd == 28_571
    got = [give_back(shop["counter"], order, "AO-TRON").refund_vnd for _ in range(2)]
    assert got == [185_714, 185_715]
    got.append(give_back(shop["counter"], order, "QUAN-KAKI").refund_vnd)
    assert got[-1] == 278_571
    assert sum(got) == priced.total_vnd == order.total_vnd - order.delivery_fee_vnd  # the fee stays paid
    money = Return.objects.filter(order=order).aggregate(m=Sum("refund_money_vnd"))["m"]
    assert money == 650_000
    assert audits_clean()


def test_points_are_reversed_on_the_money_really_paid(shop, channel):
    """A member pays 100,000 ₫ of a buy-2-get-1 order with 1,000 points and the rest, with a 15,000 ₫ delivery fee,
    in money. The free item refunds nothing and reverses nothing (a reversal on gross value would take back points
    for goods that cost nothing); all the goods back give back every point spent and reverse the points earned on
    their money: the earning's share of the money it was earned on (the fee, not refunded, would keep its own)."""
    buy_2_get_1()
    order, priced = priced_order(channel, {"AO-POLO": 1, "AO-TRON": 1, "AO-BA-LO": 1}, fee_vnd=15_000, points=1_000)
    assert order.status == "completed" and order.earn_posting_id and order.points_tender_vnd == 100_000
    earning = Posting.objects.get(pk=order.earn_posting_id)
    goods_money = priced.total_vnd - order.points_tender_vnd  # 350,000: points paid goods, money the rest

    free = give_back(shop["counter"], order, "AO-BA-LO")
    assert (free.refund_vnd, free.points_given_back, free.points_reversed) == (0, 0, 0)

    polo = give_back(shop["counter"], order, "AO-POLO")
    assert polo.refund_vnd == 250_000
    assert polo.refund_money_vnd == goods_money * 250_000 // 450_000
    assert polo.points_given_back == math.ceil(1_000 * 250_000 / 450_000)
    money_back = Fraction(goods_money * 250_000, 450_000)
    assert polo.points_reversed == math.floor(earning.points * money_back / earning.amount_vnd) > 0

    rest = give_back(shop["counter"], order, "AO-TRON")
    all_back = Return.objects.filter(order=order)
    assert sum(r.refund_vnd for r in all_back) == priced.total_vnd
    assert sum(r.refund_money_vnd for r in all_back) == goods_money
    assert sum(r.points_given_back for r in all_back) == 1_000
    reversed_points = sum(r.points_reversed for r in all_back)
    assert reversed_points == earning.points * goods_money // earning.amount_vnd
    assert reversed_points == sum(Posting.objects.filter(original=earning, kind=PostingKind.REVERSE)
                                  .values_list("points", flat=True))
    assert rest.refund_vnd == 200_000
    assert audits_clean()


def test_a_till_receipt_with_line_discounts_refunds_each_lines_net_and_points_on_its_money(shop):
    """The till prices with the same engine (channel "store") and sends each line's discount; a return at another
    store refunds the free item nothing and everything back exactly the receipt's total, all points restored."""
    buy_2_get_1()
    store = shop["store"]
    lines = {"AO-POLO": 1, "AO-TRON": 2}
    priced = pricing.price(channel=settings.PRICING_TILL_CHANNEL, lines=lines, store=store, member_phone=None)
    # Units at 250,000, 200,000, 200,000: one of the AO-TRON units is free, so that line paid 200,000 for two.
    assert priced.line("AO-TRON").net_vnd == 200_000 and priced.total_vnd == 450_000
    give_points(1_000)
    rid = f"RP-{next(_ids)}"
    pos.apply_sale(store=store, sale=pos.Sale(
        receipt_id=rid, sold_at=timezone.now(), content_hash=rid, member_phone=PHONE,
        lines=tuple(pos.SaleLine(x.sku, x.qty, x.unit_price_vnd, x.discount_vnd) for x in priced.lines),
        tenders=(pos.Tender("cash", amount_vnd=priced.total_vnd - 50_000), pos.Tender("points", points=500)),
    ))
    receipt = TillReceipt.objects.get(store=store, receipt_id=rid)
    earning = Posting.objects.get(pk=receipt.earn_posting_id)

    def back(sku: str) -> Return:
        return returns.return_at_store(store=shop["counter"], items=[returns.ReturnItem(sku=sku, qty=1)],
                                       receipt_store=store.code, receipt_id=rid, actor="test")

    got = [back("AO-TRON"), back("AO-TRON"), back("AO-POLO")]
    assert [r.refund_vnd for r in got] == [100_000, 100_000, 250_000]
    assert sum(r.refund_vnd for r in got) == receipt.total_vnd
    assert sum(r.refund_money_vnd for r in got) == receipt.money_vnd == 400_000
    assert sum(r.points_given_back for r in got) == 500
    assert sum(r.points_reversed for r in got) == earning.points
    assert got[0].points_reversed == math.floor(earning.points * 100_000 / 450_000)
    assert audits_clean()


line_st = st.tuples(st.integers(1, 4), st.integers(1, 300_000), st.integers(0, 100))  # qty, unit price, discount %
step_st = st.tuples(st.integers(0, 2), st.integers(1, 3))  # (line, units)


@hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line_st, min_size=1, max_size=3), steps=st.lists(step_st, min_size=1, max_size=10),
       fee=st.sampled_from([0, 15_000, 35_000]))
def test_any_return_sequence_refunds_at_most_each_lines_net_and_exactly_it_when_all_is_back(shop, channel, lines,
                                                                                            steps, fee):
    """Random lines with random discounts (up to free) and a fee; returns of random units in random order. After
    every return no line has been refunded more than its net; once all units are back every line has been refunded
    exactly its net and the order exactly its goods total, never the fee."""
    n = next(_ids)
    products = [ProductFactory(sku=f"PR-{n}-{i}", price_vnd=price, category="ao-thun")
                for i, (_, price, _) in enumerate(lines)]
    for p in products:
        put_stock(shop["store"], p, 10)
    order = web_order(channel, {p.sku: qty for p, (qty, _, _) in zip(products, lines, strict=True)})
    nets = {}
    for p, (qty, price, pct) in zip(products, lines, strict=True):
        discount = qty * price * pct // 100
        OrderLine.objects.filter(order=order, product=p).update(unit_price_vnd=price, discount_vnd=discount)
        nets[p.sku] = qty * price - discount
    goods = sum(nets.values())
    subtotal = sum(qty * price for qty, price, _ in lines)
    Order.objects.filter(pk=order.pk).update(subtotal_vnd=subtotal, discount_vnd=subtotal - goods,
                                             delivery_fee_vnd=fee, total_vnd=goods + fee)
    order = deliver(Order.objects.get(pk=order.pk))
    left = {p.sku: qty for p, (qty, _, _) in zip(products, lines, strict=True)}
    skus = list(left)

    def check() -> dict[str, int]:
        got = defaultdict(int, refunded_per_line(order))
        assert all(got[sku] <= nets[sku] for sku in skus), (got, nets)
        return got

    for line, units in steps:
        sku = skus[line % len(skus)]
        units = min(units, left[sku])
        if units:
            give_back(shop["counter"], order, sku, units)
            left[sku] -= units
            check()
    for sku in skus:  # the rest, one unit at a time
        while left[sku]:
            give_back(shop["counter"], order, sku)
            left[sku] -= 1
    got = check()
    assert dict(got) == nets
    assert sum(r.refund_vnd for r in Return.objects.filter(order=order)) == goods == order.total_vnd - fee
    assert audits_clean()
