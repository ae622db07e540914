"""Sales sync over HTTP on PostgreSQL: receipts applied once, replays, isolation, stock policy, points, bad input."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from inventory import services as stock_services
from inventory.models import MovementReason, Reservation, StockMovement, TakenReservation
from inventory.selectors import sellable_online
from inventory.services import StockLine
from loyalty import services as loyalty
from loyalty.models import Member, Posting
from o2o.models import OutboxEvent
from orders.pos.models import TillReceipt, TillReceiptLine
from tests.conftest import put_stock
from tests.pos.conftest import audits_clean, receipt, stock_of, store_client, sync

pytestmark = pytest.mark.django_db

PHONE = "0901234567"


def _writes():
    return (StockMovement.objects.count(), Posting.objects.count(), TillReceipt.objects.count())


def test_happy_path_stock_down_and_answer(shop):
    r = receipt([("AO-THUN-M", 2), ("NON-LA", 1, 50_000)])
    res = sync(shop["api_a"], [r])
    assert res.status_code == 200, res.content
    body = res.json()
    assert body["summary"] == {"applied": 1, "duplicate": 0, "rejected": 0}
    out = body["results"][0]
    assert out["status"] == "applied" and out["receipt_id"] == r["receipt_id"]
    assert out["result"]["total_vnd"] == 250_000 and out["result"]["needs_count"] is False
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 8
    assert stock_of(shop["a"], shop["hat"]).on_hand == 2
    assert stock_of(shop["b"], shop["shirt"]).on_hand == 10
    sales = StockMovement.objects.filter(reason=MovementReason.SALE)
    assert sales.count() == 2 and {m.reference for m in sales} == {f"pos:HCM-Q1-A:{r['receipt_id']}"}
    assert audits_clean()


def test_same_sku_on_two_lines_and_discounts(shop):
    r = receipt([("AO-THUN-M", 1), ("AO-THUN-M", 2)])
    r["lines"][1]["discount_vnd"] = 20_000
    r["tenders"] = [{"type": "card", "amount_vnd": 280_000}]
    out = sync(shop["api_a"], [r]).json()["results"][0]
    assert out["status"] == "applied", out
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 7
    assert TillReceiptLine.objects.filter(receipt__receipt_id=r["receipt_id"]).count() == 2


def test_replaying_a_batch_three_times_is_identical_and_writes_nothing(shop):
    batch = [receipt([("AO-THUN-M", 1)], phone=PHONE), receipt([("NON-LA", 1)]), receipt([("NOPE", 1)])]
    first = sync(shop["api_a"], batch).json()
    assert [o["status"] for o in first["results"]] == ["applied", "applied", "rejected"]
    writes = _writes()
    replays = [sync(shop["api_a"], batch).json() for _ in range(3)]
    assert replays[0] == replays[1] == replays[2]
    assert [o["status"] for o in replays[0]["results"]] == ["duplicate", "duplicate", "rejected"]
    for applied, replayed in zip(first["results"][:2], replays[0]["results"][:2], strict=True):
        assert replayed["result"] == applied["result"]  # the first answer again
    assert _writes() == writes
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 9
    assert Member.objects.get().available == 10  # 100,000 ₫ → 10 points, once
    assert audits_clean()


def test_same_receipt_twice_in_one_batch(shop):
    r = receipt([("AO-THUN-M", 1)])
    out = sync(shop["api_a"], [r, r]).json()["results"]
    assert [o["status"] for o in out] == ["applied", "duplicate"]
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 9


def test_same_id_with_other_content_is_rejected_and_writes_nothing(shop):
    r = receipt([("AO-THUN-M", 1)])
    sync(shop["api_a"], [r])
    writes = _writes()
    altered = {**r, "lines": [{**r["lines"][0], "qty": 2}], "tenders": [{"type": "cash", "amount_vnd": 200_000}]}
    out = sync(shop["api_a"], [altered]).json()["results"][0]
    assert out["status"] == "rejected" and out["reason"] == "receipt_id_reused"
    assert _writes() == writes and stock_of(shop["a"], shop["shirt"]).on_hand == 9


def test_receipt_ids_are_per_store(shop):
    r = receipt([("AO-THUN-M", 1)], rid="SAME-1")
    assert sync(shop["api_a"], [r]).json()["results"][0]["status"] == "applied"
    assert sync(shop["api_b"], [r]).json()["results"][0]["status"] == "applied"
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 9 and stock_of(shop["b"], shop["shirt"]).on_hand == 9


def test_one_bad_receipt_does_not_block_the_batch(shop):
    """Receipts are refused for invalid data only (here an unknown SKU and a points tender the member cannot pay),
    never for stock: a receipt selling more than the ledger has is applied (its shortfall recorded), and the
    refused ones write nothing."""
    loyalty.get_or_create_member(phone=PHONE)
    good1 = receipt([("AO-THUN-M", 1)])
    unknown = receipt([("AO-THUN-M", 1), ("NOPE", 1)])
    too_many = receipt([("NON-LA", 4)])  # 3 on hand: sold anyway, 1 beyond the ledger
    no_points = receipt([("AO-THUN-M", 2)], phone=PHONE, tenders=[{"type": "points", "points": 2_000}])
    good2 = receipt([("AO-THUN-M", 1)])
    out = sync(shop["api_a"], [good1, unknown, too_many, no_points, good2]).json()["results"]
    assert [o["status"] for o in out] == ["applied", "rejected", "applied", "rejected", "applied"]
    assert out[1]["reason"] == "unknown_sku" and out[1]["details"]["skus"] == ["NOPE"]
    assert out[2]["result"]["lines"] == [{"sku": "NON-LA", "qty": 4, "shortfall": 1, "late_for_count": False}]
    assert out[2]["result"]["needs_count"] is True and out[2]["result"]["taken_from_online"] == []
    assert out[3]["reason"] == "insufficient_points"
    shirts = stock_of(shop["a"], shop["shirt"])
    assert (shirts.on_hand, shirts.shortfall, shirts.needs_count) == (8, 0, False)  # neither refused receipt took any
    hats = stock_of(shop["a"], shop["hat"])
    assert (hats.on_hand, hats.shortfall, hats.needs_count) == (0, 1, True)
    assert not TillReceipt.objects.filter(receipt_id__in=[unknown["receipt_id"], no_points["receipt_id"]]).exists()
    assert audits_clean()


def test_till_sells_into_safety_then_takes_the_online_hold(shop, channel):
    """The till sells the safety buffer first (only the website keeps off it), then the units a checkout hold set
    aside: the hold shrinks in the sale's transaction and its website is told right after."""
    a, hat = shop["a"], shop["hat"]
    stock_services.set_stock_levels(store=a, product=hat, actor="test", safety=2)
    hold = stock_services.hold_stock(store=a, quantities={hat: 1}, ttl_seconds=600, actor="web", channel=channel)
    # on_hand 3, reserved 1, safety 2: online ATP 0, the till sells 2 without taking anyone's.
    out = sync(shop["api_a"], [receipt([("NON-LA", 2)])]).json()["results"][0]
    assert out["status"] == "applied" and out["result"]["taken_from_online"] == []
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved) == (1, 1)
    # The last unit on the shelf is the held one: the sale takes it, the hold is gone and its website told.
    out = sync(shop["api_a"], [receipt([("NON-LA", 1)], rid="R-TAKES")]).json()["results"][0]
    assert out["status"] == "applied", out
    assert out["result"]["taken_from_online"] == [{"sku": "NON-LA", "qty": 1}]
    assert out["result"]["needs_count"] is False and out["result"]["lines"][0]["shortfall"] == 0
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved, row.shortfall) == (0, 0, 0)
    assert not Reservation.objects.filter(reference=hold.reference).exists()
    taken = TakenReservation.objects.get()
    assert (taken.reference, taken.units, taken.kind, taken.cause) == (hold.reference, 1, "sale", "pos:HCM-Q1-A:R-TAKES")
    assert taken.reconciled_at is not None and taken.channel_id == channel.pk  # reconciled in the same request
    told = OutboxEvent.objects.get(topic="hold.reduced")
    assert told.channel_id == channel.pk and told.payload["dropped"] is True
    assert told.payload["taken"] == [{"sku": "NON-LA", "qty": 1}]
    assert audits_clean()


