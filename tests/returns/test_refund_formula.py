"""One refund formula for both doors a till receipt can come back through: the selling till's refund
(POST /api/v1/pos/sales/{id}/refunds/) and a return at any store (POST /api/v1/pos/returns/). Both go through
orders.returns.services, so the money is cumulative per line: the units refunded so far decide the money, and
refunding a line unit by unit gives back exactly what was paid."""

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.models import Posting, PostingKind
from orders.pos import services as pos
from orders.pos.models import TillReceipt
from orders.returns import services as returns
from tests.factories import ProductFactory, StoreFactory
from tests.returns.conftest import PHONE, audits_clean, give_points, put_stock, till

pytestmark = pytest.mark.django_db
_ids = itertools.count(1)


def _sell(store, lines, *, points: int = 0, phone: str | None = PHONE) -> str:
    """A till sale of `lines` [(product, qty, unit price, line discount)], paid in cash and `points` points."""
    rid = f"RF-{next(_ids)}"
    total = sum(qty * price - discount for _, qty, price, discount in lines)
    tenders = [pos.Tender("cash", amount_vnd=total - points * 100)] + ([pos.Tender("points", points=points)] if points else [])
    sale = pos.Sale(
        receipt_id=rid, sold_at=timezone.now() - timedelta(minutes=1),
        lines=tuple(pos.SaleLine(p.sku, qty, price, discount) for p, qty, price, discount in lines),
        tenders=tuple(tenders), content_hash=rid, member_phone=phone,
    )
    pos.apply_sale(store=store, sale=sale)
    return rid


def _points_back(rid: str) -> tuple[int, int]:
    """(points reversed of the receipt's earning, points given back of its redemption), from the ledger."""
    receipt = TillReceipt.objects.get(receipt_id=rid)

    def corrected(posting_id, kind) -> int:
        if not posting_id:
            return 0
        return sum(abs(p) for p in Posting.objects.filter(kind=kind, original_id=posting_id).values_list("points", flat=True))

    return corrected(receipt.earn_posting_id, PostingKind.REVERSE), corrected(receipt.redeem_posting_id, PostingKind.REFUND)


def _posted(posting_id) -> int:
    return abs(Posting.objects.get(pk=posting_id).points) if posting_id else 0


@pytest.fixture
def two_stores(db):
    a = StoreFactory(code="HCM-Q1-101", name="Q1", lat=10.7743, lon=106.7038)
    b = StoreFactory(code="HCM-Q3-101", name="Q3", lat=10.7835, lon=106.6870)
    return a, b


def test_a_100_vnd_line_of_3_units_refunded_unit_by_unit_at_the_till_gives_back_100(two_stores):
    """The bug the two doors had: the till floored each refund on its own (33 + 33 + 33 = 99 ₫)."""
    store, _ = two_stores
    item = ProductFactory(sku="KEO-1", price_vnd=100, category="banh-keo")
    put_stock(store, item, 10)
    rid = _sell(store, [(item, 3, 100, 200)], phone=None)  # 3 × 100 ₫ less 200 ₫: the line paid 100 ₫
    client = till(store)
    amounts = []
    for n in range(3):
        answer = client.post(f"/api/v1/pos/sales/{rid}/refunds/",
                             {"refund_id": f"{rid}-back-{n}", "lines": [{"sku": "KEO-1", "qty": 1}]}, format="json")
        assert answer.status_code == 201, answer.content
        amounts.append(answer.json()["amount_vnd"])
    assert amounts == [33, 33, 34]
    assert sum(amounts) == 100
    refused = client.post(f"/api/v1/pos/sales/{rid}/refunds/",
                          {"refund_id": f"{rid}-back-x", "lines": [{"sku": "KEO-1", "qty": 1}]}, format="json")
    assert refused.status_code == 409 and refused.json()["code"] == "refund_exceeds_sale"
    assert audits_clean()


