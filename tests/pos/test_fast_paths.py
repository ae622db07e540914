"""The POS's fast path and its ORM twin (orders/pos/fast_paths.py) give the same answers and write the same rows:
one batch of receipts synced at two identical stores, once with COPY and once with bulk_create."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import Stock, StockMovement
from loyalty.models import Posting
from o2o.fast_paths import orm_twins
from orders.pos.models import TillReceipt, TillReceiptLine
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory
from tests.pos.conftest import audits_clean, receipt, store_client, sync

pytestmark = pytest.mark.django_db

PHONES = ("0912345678", "0912345679")  # one member per store, so each run starts from the same balance


def _batch(phone: str, sold_at) -> list[dict]:
    return [
        receipt([("PX-AO", 2, 150_000), ("PX-NON", 1)], rid="PX-1", phone=phone, sold_at=sold_at),
        receipt([("PX-AO", 1, 150_000)], rid="PX-2", sold_at=sold_at),
        receipt([("PX-NON", 9)], rid="PX-3", sold_at=sold_at),  # more than the ledger holds: shortfall or refused
        receipt([("PX-AO", 1, 150_000)], rid="PX-1", phone=phone, sold_at=sold_at),  # a reused id, other content
    ]


def _answer(response, store, phone: str) -> str:
    """The sync answer with the store's own code and member taken out (the two runs differ by them alone)."""
    member = "+84" + phone[1:]
    return json.dumps(response.json(), sort_keys=True).replace(store.code, "<store>").replace(member, "<member>")


def _rows(store) -> dict:
    def strip(values: list[dict]) -> list[dict]:
        return sorted(tuple(sorted((k, str(v)) for k, v in row.items())) for row in values)

    receipts = TillReceipt.objects.filter(store=store)
    return {
        "receipts": strip(list(receipts.values("receipt_id", "total_vnd", "money_vnd", "points_redeemed", "status"))),
        "lines": strip(list(TillReceiptLine.objects.filter(receipt__store=store).values(
            "receipt__receipt_id", "product__sku", "qty", "unit_price_vnd", "discount_vnd", "taken", "shortfall"))),
        "movements": strip(list(StockMovement.objects.filter(store=store).exclude(reason="opening").values(
            "product__sku", "reason", "delta_on_hand", "delta_reserved", "delta_unavailable", "note"))),
        "stock": strip(list(Stock.objects.filter(store=store).values("product__sku", "on_hand", "reserved",
                                                                     "needs_count"))),
        "points": sorted(Posting.objects.filter(store=store.code).values_list("kind", "points", "amount_vnd")),
    }


@pytest.mark.parametrize("negative", [False, True], ids=["refuse-oversell", "allow-negative"])
def test_copy_and_bulk_create_sync_the_same_batch_identically(negative):
    ao, non = ProductFactory(sku="PX-AO", price_vnd=150_000), ProductFactory(sku="PX-NON", price_vnd=100_000)
    stores = [StoreFactory(code=f"PX-{negative:d}-{i}", allow_negative_availability=negative) for i in range(2)]
    for store in stores:
        put_stock(store, ao, 5)
        put_stock(store, non, 3)
    sold_at = timezone.now() - timedelta(minutes=1)
    sql = sync(store_client(stores[0]), _batch(PHONES[0], sold_at))
    with orm_twins():
        orm = sync(store_client(stores[1]), _batch(PHONES[1], sold_at))
    assert sql.status_code == orm.status_code == 200
    assert _answer(sql, stores[0], PHONES[0]) == _answer(orm, stores[1], PHONES[1])
    first, second = _rows(stores[0]), _rows(stores[1])
    assert first["receipts"] and first["movements"]
    assert first == second
    assert audits_clean()
