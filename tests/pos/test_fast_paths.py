"""The POS's fast path and its ORM twin (orders/pos/fast_paths.py) give the same answers and write the same rows:
one batch of receipts synced at two identical stores, once with COPY and once with bulk_create — stock, points and
prices (the receipts' codes, promotions and override, the price exceptions they queue, the codes they consume)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from inventory import services as stock_services
from inventory.models import Reservation, Stock, StockMovement, TakenReservation
from inventory.services import StockLine
from loyalty import services as loyalty
from loyalty.models import Posting
from o2o.fast_paths import orm_twins
from orders.pos.models import TillReceipt, TillReceiptLine
from orders.pricing import services as pricing
from orders.pricing.models import Code, CodeUse, PriceException, Promotion, PromotionApplication
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory
from tests.pos.conftest import audits_clean, receipt, store_client, sync

pytestmark = pytest.mark.django_db

PHONES = ("0912345678", "0912345679")  # one member per store, so each run starts from the same balance


def _batch(phone: str, sold_at) -> list[dict]:
    return [
        # The open coupon's 5,000 ₫ not taken off by the till: above the policy.
        receipt([("PX-AO", 2, 150_000), ("PX-NON", 1)], rid="PX-1", phone=phone, sold_at=sold_at, codes=["PX-OPEN"],
                promotions=[{"promotion": "px-5k", "code": "PX-OPEN", "discount_vnd": 0}]),
        receipt([("PX-AO", 1, 120_000)], rid="PX-2", sold_at=sold_at,  # a manager's price
                price_override={"reason": "last one", "staff_id": "QL-1"}),
        receipt([("PX-NON", 9)], rid="PX-3", sold_at=sold_at),  # free units, then held ones, then a shortfall
        receipt([("PX-AO", 1, 150_000)], rid="PX-1", phone=phone, sold_at=sold_at),  # a reused id, other content
        receipt([("PX-AO", 1, 150_000)], rid="PX-4", phone=phone, sold_at=sold_at,  # points refused: takes nothing
                tenders=[{"type": "points", "points": 1_500}]),
    ]


# Per scenario: (on hand, units of a checkout hold) of PX-AO and of PX-NON at each store.
SCENARIOS = {
    "on-the-ledger": ((5, 0), (20, 0)),  # every unit free at the till
    "takes-holds": ((4, 2), (10, 3)),  # PX-2 takes 1 held PX-AO, PX-3 takes 3 held PX-NON; nothing beyond
    "shortfall": ((4, 2), (3, 1)),  # PX-3 takes the last free and the held PX-NON, 7 beyond the ledger
}


def _answer(response, store, phone: str) -> str:
    """The sync answer with the store's own code and member taken out (the two runs differ by them alone)."""
    member = "+84" + phone[1:]
    return json.dumps(response.json(), sort_keys=True).replace(store.code, "<store>").replace(member, "<member>")