def test_a_sale_beyond_the_ledger_is_recorded_with_shortfall_and_flags_a_count(shop):
    """More sold than the ledger had at all: the sale is kept, the free units and the reserved ones are taken, the
    rest is the row's shortfall; the row waits for a count and sells nothing online until one settles it."""
    a, hat = shop["a"], shop["hat"]
    stock_services.reserve_stock(lines=[StockLine(a.pk, hat.pk, 1)], reference="hold:web-2", actor="test")
    out = sync(shop["api_a"], [receipt([("NON-LA", 5)])]).json()["results"][0]
    assert out["status"] == "applied", out
    assert out["result"]["needs_count"] is True and out["result"]["lines"][0]["shortfall"] == 2
    assert out["result"]["taken_from_online"] == [{"sku": "NON-LA", "qty": 1}]
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved, row.shortfall, row.needs_count) == (0, 0, 2, True)
    line = TillReceiptLine.objects.get(receipt__receipt_id=out["receipt_id"])
    assert (line.qty, line.taken, line.shortfall) == (5, 3, 2)
    sale = StockMovement.objects.get(reason=MovementReason.SALE, product=hat)
    assert (sale.delta_on_hand, sale.delta_reserved, sale.delta_shortfall) == (-3, -1, 2) and "shortfall" in sale.note
    # A delivery arrives: on hand again, but online ATP stays 0 while the shortfall waits for its count.
    put_stock(a, hat, 4)
    assert stock_of(a, hat).on_hand == 4
    assert sellable_online(store_ids=[a.pk], product_ids=[hat.pk])[(a.pk, hat.pk)] == 0
    res = shop["api_a"].post("/api/v1/pos/counts/", {"count_id": "C-SETTLE", "counted_at": timezone.now().isoformat(),
                                                     "lines": [{"sku": "NON-LA", "counted": 4}]}, format="json")
    assert res.status_code == 201, res.content
    line = res.json()["lines"][0]
    assert (line["shortfall_before"], line["shortfall_after"], line["on_hand_after"]) == (2, 0, 4)
    row = stock_of(a, hat)
    assert (row.on_hand, row.shortfall, row.needs_count) == (4, 0, False)
    assert sellable_online(store_ids=[a.pk], product_ids=[hat.pk])[(a.pk, hat.pk)] == 4
    # A SKU the store has never stocked: the sale is kept, all of it a shortfall.
    from tests.factories import ProductFactory

    ProductFactory(sku="NEW-SKU")
    out = sync(shop["api_a"], [receipt([("NEW-SKU", 1)])]).json()["results"][0]
    assert out["status"] == "applied" and out["result"]["lines"][0]["shortfall"] == 1
    assert out["result"]["needs_count"] is True
    assert audits_clean()


