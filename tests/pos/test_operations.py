"""Voids, refunds, counts (with late receipts), goods receipts, transfers, pickups and look-ups over HTTP."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import MovementReason, StockMovement
from loyalty import services as loyalty
from loyalty.models import Member
from orders import services as order_services
from orders.models import FulfillmentStatus
from orders.pos.models import StockCount, StockTransfer, TillRefund
from tests.pos.conftest import audits_clean, backdate_ledger, receipt, stock_of, sync

pytestmark = pytest.mark.django_db

PHONE = "0901234567"


def _count(client, lines, *, count_id="C-1", counted_at=None):
    return client.post(
        "/api/v1/pos/counts/",
        {"count_id": count_id, "counted_at": (counted_at or timezone.now()).isoformat(), "lines": lines},
        format="json",
    )


# --- voids and refunds ----------------------------------------------------------------------------------------------


def test_void_undoes_stock_and_points_and_is_idempotent(shop):
    member, _ = loyalty.get_or_create_member(phone=PHONE)
    loyalty.adjust_points(member=member, points=100, reason="welcome", staff="test")
    r = receipt([("AO-THUN-M", 2)], phone=PHONE,
                tenders=[{"type": "points", "points": 100}, {"type": "cash", "amount_vnd": 190_000}])
    assert sync(shop["api_a"], [r]).json()["results"][0]["status"] == "applied"
    assert Member.objects.get().available == 19
    res = shop["api_a"].post(f"/api/v1/pos/sales/{r['receipt_id']}/void/")
    assert res.status_code == 200, res.content
    assert res.json()["points"] == {"reversed": 19, "given_back": 100}
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 10
    assert Member.objects.get().available == 100
    again = shop["api_a"].post(f"/api/v1/pos/sales/{r['receipt_id']}/void/")
    assert again.status_code == 200 and again.json() == res.json()
    assert StockMovement.objects.filter(reason=MovementReason.SALE_VOID).count() == 1
    assert shop["api_a"].get(f"/api/v1/pos/sales/{r['receipt_id']}/").json()["status"] == "voided"
    assert audits_clean()


def test_partial_refunds_restock_and_reverse_points_in_proportion(shop):
    r = receipt([("AO-THUN-M", 4)], phone=PHONE)  # 400,000 ₫ cash → 40 points
    sync(shop["api_a"], [r])
    url = f"/api/v1/pos/sales/{r['receipt_id']}/refunds/"
    body = {"refund_id": "RF-1", "lines": [{"sku": "AO-THUN-M", "qty": 1, "resellable": False}]}
    res = shop["api_a"].post(url, body, format="json")
    assert res.status_code == 201, res.content
    assert res.json()["amount_vnd"] == 100_000 and res.json()["points"]["reversed"] == 10
    row = stock_of(shop["a"], shop["shirt"])
    assert (row.on_hand, row.unavailable) == (7, 1)  # back in store, quarantined
    assert shop["api_a"].post(url, body, format="json").status_code == 200  # replay
    reused = shop["api_a"].post(url, {**body, "lines": [{"sku": "AO-THUN-M", "qty": 2}]}, format="json")
    assert reused.status_code == 422 and reused.json()["code"] == "receipt_id_reused"
    too_many = shop["api_a"].post(url, {"refund_id": "RF-2", "lines": [{"sku": "AO-THUN-M", "qty": 4}]}, format="json")
    assert too_many.status_code == 409 and too_many.json()["code"] == "refund_exceeds_sale"
    assert shop["api_a"].post(url, {"refund_id": "RF-3", "lines": [{"sku": "AO-THUN-M", "qty": 3}]},
                              format="json").status_code == 201
    assert Member.objects.get().available == 0
    void = shop["api_a"].post(f"/api/v1/pos/sales/{r['receipt_id']}/void/")
    assert void.status_code == 409 and void.json()["code"] == "receipt_refunded"
    assert TillRefund.objects.count() == 2
    assert audits_clean()


# --- counts ---------------------------------------------------------------------------------------------------------


def test_count_adjusts_to_the_shelf_and_clears_the_flag(shop):
    lines = [{"sku": "AO-THUN-M", "counted": 7, "expected_on_hand": 10}, {"sku": "NON-LA", "counted": 3}]
    at = timezone.now()
    res = _count(shop["api_a"], lines, counted_at=at)
    assert res.status_code == 201, res.content
    out = {line["sku"]: line for line in res.json()["lines"]}
    assert out["AO-THUN-M"]["adjustment"] == -3 and out["NON-LA"]["adjustment"] == 0
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 7
    assert StockMovement.objects.filter(reason=MovementReason.COUNT).count() == 1
    replay = _count(shop["api_a"], lines, counted_at=at)
    assert replay.status_code == 200 and replay.json() == res.json(), replay.content
    assert audits_clean()


def test_count_with_a_stale_expectation_is_refused_and_writes_nothing(shop):
    sync(shop["api_a"], [receipt([("AO-THUN-M", 1)])])  # the ledger moved: 9
    writes = StockMovement.objects.count()
    res = _count(shop["api_a"], [{"sku": "AO-THUN-M", "counted": 5, "expected_on_hand": 10}])
    assert res.status_code == 409 and res.json()["code"] == "stale_quantity"
    assert StockMovement.objects.count() == writes and not StockCount.objects.exists()
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 9


def test_late_receipt_sold_before_the_count_is_not_counted_twice(shop):
    backdate_ledger()
    now = timezone.now()
    # 10:00 sale (queued offline), 10:30 count finds 8 (the shelf already lacks the 2 sold), 11:00 the sale syncs.
    late = receipt([("AO-THUN-M", 2)], sold_at=now - timedelta(hours=1))
    res = _count(shop["api_a"], [{"sku": "AO-THUN-M", "counted": 8}], counted_at=now - timedelta(minutes=30))
    assert res.json()["lines"][0]["adjustment"] == -2
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 8
    out = sync(shop["api_a"], [late]).json()["results"][0]
    assert out["status"] == "applied" and out["result"]["lines"][0]["late_for_count"] is True
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 8  # not taken twice
    # A later count of the same shelf finds no difference.
    res = _count(shop["api_a"], [{"sku": "AO-THUN-M", "counted": 8}], count_id="C-2")
    assert res.json()["lines"][0]["adjustment"] == 0
    assert audits_clean()


def test_receipt_sold_after_the_count_is_not_undone_by_it(shop):
    backdate_ledger()
    now = timezone.now()
    # Count at 10:00 finds 10; a sale at 10:05 syncs at 10:06, before the count (sent at 10:10) arrives.
    sync(shop["api_a"], [receipt([("AO-THUN-M", 3)], sold_at=now - timedelta(minutes=5))])
    res = _count(shop["api_a"], [{"sku": "AO-THUN-M", "counted": 10}], counted_at=now - timedelta(minutes=10))
    line = res.json()["lines"][0]
    assert (line["ledger_as_of"], line["adjustment"], line["on_hand_after"]) == (10, 0, 7)
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 7


def test_receipt_synced_before_a_later_count_is_part_of_it(shop):
    backdate_ledger()
    now = timezone.now()
    sync(shop["api_a"], [receipt([("AO-THUN-M", 3)], sold_at=now - timedelta(minutes=20))])
    res = _count(shop["api_a"], [{"sku": "AO-THUN-M", "counted": 6}], counted_at=now - timedelta(minutes=10))
    assert res.json()["lines"][0]["adjustment"] == -1  # 7 expected, 6 found: one unit lost
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 6


def test_count_below_reserved_units_is_recorded_and_takes_the_reservations(shop):
    """The shelf is the truth: a count that finds fewer units than are reserved is recorded, and the units it did
    not find come out of the reservations (their holders reconciled right after)."""
    from inventory import services as stock_services
    from inventory.models import Reservation, TakenReservation
    from inventory.services import StockLine

    stock_services.reserve_stock(lines=[StockLine(shop["a"].pk, shop["hat"].pk, 2)], reference="hold:x",
                                 actor="test")
    res = _count(shop["api_a"], [{"sku": "NON-LA", "counted": 1}])
    assert res.status_code == 201, res.content
    line = res.json()["lines"][0]
    assert (line["adjustment"], line["on_hand_after"], line["taken_from_online"], line["from_quarantine"],
            line["kept_for_packed"]) == (-2, 1, 1, 0, 0)
    row = stock_of(shop["a"], shop["hat"])
    assert (row.on_hand, row.reserved, row.needs_count) == (1, 1, False)
    assert Reservation.objects.get(reference="hold:x").quantity == 1
    taken = TakenReservation.objects.get()
    assert (taken.reference, taken.units, taken.kind, taken.cause) == ("hold:x", 1, "count", "count:HCM-Q1-A:C-1")
    assert taken.reconciled_at is not None
    assert audits_clean()


# --- goods receipts and transfers ---------------------------------------------------------------------------------


def test_goods_receipt_books_stock_once(shop):
    body = {"receipt_id": "DN-1", "source": "DC Bình Dương", "lines": [{"sku": "AO-THUN-M", "qty": 24}]}
    res = shop["api_a"].post("/api/v1/pos/goods-receipts/", body, format="json")
    assert res.status_code == 201, res.content
    assert shop["api_a"].post("/api/v1/pos/goods-receipts/", body, format="json").status_code == 200
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 34
    reused = shop["api_a"].post("/api/v1/pos/goods-receipts/", {**body, "lines": [{"sku": "NON-LA", "qty": 1}]}, format="json")
    assert reused.status_code == 422
    # The same lines with the supplier named otherwise: the same delivery note, a replay
    renamed = shop["api_a"].post("/api/v1/pos/goods-receipts/", {**body, "source": "Bình Dương DC"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["source"] == "DC Bình Dương"
    assert shop["api_a"].get("/api/v1/pos/goods-receipts/DN-1/").json()["lines"] == [{"sku": "AO-THUN-M", "qty": 24}]
    assert audits_clean()


def test_transfer_ship_in_transit_receive_with_discrepancy(shop):
    body = {"transfer_id": "TR-1", "to_store": "HCM-Q1-B", "lines": [{"sku": "AO-THUN-M", "qty": 5}, {"sku": "NON-LA", "qty": 2}]}
    res = shop["api_a"].post("/api/v1/pos/transfers/", body, format="json")
    assert res.status_code == 201, res.content
    transfer = res.json()
    assert transfer["status"] == "in_transit"
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 5
    assert shop["api_a"].post("/api/v1/pos/transfers/", body, format="json").json() == transfer  # replay
    assert [t["id"] for t in shop["api_b"].get("/api/v1/pos/transfers/").json()] == [transfer["id"]]
    # The sender cannot receive its own transfer.
    assert shop["api_a"].post(f"/api/v1/pos/transfers/{transfer['id']}/receive/", {"lines": []}, format="json").status_code == 404
    recv = {"lines": [{"sku": "AO-THUN-M", "qty": 4}]}  # one shirt lost, the hats never arrived
    res = shop["api_b"].post(f"/api/v1/pos/transfers/{transfer['id']}/receive/", recv, format="json")
    assert res.status_code == 201, res.content
    lines = {line["sku"]: line for line in res.json()["lines"]}
    assert lines["AO-THUN-M"]["discrepancy"] == 1 and lines["NON-LA"]["discrepancy"] == 2
    assert stock_of(shop["b"], shop["shirt"]).on_hand == 14 and stock_of(shop["b"], shop["hat"]).on_hand == 3
    assert shop["api_b"].post(f"/api/v1/pos/transfers/{transfer['id']}/receive/", recv, format="json").status_code == 200
    other = shop["api_b"].post(f"/api/v1/pos/transfers/{transfer['id']}/receive/", {"lines": []}, format="json")
    assert other.status_code == 409 and other.json()["code"] == "transfer_already_received"
    assert StockTransfer.objects.get().status == "received"
    assert "discrepancy" in StockMovement.objects.get(reason=MovementReason.TRANSFER_IN, product=shop["shirt"]).note
    assert audits_clean()


def test_transfer_of_reserved_units_is_shipped_and_takes_them(shop):
    """The goods have left: a transfer is never refused for stock; units reserved online go with it (the
    reservations taken, their holders reconciled), what the ledger did not have is a shortfall."""
    from inventory import services as stock_services
    from inventory.models import Reservation, TakenReservation
    from inventory.services import StockLine

    stock_services.reserve_stock(lines=[StockLine(shop["a"].pk, shop["hat"].pk, 2)], reference="hold:y",
                                 actor="test")
    body = {"transfer_id": "TR-2", "to_store": "HCM-Q1-B", "lines": [{"sku": "NON-LA", "qty": 4}]}
    res = shop["api_a"].post("/api/v1/pos/transfers/", body, format="json")
    assert res.status_code == 201, res.content
    assert res.json()["status"] == "in_transit" and res.json()["lines"][0]["shipped_qty"] == 4
    row = stock_of(shop["a"], shop["hat"])
    assert (row.on_hand, row.reserved, row.shortfall, row.needs_count) == (0, 0, 1, True)
    assert not Reservation.objects.filter(reference="hold:y").exists()
    taken = TakenReservation.objects.get()
    assert (taken.reference, taken.units, taken.kind) == ("hold:y", 2, "transfer")
    assert taken.reconciled_at is not None
    moved = StockMovement.objects.get(reason=MovementReason.TRANSFER_OUT)
    assert (moved.delta_on_hand, moved.delta_reserved, moved.delta_shortfall) == (-3, -2, 1)
    assert shop["api_a"].post("/api/v1/pos/transfers/", body, format="json").status_code == 200  # replay
    assert TakenReservation.objects.count() == 1 and StockMovement.objects.filter(reason="transfer_out").count() == 1
    assert audits_clean()


# --- pickups and look-ups -------------------------------------------------------------------------------------------


def _ready_pickup(channel, store, sku):
    order = order_services.place_order(
        channel=channel, lines={sku: 1}, customer_name="Trần Thị B", customer_phone="0912345678",
        method="pickup", pickup_store_code=store.code, actor="test",
    )
    f = order.fulfillments.get()
    for step in ("picking", "packed", "ready_for_pickup"):
        order_services.transition_fulfillment(fulfillment=f, to=step, actor="test")
    f.refresh_from_db()
    return f


def test_pickup_lookup_and_handover_commits_stock(shop, channel):
    f = _ready_pickup(channel, shop["a"], "NON-LA")
    code = f.pickup_code.code
    assert stock_of(shop["a"], shop["hat"]).reserved == 1
    assert shop["api_b"].get(f"/api/v1/pos/pickups/{code}/").status_code == 404  # not store B's pickup
    assert shop["api_b"].post(f"/api/v1/pos/pickups/{code}/handover/").status_code == 404
    look = shop["api_a"].get(f"/api/v1/pos/pickups/{code}/")
    assert look.status_code == 200 and look.json()["status"] == "ready_for_pickup"
    assert look.json()["lines"] == [{"sku": "NON-LA", "name": shop["hat"].name, "qty": 1}]
    res = shop["api_a"].post(f"/api/v1/pos/pickups/{code}/handover/")
    assert res.status_code == 200 and res.json()["status"] == FulfillmentStatus.COLLECTED
    row = stock_of(shop["a"], shop["hat"])
    assert (row.on_hand, row.reserved) == (2, 0)
    again = shop["api_a"].post(f"/api/v1/pos/pickups/{code}/handover/")
    assert again.status_code == 200 and again.json()["status"] == "collected"
    assert audits_clean()


def test_stock_lookup_shows_nearby_stores(shop):
    sync(shop["api_a"], [receipt([("NON-LA", 3)])])
    res = shop["api_a"].get("/api/v1/pos/stock/NON-LA/")
    assert res.status_code == 200
    body = res.json()
    assert body["on_hand"] == 0 and body["sellable_at_till"] == 0
    assert body["nearby"][0]["store"] == "HCM-Q1-B" and body["nearby"][0]["available"] == 3
    assert 0.5 < body["nearby"][0]["distance_km"] < 1.0
    assert shop["api_a"].get("/api/v1/pos/stock/NOPE/").status_code == 422


def test_member_balance_by_phone(shop):
    sync(shop["api_a"], [receipt([("AO-THUN-M", 1)], phone=PHONE)])
    res = shop["api_a"].get("/api/v1/pos/members/0901 234 567/balance/")
    assert res.status_code == 200 and res.json()["available"] == 10
    assert shop["api_a"].get("/api/v1/pos/members/0987654321/balance/").status_code == 404
