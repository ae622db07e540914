import itertools

import pytest
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.test import APIClient

from inventory.models import Stock
from inventory.selectors import reservation_differences, stock_ledger_differences
from loyalty import selectors as loyalty_selectors
from loyalty import services as loyalty
from loyalty.models import Member
from orders import services as order_services
from orders.loyalty_tender import LoyaltyInput
from orders.models import FulfillmentStatus, Order, OrderLine
from orders.pos.models import StoreApiKey
from orders.pricing.engine import prorate
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

S = FulfillmentStatus
_ids = itertools.count(1)
PHONE = "0901234567"
BEN_THANH = {"lat": 10.7725, "lon": 106.6980}


def till(store, name="till-1") -> APIClient:
    _, key = StoreApiKey.objects.create_key(name=name, store=store)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def key() -> str:
    return f"k-{next(_ids)}"


def stock_of(store, product) -> Stock:
    return Stock.objects.get(store=store, product=product)


def audits_clean() -> bool:
    return (
        stock_ledger_differences() == []
        and reservation_differences() == []
        and loyalty_selectors.ledger_differences() == []
        and loyalty_selectors.unbalanced_postings() == []
        and loyalty_selectors.negative_counters() == 0
    )


def member_available(phone: str = PHONE) -> int:
    return Member.objects.get(pk=loyalty_selectors.member_by_phone(phone).pk).available


def deliver(order: Order) -> Order:
    """Walk every fulfillment to the customer (delivered, or collected for pickups) through the orders service."""
    for f in order.fulfillments.order_by("pk"):
        steps = [S.PICKING, S.PACKED] + (
            [S.READY_FOR_PICKUP, S.COLLECTED] if f.method == "pickup" else [S.HANDED_TO_COURIER, S.DELIVERED]
        )
        for to in steps:
            order_services.transition_fulfillment(fulfillment=f.pk, to=to, actor="test")
    return Order.objects.get(pk=order.pk)


def give_points(points: int, phone: str = PHONE) -> None:
    """Credit `points` available points (a till earning at the base rate)."""
    member, _ = loyalty.get_or_create_member(phone=phone, channel="pos")
    loyalty.earn_points(member=member, amount_paid_vnd=points * 10_000,
                        source=loyalty.PostingSource(channel="pos", actor="test"), idempotency_key=key())


def web_order(channel, lines: dict[str, int], *, lat=BEN_THANH["lat"], lon=BEN_THANH["lon"], member: bool = False,
              points: int = 0, discount_vnd: int = 0) -> Order:
    """An online order through the orders service. With `member` it earns when it completes; with `points` part of
    it is paid with a points hold captured at placement (orders.loyalty_tender). `discount_vnd` is a cart-level
    promotion written as placement records one: on the order, and spread over its lines by their value (the pricing
    engine's largest remainder), so the lines' discounts add up to the order's."""
    loyalty_input = None
    if member or points:
        hold_id = None
        if points:
            give_points(points * 2)
            m, _ = loyalty.get_or_create_member(phone=PHONE, channel=channel.code)
            hold_id = loyalty.hold_redemption(
                member=m, points=points, idempotency_key=key(),
                source=loyalty.PostingSource(channel=channel.code, actor="test"),
            ).pk
        loyalty_input = LoyaltyInput(hold_id=hold_id)
    order = order_services.place_order(
        channel=channel, lines=lines, customer_name="Nguyễn Văn A", customer_phone=PHONE, method="delivery",
        lat=lat, lon=lon, actor="test", payment_state="paid", loyalty=loyalty_input,
    )
    if discount_vnd:
        with transaction.atomic():
            lines = list(OrderLine.objects.filter(order=order).order_by("pk"))
            shares = prorate(discount_vnd, [line.qty * line.unit_price_vnd - line.discount_vnd for line in lines])
            for line, share in zip(lines, shares, strict=True):
                OrderLine.objects.filter(pk=line.pk).update(discount_vnd=F("discount_vnd") + share)
            Order.objects.filter(pk=order.pk).update(discount_vnd=F("discount_vnd") + discount_vnd,
                                                     total_vnd=F("total_vnd") - discount_vnd)
    return Order.objects.get(pk=order.pk)


def till_sale(client, lines, *, rid=None, tenders=None, phone=None) -> dict:
    """A receipt through the POS sales API: lines (sku, qty, unit price[, discount])."""
    body_lines = [
        {"sku": sku, "qty": qty, "unit_price_vnd": price, **({"discount_vnd": rest[0]} if rest else {})}
        for sku, qty, price, *rest in lines
    ]
    total = sum(x["qty"] * x["unit_price_vnd"] - x.get("discount_vnd", 0) for x in body_lines)
    body = {
        "receipt_id": rid or f"R-{next(_ids):06d}",
        "sold_at": timezone.now().isoformat(),
        "lines": body_lines,
        "tenders": tenders if tenders is not None else [{"type": "cash", "amount_vnd": total}],
    }
    if phone:
        body["member_phone"] = phone
    response = client.post("/api/v1/pos/sales/", {"receipts": [body]}, format="json")
    assert response.status_code == 200, response.content
    outcome = response.json()["results"][0]
    assert outcome["status"] == "applied", outcome
    return body


def till_return(client, body: dict, *, idem: str | None = None):
    return client.post("/api/v1/pos/returns/", body, format="json", HTTP_IDEMPOTENCY_KEY=idem or key())


@pytest.fixture
def chain(db):
    """Three stores around Bến Thành: the web order ships from `near`; returns come back at `mid` or `far`.
    A shirt (30-day window), a household item (7 days) and underwear (not returnable)."""
    near = StoreFactory(code="HCM-Q1-001", name="Q1 Lê Lợi", lat=10.7743, lon=106.7038)
    mid = StoreFactory(code="HCM-Q3-001", name="Q3 Võ Văn Tần", lat=10.7835, lon=106.6870)
    far = StoreFactory(code="HCM-Q7-001", name="Q7 Phú Mỹ Hưng", lat=10.7295, lon=106.7218)
    shirt = ProductFactory(sku="AO-THUN-M", price_vnd=200_000, category="ao-thun")
    pot = ProductFactory(sku="NOI-INOX", price_vnd=300_000, category="gia-dung")
    brief = ProductFactory(sku="QUAN-LOT", price_vnd=100_000, category="do-lot")
    for store in (near, mid, far):
        for product in (shirt, pot, brief):
            put_stock(store, product, 10)
    return {"near": near, "mid": mid, "far": far, "shirt": shirt, "pot": pot, "brief": brief}