def _rows(store) -> dict:
    def strip(values: list[dict]) -> list[dict]:
        def plain(value) -> str:
            text = str(value).replace(store.code, "<store>")
            for phone in PHONES:
                text = text.replace("+84" + phone[1:], "<member>")
            return text

        return sorted(tuple(sorted((k, plain(v)) for k, v in row.items())) for row in values)

    receipts = TillReceipt.objects.filter(store=store)
    return {
        "receipts": strip(list(receipts.values("receipt_id", "total_vnd", "money_vnd", "points_redeemed", "status",
                                               "result"))),
        "lines": strip(list(TillReceiptLine.objects.filter(receipt__store=store).values(
            "receipt__receipt_id", "product__sku", "qty", "unit_price_vnd", "discount_vnd", "taken", "shortfall"))),
        "movements": strip(list(StockMovement.objects.filter(store=store).exclude(reason="opening").values(
            "product__sku", "reason", "delta_on_hand", "delta_reserved", "delta_unavailable", "delta_shortfall",
            "reference", "note"))),
        "stock": strip(list(Stock.objects.filter(store=store).values("product__sku", "on_hand", "reserved",
                                                                     "shortfall", "needs_count"))),
        "reservations": strip(list(Reservation.objects.filter(store=store).values("product__sku", "reference",
                                                                                  "quantity"))),
        "taken": strip(list(TakenReservation.objects.filter(store=store).values(
            "product__sku", "reference", "units", "kind", "cause", "outcome"))),
        "pending": TakenReservation.objects.filter(store=store, reconciled_at__isnull=True).count(),
        "points": sorted(Posting.objects.filter(store=store.code).values_list("kind", "points", "amount_vnd")),
        "pricing": strip(list(receipts.values("receipt_id", "pricing"))),
        "exceptions": strip(list(PriceException.objects.filter(store=store).values(
            "receipt_id", "kind", "sku", "qty", "expected_vnd", "charged_vnd", "difference_vnd", "detail",
            "override_reason", "override_staff"))),
        "code_uses": strip(list(CodeUse.objects.filter(store=store.code).values("code__code", "reference", "status",
                                                                                 "discount_vnd"))),
        "applications": strip(list(PromotionApplication.objects.filter(store=store.code).values(
            "promotion__code", "reference", "channel", "discount_vnd", "revenue_vnd"))),
    }


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_copy_and_bulk_create_sync_the_same_batch_identically(scenario):
    (ao_units, ao_held), (non_units, non_held) = SCENARIOS[scenario]
    ao, non = ProductFactory(sku="PX-AO", price_vnd=150_000), ProductFactory(sku="PX-NON", price_vnd=100_000)
    coupon = Promotion.objects.create(code="px-5k", name="5,000 ₫ off", kind="amount_off", amount_vnd=5_000,
                                      requires_code=True)
    Code.objects.create(code="PX-OPEN", promotion=coupon, max_uses=None)
    pricing.policy_changed()
    stores = [StoreFactory(code=f"PX-{scenario[:5].upper()}-{i}") for i in range(2)]
    for store, phone in zip(stores, PHONES, strict=True):
        put_stock(store, ao, ao_units)
        put_stock(store, non, non_units)
        for product, held in ((ao, ao_held), (non, non_held)):
            if held:
                stock_services.reserve_stock(lines=[StockLine(store.pk, product.pk, held)],
                                             reference=f"hold:{store.code}-{product.sku}", actor="test")
        loyalty.get_or_create_member(phone=phone)
    sold_at = timezone.now() - timedelta(minutes=1)
    sql = sync(store_client(stores[0]), _batch(PHONES[0], sold_at))
    with orm_twins():
        orm = sync(store_client(stores[1]), _batch(PHONES[1], sold_at))
    assert sql.status_code == orm.status_code == 200
    assert _answer(sql, stores[0], PHONES[0]) == _answer(orm, stores[1], PHONES[1])
    statuses = [o["status"] for o in sql.json()["results"]]
    assert statuses == ["applied", "applied", "applied", "rejected", "rejected"], sql.json()
    first, second = _rows(stores[0]), _rows(stores[1])
    assert first["receipts"] and first["movements"]
    assert first == second
    assert first["pending"] == 0  # every take reconciled in the request
    kinds = sorted((dict(e)["receipt_id"], dict(e)["kind"]) for e in first["exceptions"])
    assert kinds == [("PX-1", "above_policy"), ("PX-1", "above_policy"), ("PX-2", "override")]
    assert len(first["code_uses"]) == 1 and dict(first["code_uses"][0])["status"] == "consumed"
    row = Stock.objects.get(store=stores[0], product=non)
    if scenario == "on-the-ledger":
        assert not first["taken"] and row.shortfall == 0 and not row.needs_count
    elif scenario == "takes-holds":
        assert sorted((t.product.sku, t.units) for t in TakenReservation.objects.filter(store=stores[0])) == [
            ("PX-AO", 1), ("PX-NON", 3)]
        assert row.shortfall == 0 and not row.needs_count
    else:
        assert (row.on_hand, row.reserved, row.shortfall, row.needs_count) == (0, 0, 7, True)
    assert audits_clean()