# --- points ---------------------------------------------------------------------------------------------------------


def test_points_earned_on_money_and_redeemed_for_the_points_tender(shop):
    member, _ = loyalty.get_or_create_member(phone=PHONE)
    loyalty.adjust_points(member=member, points=500, reason="welcome", staff="test")
    # 300,000 ₫: 100 points (10,000 ₫) + 290,000 ₫ card → 29 points earned.
    r = receipt([("AO-THUN-M", 3)], phone="+84 90 123 4567",
                tenders=[{"type": "points", "points": 100}, {"type": "card", "amount_vnd": 290_000}])
    out = sync(shop["api_a"], [r]).json()["results"][0]
    assert out["status"] == "applied", out
    assert out["result"]["points"] == {"member": "+84901234567", "earned": 29, "redeemed": 100, "available": 429}
    assert Member.objects.get().available == 429
    assert audits_clean()


def test_points_above_balance_rejects_the_whole_receipt(shop):
    loyalty.get_or_create_member(phone=PHONE)
    r = receipt([("AO-THUN-M", 1)], phone=PHONE, tenders=[{"type": "points", "points": 1000}])
    writes = _writes()
    out = sync(shop["api_a"], [r]).json()["results"][0]
    assert out["status"] == "rejected" and out["reason"] == "insufficient_points"
    assert _writes() == writes and stock_of(shop["a"], shop["shirt"]).on_hand == 10


@pytest.mark.parametrize(
    ("tenders", "phone", "reason"),
    [
        ([{"type": "cash", "amount_vnd": 99_000}], None, "tender_mismatch"),
        ([{"type": "points", "points": 1000}], None, "member_required"),
        ([{"type": "cash", "amount_vnd": 100_000}], "12345", "invalid_phone"),
    ],
)
def test_tender_problems_are_rejected(shop, tenders, phone, reason):
    out = sync(shop["api_a"], [receipt([("AO-THUN-M", 1)], tenders=tenders, phone=phone)]).json()["results"][0]
    assert (out["status"], out["reason"]) == ("rejected", reason)
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 10


# --- bad input ------------------------------------------------------------------------------------------------------


def test_a_batch_of_100000_receipts_is_413_with_the_limit(shop):
    one = receipt([("AO-THUN-M", 1)])
    res = sync(shop["api_a"], [one] * 100_000)
    assert res.status_code == 413
    assert res.json()["code"] == "batch_too_large" and res.json()["details"]["max_receipts"] == 1000
    assert not TillReceipt.objects.exists()