def test_a_till_refund_replays_and_refuses_a_reused_id_like_before(two_stores):
    store, _ = two_stores
    item = ProductFactory(sku="KEO-2", price_vnd=30_000, category="banh-keo")
    put_stock(store, item, 10)
    rid = _sell(store, [(item, 2, 30_000, 0)])
    client = till(store)
    body = {"refund_id": f"{rid}-1", "lines": [{"sku": "KEO-2", "qty": 1, "resellable": False}]}
    first = client.post(f"/api/v1/pos/sales/{rid}/refunds/", body, format="json")
    again = client.post(f"/api/v1/pos/sales/{rid}/refunds/", body, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert first.json()["lines"] == [{"sku": "KEO-2", "qty": 1, "resellable": False}]
    other = client.post(f"/api/v1/pos/sales/{rid}/refunds/", {**body, "lines": [{"sku": "KEO-2", "qty": 2}]},
                        format="json")
    assert other.status_code == 422 and other.json()["code"] == "receipt_id_reused"
    unknown = client.post("/api/v1/pos/sales/NOPE/refunds/", {"refund_id": "x", "lines": [{"sku": "KEO-2", "qty": 1}]},
                          format="json")
    assert unknown.status_code == 404 and unknown.json()["code"] == "receipt_not_found"
    assert audits_clean()


line_st = st.tuples(st.integers(1, 5), st.integers(1, 250_000), st.integers(0, 100))  # qty, unit price, discount %
step_st = st.tuples(st.integers(0, 2), st.integers(1, 3), st.sampled_from(["till", "here", "other"]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line_st, min_size=1, max_size=3), steps=st.lists(step_st, min_size=1, max_size=8),
       pay_points=st.booleans())
def test_any_sequence_of_partial_refunds_gives_the_same_money_and_points_through_either_door(
    two_stores, lines, steps, pay_points
):
    """The same receipt sold twice; the same partial refunds, once through the doors drawn (the selling till, a
    return at the selling store, a return at another store) and once through the other door. Step by step the money
    and the points are identical; the money never exceeds what was paid; all units back means exactly what was paid,
    every earned point reversed and every spent point given back."""
    here, other = two_stores
    n = next(_ids)
    products = [ProductFactory(sku=f"HY-{n}-{i}", price_vnd=price, category="ao-thun")
                for i, (_, price, _) in enumerate(lines)]
    for p in products:
        put_stock(here, p, 100)
    sale_lines = [(p, qty, price, qty * price * pct // 100) for p, (qty, price, pct) in zip(products, lines, strict=True)]
    total = sum(qty * price - discount for _, qty, price, discount in sale_lines)
    points = min(total // 100 // 2, 300) if pay_points else 0
    if points:
        give_points(2 * points)
    receipts = [_sell(here, sale_lines, points=points), _sell(here, sale_lines, points=points)]
    flip = {"till": "here", "here": "till", "other": "till"}
    left = [qty for _, qty, _, _ in sale_lines]
    refunded = [[], []]
    for index, (line, qty, door) in enumerate(steps):
        line %= len(sale_lines)
        qty = min(qty, left[line])
        if qty == 0:
            continue
        left[line] -= qty
        sku = sale_lines[line][0].sku
        for k, (rid, how) in enumerate(zip(receipts, (door, flip[door]), strict=True)):
            item = returns.ReturnItem(sku=sku, qty=qty)
            if how == "till":
                result, replayed = returns.refund_till_receipt(
                    store=here, receipt_id=rid, refund_id=f"{rid}-{index}", items=[item], content_hash=f"h{index}",
                    actor="test")
                assert not replayed
                refunded[k].append(result["amount_vnd"])
            else:
                ret = returns.return_at_store(store=here if how == "here" else other, items=[item],
                                              receipt_store=here.code, receipt_id=rid, actor="test")
                refunded[k].append(ret.refund_vnd)
        assert refunded[0] == refunded[1]
        assert _points_back(receipts[0]) == _points_back(receipts[1])
    assert sum(refunded[0]) <= total
    if not any(left):
        assert sum(refunded[0]) == total
        receipt = TillReceipt.objects.get(receipt_id=receipts[0])
        assert _points_back(receipts[0]) == (_posted(receipt.earn_posting_id), _posted(receipt.redeem_posting_id))
    assert audits_clean()