def test_too_many_small_receipts_is_413(shop, settings):
    settings.POS_MAX_RECEIPTS_PER_BATCH = 5
    res = sync(shop["api_a"], [receipt([("AO-THUN-M", 1)]) for _ in range(6)])
    assert res.status_code == 413 and res.json()["details"]["max_receipts"] == 5


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r["lines"][0].update(qty=-1), "lines"),
        (lambda r: r["lines"][0].update(qty=1.5), "lines"),
        (lambda r: r["tenders"][0].update(type="bitcoin"), "tenders"),
        (lambda r: r.update(sold_at="yesterday at noon"), "sold_at"),
        (lambda r: r.update(sold_at="2025-06-01T10:15:00"), "sold_at"),  # no UTC offset
        (lambda r: r.update(sold_at=(timezone.now() + timedelta(days=2)).isoformat()), "sold_at"),
        (lambda r: r.update(receipt_id="has spaces/and slashes"), "receipt_id"),
        (lambda r: r.update(lines=[]), "lines"),
        (lambda r: r["lines"][0].update(discount_vnd=10**6), "lines"),
    ],
)
def test_invalid_receipts_are_rejected_one_by_one(shop, mutate, field):
    bad = receipt([("AO-THUN-M", 1)])
    mutate(bad)
    good = receipt([("AO-THUN-M", 1)])
    res = sync(shop["api_a"], [bad, good])
    assert res.status_code == 200
    out = res.json()["results"]
    assert out[0]["status"] == "rejected" and out[0]["reason"] == "invalid" and field in out[0]["details"], out[0]
    assert out[1]["status"] == "applied"
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 9  # only the good one


@pytest.mark.parametrize("body", [[], {"receipts": "x"}, {"nope": []}, "text"])
def test_malformed_batches_are_400(shop, body):
    res = shop["api_a"].post("/api/v1/pos/sales/", body, format="json")
    assert res.status_code == 400 and res.json()["code"] == "invalid"


def test_broken_json_is_400(shop):
    res = shop["api_a"].post("/api/v1/pos/sales/", data='{"receipts": [', content_type="application/json")
    assert res.status_code == 400 and res.json()["code"] == "malformed_request"


def test_non_object_receipts_are_rejected_per_receipt(shop):
    out = sync(shop["api_a"], ["x", 3, None, receipt([("AO-THUN-M", 1)])]).json()["results"]
    assert [o["status"] for o in out] == ["rejected", "rejected", "rejected", "applied"]


def test_channel_key_does_not_work_on_pos_and_store_key_not_on_website(shop, api):
    assert sync(api, [receipt([("AO-THUN-M", 1)])]).status_code == 401
    res = shop["api_a"].post("/api/v1/holds/", {"store": "HCM-Q1-A", "lines": [{"sku": "AO-THUN-M", "qty": 1}]},
                             format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert res.status_code == 401


def test_revoked_key_is_401(shop):
    client = store_client(shop["a"], name="till-9")
    key = json.loads(json.dumps(client._credentials))["HTTP_AUTHORIZATION"].split(" ", 1)[1]
    from orders.pos.models import StoreApiKey

    StoreApiKey.objects.filter(prefix=key.split(".")[0]).update(revoked=True)
    assert sync(client, [receipt([("AO-THUN-M", 1)])]).status_code == 401


def test_one_receipt_applied_alone_reconciles_what_it_took(shop):
    """sync_sales' fallback door, which the sales bench (bench/pos/run.py) also calls without a `taken` list: the
    receipt is applied and the reservations it took are reconciled there and then."""
    from django.utils.dateparse import parse_datetime

    from orders.pos import services

    a, hat = shop["a"], shop["hat"]
    stock_services.reserve_stock(lines=[StockLine(a.pk, hat.pk, 3)], reference="hold:web-3", actor="test")
    body = receipt([("NON-LA", 1)], rid="ONE-1")
    sale = services.Sale(receipt_id="ONE-1", sold_at=parse_datetime(body["sold_at"]), content_hash="one-1",
                         lines=(services.SaleLine(sku="NON-LA", qty=1, unit_price_vnd=100_000),),
                         tenders=(services.Tender(type="cash", amount_vnd=100_000),))
    out = services._apply_one(store=a, sale=sale, till="b", products={"NON-LA": hat}, known={})
    assert out.status == "applied" and out.result["taken_from_online"] == [{"sku": "NON-LA", "qty": 1}]
    taken = TakenReservation.objects.get()
    assert taken.reference == "hold:web-3" and taken.reconciled_at is not None
    assert (stock_of(a, hat).on_hand, stock_of(a, hat).reserved) == (2, 2)
    assert audits_clean()
