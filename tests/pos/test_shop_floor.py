"""The shop floor is the truth (issue #18), from the till: physical events at a store (till sales, counts, damage
found on the shelf, transfers shipped) are recorded as they happened, never refused for stock. When the store has no
free units left they take units reserved for online checkouts and orders (holds newest first, then fulfilments
assigned, then picking, never packed), reconciled in the same request (websites told, delivery orders re-routed,
pickup customers offered a change); what even those cannot cover is a shortfall that flags the row for a count and
keeps it off the website until one settles it. After every scenario both ledgers' audits are clean."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import MovementReason, Reservation, Stock, StockMovement, TakenReservation
from inventory.selectors import sellable_online
from loyalty import services as loyalty
from loyalty.models import Posting
from o2o.models import OutboxEvent
from orders import services as order_services
from orders.models import ChangeOffer, Fulfillment, FulfillmentStatus, Order, RoutingDecision, RoutingKind
from orders.pos.models import DamageReport, TillReceipt
from tests.conftest import put_stock
from tests.pos.conftest import audits_clean, receipt, stock_of, sync

pytestmark = pytest.mark.django_db

NEAR_A = {"lat": 10.7745, "lon": 106.7036}  # a customer a few steps from store A (Q1 Lê Lợi)
PHONE = "0901234567"


def _hold(api, store, sku: str, qty: int) -> str:
    """A checkout hold over the website API; returns its reference."""
    res = api.post("/api/v1/holds/", {"store": store.code, "lines": [{"sku": sku, "qty": qty}]}, format="json",
                   HTTP_IDEMPOTENCY_KEY=f"hold-{store.code}-{sku}-{qty}-{Reservation.objects.count()}")
    assert res.status_code == 201, res.content
    return res.json()["reference"]


def _delivery(channel, lines: dict[str, int]) -> Fulfillment:
    """A delivery order to a customer next to store A, served by store A."""
    order = order_services.place_order(
        channel=channel, lines=lines, customer_name="Nguyễn Văn A", customer_phone="0912345678", method="delivery",
        actor="test", **NEAR_A,
    )
    f = order.fulfillments.get()
    assert f.store.code == "HCM-Q1-A", f.store
    return f


def _online(store, product) -> int:
    return sellable_online(store_ids=[store.pk], product_ids=[product.pk]).get((store.pk, product.pk), 0)


def _writes() -> dict:
    """Everything a replayed event must not write again."""
    return {
        "movements": StockMovement.objects.count(),
        "taken": TakenReservation.objects.count(),
        "decisions": RoutingDecision.objects.count(),
        "outbox": OutboxEvent.objects.count(),
        "receipts": TillReceipt.objects.count(),
        "postings": Posting.objects.count(),
        "offers": ChangeOffer.objects.count(),
        "fulfillments": sorted(Fulfillment.objects.values_list("pk", "store_id", "status")),
        "reservations": sorted(Reservation.objects.values_list("store_id", "product_id", "reference", "quantity")),
        "stock": sorted(Stock.objects.values_list("store_id", "product_id", "on_hand", "reserved", "unavailable",
                                                  "shortfall", "needs_count")),
    }


def _pending() -> int:
    return TakenReservation.objects.filter(reconciled_at__isnull=True).count()


# --- till sales -----------------------------------------------------------------------------------------------------


def test_a_till_sale_takes_part_of_a_checkout_hold_and_the_website_is_told(shop, api, channel):
    a, hat = shop["a"], shop["hat"]
    hold = _hold(api, a, "NON-LA", 2)  # 3 on the shelf: 1 free, 2 held
    out = sync(shop["api_a"], [receipt([("NON-LA", 2)], rid="R-HOLD")]).json()["results"][0]
    assert out["status"] == "applied", out
    assert out["result"]["taken_from_online"] == [{"sku": "NON-LA", "qty": 1}]
    assert out["result"]["needs_count"] is False and out["result"]["lines"][0]["shortfall"] == 0
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved, row.shortfall) == (1, 1, 0)
    assert Reservation.objects.get(reference=hold).quantity == 1
    taken = TakenReservation.objects.get()
    assert (taken.reference, taken.units, taken.kind, taken.cause, taken.channel_id) == (
        hold, 1, "sale", "pos:HCM-Q1-A:R-HOLD", channel.pk)
    assert taken.reconciled_at is not None and taken.outcome.startswith("Checkout hold reduced")
    told = OutboxEvent.objects.get(topic="hold.reduced")
    assert told.channel_id == channel.pk and told.aggregate == hold
    assert told.payload["taken"] == [{"sku": "NON-LA", "qty": 1}] and told.payload["left"] == [{"sku": "NON-LA", "qty": 1}]
    assert told.payload["dropped"] is False and told.payload["cause"] == "pos:HCM-Q1-A:R-HOLD"
    movement = StockMovement.objects.get(reason=MovementReason.SALE)
    assert (movement.delta_on_hand, movement.delta_reserved, movement.delta_shortfall) == (-2, -1, 0)
    assert audits_clean()


def test_a_till_sale_takes_a_delivery_fulfilments_units_and_the_order_is_rerouted(shop, channel):
    a, b, hat = shop["a"], shop["b"], shop["hat"]
    f = _delivery(channel, {"NON-LA": 2})  # A: 3 hats, 2 reserved for the order, 1 free
    out = sync(shop["api_a"], [receipt([("NON-LA", 2)], rid="R-0042")]).json()["results"][0]
    assert out["status"] == "applied", out
    assert out["result"]["taken_from_online"] == [{"sku": "NON-LA", "qty": 1}]
    assert stock_of(a, hat).on_hand == 1 and stock_of(a, hat).reserved == 1
    # Reconciled in the same request: the taken unit re-routed to B, A keeps the one it still holds.
    f.refresh_from_db()
    assert f.status == FulfillmentStatus.ASSIGNED and Reservation.objects.get(reference=f.reference).quantity == 1
    new = Fulfillment.objects.get(order=f.order, store=b)
    assert new.status == FulfillmentStatus.ASSIGNED and new.lines.get().qty == 1
    assert Reservation.objects.get(reference=new.reference).quantity == 1 and stock_of(b, hat).reserved == 1
    decision = RoutingDecision.objects.get(order=f.order, kind=RoutingKind.STORE_EVENT)
    assert decision.cause == "pos:HCM-Q1-A:R-0042"
    taken = TakenReservation.objects.get()
    assert (taken.reference, taken.units, taken.cause) == (f.reference, 1, "pos:HCM-Q1-A:R-0042")
    assert taken.reconciled_at is not None and taken.outcome.startswith("Re-routed")
    assert OutboxEvent.objects.filter(topic="order.rerouted", aggregate=f.order.aggregate).count() == 1
    assert _pending() == 0
    assert audits_clean()


def test_a_till_sale_beyond_everything_is_a_shortfall_off_the_website_until_a_count(shop, api, channel):
    a, hat = shop["a"], shop["hat"]
    hold = _hold(api, a, "NON-LA", 1)
    f = _delivery(channel, {"NON-LA": 1})  # A: 3 hats: 1 free, 1 held, 1 for the order
    out = sync(shop["api_a"], [receipt([("NON-LA", 6)], rid="R-BIG")]).json()["results"][0]
    assert out["status"] == "applied", out
    result = out["result"]
    assert result["needs_count"] is True and result["lines"][0]["shortfall"] == 3
    assert result["taken_from_online"] == [{"sku": "NON-LA", "qty": 2}]
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved, row.unavailable, row.shortfall, row.needs_count) == (0, 0, 0, 3, True)
    # The hold first, then the order's fulfilment (takeable's order); both reconciled in the request.
    assert sorted(TakenReservation.objects.values_list("reference", "units")) == sorted([(hold, 1), (f.reference, 1)])
    assert _pending() == 0
    assert not Reservation.objects.filter(store=a).exists()
    assert Fulfillment.objects.get(order=f.order, store=shop["b"]).status == FulfillmentStatus.ASSIGNED
    # Off the website while the shortfall waits for its count, even once a delivery is on the shelf.
    assert _online(a, hat) == 0
    put_stock(a, hat, 4)
    assert stock_of(a, hat).on_hand == 4 and _online(a, hat) == 0
    assert api.post("/api/v1/holds/", {"store": a.code, "lines": [{"sku": "NON-LA", "qty": 1}]}, format="json",
                    HTTP_IDEMPOTENCY_KEY="after-shortfall").status_code == 409
    res = shop["api_a"].post("/api/v1/pos/counts/", {"count_id": "C-SETTLE", "counted_at": timezone.now().isoformat(),
                                                     "lines": [{"sku": "NON-LA", "counted": 4}]}, format="json")
    assert res.status_code == 201, res.content
    line = res.json()["lines"][0]
    assert (line["shortfall_before"], line["shortfall_after"], line["adjustment"], line["on_hand_after"]) == (3, 0, 0, 4)
    row = stock_of(a, hat)
    assert (row.on_hand, row.shortfall, row.needs_count) == (4, 0, False)
    assert _online(a, hat) == 4
    count = StockMovement.objects.get(reason=MovementReason.COUNT)
    assert (count.delta_on_hand, count.delta_shortfall) == (0, -3)
    assert audits_clean()


@pytest.mark.parametrize("chunk", [100, 2], ids=["one-chunk", "chunks-of-2"])
def test_an_offline_batch_whose_later_receipts_take_reservations_and_its_replay(shop, api, channel, settings, chunk):
    """A till back online sends five receipts at once: the first sells the free unit, the points-refused one takes
    nothing (what it would have taken is given back to the next), the next takes the hold, then the order's unit,
    the last goes beyond the ledger. The same batch again changes nothing."""
    settings.POS_SYNC_CHUNK_RECEIPTS = chunk
    a, hat = shop["a"], shop["hat"]
    loyalty.get_or_create_member(phone=PHONE)
    hold = _hold(api, a, "NON-LA", 1)
    f = _delivery(channel, {"NON-LA": 1})  # A: 3 hats: 1 free, 1 held, 1 for the order
    start = timezone.now() - timedelta(hours=1)
    batch = [
        receipt([("NON-LA", 1)], rid="OFF-1", sold_at=start),
        receipt([("NON-LA", 1)], rid="OFF-2", sold_at=start + timedelta(minutes=1), phone=PHONE,
                tenders=[{"type": "points", "points": 1_000}]),  # the member has no points: refused
        receipt([("NON-LA", 1), ("AO-THUN-M", 1)], rid="OFF-3", sold_at=start + timedelta(minutes=2)),
        receipt([("NON-LA", 1)], rid="OFF-4", sold_at=start + timedelta(minutes=3), phone=PHONE),
        receipt([("NON-LA", 1)], rid="OFF-5", sold_at=start + timedelta(minutes=4)),
    ]
    res = sync(shop["api_a"], batch)
    assert res.status_code == 200
    out = res.json()
    assert [o["status"] for o in out["results"]] == ["applied", "rejected", "applied", "applied", "applied"]
    assert out["results"][1]["reason"] == "insufficient_points"
    taken = [o["result"]["taken_from_online"] if o["status"] == "applied" else None for o in out["results"]]
    assert taken == [[], None, [{"sku": "NON-LA", "qty": 1}], [{"sku": "NON-LA", "qty": 1}], []]
    assert [o["result"]["needs_count"] for o in out["results"] if o["status"] == "applied"] == [False, False, False, True]
    assert sorted(TakenReservation.objects.values_list("reference", "cause", "units")) == sorted([
        (hold, "pos:HCM-Q1-A:OFF-3", 1), (f.reference, "pos:HCM-Q1-A:OFF-4", 1)])
    assert _pending() == 0
    assert not TillReceipt.objects.filter(receipt_id="OFF-2").exists()
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved, row.shortfall, row.needs_count) == (0, 0, 1, True)
    assert stock_of(a, shop["shirt"]).on_hand == 9
    decision = RoutingDecision.objects.get(order=f.order, kind=RoutingKind.STORE_EVENT)
    assert decision.cause == "pos:HCM-Q1-A:OFF-4"
    assert OutboxEvent.objects.get(topic="hold.reduced").payload["cause"] == "pos:HCM-Q1-A:OFF-3"
    assert audits_clean()

    before = _writes()
    again = sync(shop["api_a"], batch).json()
    assert [o["status"] for o in again["results"]] == ["duplicate", "rejected", "duplicate", "duplicate", "duplicate"]
    for first, replayed in zip(out["results"], again["results"], strict=True):
        if first["status"] == "applied":
            assert replayed["result"] == first["result"]
    assert _writes() == before  # no movements, takes, decisions, outbox events, receipts or postings
    assert audits_clean()


def test_a_points_refused_receipt_gives_back_what_it_would_have_taken(shop, api):
    """In one chunk: the refused receipt's take of the hold is undone, so the hold stays whole, the receipts after it
    see it and nothing names the refused receipt."""
    a, hat = shop["a"], shop["hat"]
    loyalty.get_or_create_member(phone=PHONE)
    hold = _hold(api, a, "NON-LA", 3)  # every hat held: no free unit
    batch = [
        receipt([("NON-LA", 2)], rid="PR-1", phone=PHONE, tenders=[{"type": "points", "points": 2_000}]),
        receipt([("AO-THUN-M", 1)], rid="PR-2"),
    ]
    out = sync(shop["api_a"], batch).json()["results"]
    assert [(o["status"], o.get("reason")) for o in out] == [("rejected", "insufficient_points"), ("applied", None)]
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved, row.shortfall, row.needs_count) == (3, 3, 0, False)
    assert Reservation.objects.get(reference=hold).quantity == 3
    assert not TakenReservation.objects.exists() and not OutboxEvent.objects.filter(topic="hold.reduced").exists()
    assert stock_of(a, shop["shirt"]).on_hand == 9
    assert audits_clean()


def test_a_till_sale_takes_a_pickup_and_the_customer_is_offered_a_change(shop, channel):
    """Pickups stay at the customer's store: the order is not moved, the customer is offered a change."""
    a, hat = shop["a"], shop["hat"]
    order = order_services.place_order(
        channel=channel, lines={"NON-LA": 3}, customer_name="Trần Thị B", customer_phone="0912345678",
        method="pickup", pickup_store_code=a.code, actor="test",
    )
    f = order.fulfillments.get()
    out = sync(shop["api_a"], [receipt([("NON-LA", 1)], rid="R-PICK")]).json()["results"][0]
    assert out["status"] == "applied" and out["result"]["taken_from_online"] == [{"sku": "NON-LA", "qty": 1}]
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved) == (2, 2)
    offer = ChangeOffer.objects.get(fulfillment=f)
    assert offer.cause == "pos:HCM-Q1-A:R-PICK" and offer.missing == [{"sku": "NON-LA", "qty": 1}]
    assert {o["id"] for o in offer.options} >= {"keep", "cancel"}
    decision = RoutingDecision.objects.get(order=order, kind=RoutingKind.STORE_EVENT)
    assert decision.cause == "pos:HCM-Q1-A:R-PICK" and decision.applied is False
    assert Fulfillment.objects.filter(order=order).count() == 1  # not moved without the customer
    assert OutboxEvent.objects.filter(topic="order.change_offered", aggregate=order.aggregate).count() == 1
    assert _pending() == 0
    assert audits_clean()


# --- counts ---------------------------------------------------------------------------------------------------------


def test_a_count_below_what_is_set_aside_takes_holds_then_quarantine_and_keeps_packed_orders(shop, api, channel):
    a, hat = shop["a"], shop["hat"]
    damaged = shop["api_a"].post("/api/v1/pos/damage/", {"report_id": "D-0", "lines": [{"sku": "NON-LA", "qty": 1}]},
                                 format="json")
    assert damaged.status_code == 201 and damaged.json()["lines"][0]["quarantined"] == 1
    hold = _hold(api, a, "NON-LA", 1)
    f = _delivery(channel, {"NON-LA": 1})
    for step in ("picking", "packed"):
        order_services.transition_fulfillment(fulfillment=f, to=step, actor="test")
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved, row.unavailable) == (3, 2, 1)
    res = shop["api_a"].post("/api/v1/pos/counts/", {"count_id": "C-EMPTY", "counted_at": timezone.now().isoformat(),
                                                     "lines": [{"sku": "NON-LA", "counted": 0}]}, format="json")
    assert res.status_code == 201, res.content
    line = res.json()["lines"][0]
    assert {k: line[k] for k in ("counted", "adjustment", "on_hand_after", "taken_from_online", "from_quarantine",
                                 "kept_for_packed", "shortfall_before", "shortfall_after")} == {
        "counted": 0, "adjustment": -2, "on_hand_after": 1, "taken_from_online": 1, "from_quarantine": 1,
        "kept_for_packed": 1, "shortfall_before": 0, "shortfall_after": 0}
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved, row.unavailable, row.shortfall, row.needs_count) == (1, 1, 0, 0, False)
    assert not Reservation.objects.filter(reference=hold).exists()
    assert Reservation.objects.get(reference=f.reference).quantity == 1  # the packed order's unit is in its bag
    taken = TakenReservation.objects.get()
    assert (taken.reference, taken.units, taken.kind, taken.cause) == (hold, 1, "count", "count:HCM-Q1-A:C-EMPTY")
    assert taken.reconciled_at is not None
    assert OutboxEvent.objects.get(topic="hold.reduced").payload["dropped"] is True
    before = _writes()
    replay = shop["api_a"].post("/api/v1/pos/counts/", {"count_id": "C-EMPTY", "counted_at": res.json()["counted_at"],
                                                        "lines": [{"sku": "NON-LA", "counted": 0}]}, format="json")
    assert replay.status_code == 200 and replay.json() == res.json()
    assert _writes() == before
    assert audits_clean()


def test_a_count_settles_the_shortfall_less_what_later_sales_sold_beyond_the_ledger(shop):
    """A count at 10:00 is synced after a sale at 10:05 that sold beyond the ledger: the count says what the shelf
    had at 10:00, so only what it explains of the sale's shortfall is settled."""
    from tests.pos.conftest import backdate_ledger

    a, hat = shop["a"], shop["hat"]
    backdate_ledger()
    now = timezone.now()
    sync(shop["api_a"], [receipt([("NON-LA", 6)], sold_at=now - timedelta(minutes=5))])  # 3 on the ledger: 3 beyond
    assert (stock_of(a, hat).on_hand, stock_of(a, hat).shortfall) == (0, 3)
    # The shelf had 5 at 10:00 (the ledger said 3): of the 3 sold beyond, 2 are explained, 1 is still missing.
    res = shop["api_a"].post("/api/v1/pos/counts/", {"count_id": "C-10", "counted_at": (now - timedelta(minutes=10)).isoformat(),
                                                     "lines": [{"sku": "NON-LA", "counted": 5}]}, format="json")
    assert res.status_code == 201, res.content
    line = res.json()["lines"][0]
    assert (line["ledger_as_of"], line["shortfall_before"], line["shortfall_after"], line["on_hand_after"]) == (3, 3, 1, 0)
    row = stock_of(a, hat)
    assert (row.on_hand, row.shortfall, row.needs_count) == (0, 1, True)  # still waiting for a count
    assert _online(a, hat) == 0
    # A count now of the empty shelf settles it.
    res = shop["api_a"].post("/api/v1/pos/counts/", {"count_id": "C-11", "counted_at": timezone.now().isoformat(),
                                                     "lines": [{"sku": "NON-LA", "counted": 0}]}, format="json")
    assert res.status_code == 201 and res.json()["lines"][0]["shortfall_after"] == 0
    row = stock_of(a, hat)
    assert (row.on_hand, row.shortfall, row.needs_count) == (0, 0, False)
    assert audits_clean()


def test_a_count_takes_a_delivery_order_and_it_is_rerouted(shop, channel):
    a, hat = shop["a"], shop["hat"]
    f = _delivery(channel, {"NON-LA": 3})  # every hat at A reserved for the order
    res = shop["api_a"].post("/api/v1/pos/counts/", {"count_id": "C-2", "counted_at": timezone.now().isoformat(),
                                                     "lines": [{"sku": "NON-LA", "counted": 1}]}, format="json")
    assert res.status_code == 201, res.content
    assert res.json()["lines"][0]["taken_from_online"] == 2
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved) == (1, 1)
    decision = RoutingDecision.objects.get(order=f.order, kind=RoutingKind.STORE_EVENT)
    assert decision.cause == "count:HCM-Q1-A:C-2"
    assert Fulfillment.objects.get(order=f.order, store=shop["b"]).lines.get().qty == 2
    assert _pending() == 0
    assert audits_clean()


# --- damage ---------------------------------------------------------------------------------------------------------


def test_damage_over_http_takes_an_order_replays_and_refuses_a_reused_id(shop, channel):
    a, b, hat = shop["a"], shop["b"], shop["hat"]
    f = _delivery(channel, {"NON-LA": 2})  # A: 3 hats, 1 free
    body = {"report_id": "D-1", "lines": [{"sku": "NON-LA", "qty": 2}], "note": "crushed in the aisle"}
    res = shop["api_a"].post("/api/v1/pos/damage/", body, format="json")
    assert res.status_code == 201, res.content
    out = res.json()
    assert out["lines"] == [{"sku": "NON-LA", "qty": 2, "quarantined": 2, "taken_from_online": 1, "shortfall": 0}]
    assert out["needs_count"] is False and out["note"] == "crushed in the aisle"
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved, row.unavailable, row.shortfall) == (3, 1, 2, 0)
    movement = StockMovement.objects.get(reason=MovementReason.DAMAGE)
    assert (movement.delta_on_hand, movement.delta_reserved, movement.delta_unavailable) == (0, -1, 2)
    assert movement.reference == "damage:HCM-Q1-A:D-1"
    decision = RoutingDecision.objects.get(order=f.order, kind=RoutingKind.STORE_EVENT)
    assert decision.cause == "damage:HCM-Q1-A:D-1"
    assert Fulfillment.objects.get(order=f.order, store=b).lines.get().qty == 1
    assert _pending() == 0
    assert audits_clean()

    before = _writes()
    again = shop["api_a"].post("/api/v1/pos/damage/", body, format="json")
    assert again.status_code == 200 and again.json() == out
    assert _writes() == before and DamageReport.objects.count() == 1
    reused = shop["api_a"].post("/api/v1/pos/damage/", {**body, "lines": [{"sku": "NON-LA", "qty": 1}]}, format="json")
    assert reused.status_code == 422 and reused.json()["code"] == "receipt_id_reused"
    assert _writes() == before

    # More damaged than the ledger has: the rest of the order's units, then a shortfall waiting for a count.
    res = shop["api_a"].post("/api/v1/pos/damage/", {"report_id": "D-2", "lines": [{"sku": "NON-LA", "qty": 3}]},
                             format="json")
    assert res.status_code == 201, res.content
    assert res.json()["lines"] == [{"sku": "NON-LA", "qty": 3, "quarantined": 1, "taken_from_online": 1, "shortfall": 2}]
    assert res.json()["needs_count"] is True
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved, row.unavailable, row.shortfall, row.needs_count) == (3, 0, 3, 2, True)
    assert _online(a, hat) == 0
    assert not Fulfillment.objects.filter(order=f.order, store=a, status=FulfillmentStatus.ASSIGNED).exists()
    assert audits_clean()


def test_damage_input_is_checked(shop):
    unknown = shop["api_a"].post("/api/v1/pos/damage/", {"report_id": "D-X", "lines": [{"sku": "NOPE", "qty": 1}]},
                                 format="json")
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_sku"
    empty = shop["api_a"].post("/api/v1/pos/damage/", {"report_id": "D-Y", "lines": []}, format="json")
    assert empty.status_code == 400
    assert not DamageReport.objects.exists() and not StockMovement.objects.filter(reason="damage").exists()


# --- transfers and voids --------------------------------------------------------------------------------------------


def test_a_transfer_shipped_takes_a_checkout_hold(shop, api, channel):
    a, b, hat = shop["a"], shop["b"], shop["hat"]
    hold = _hold(api, a, "NON-LA", 2)
    body = {"transfer_id": "TR-H", "to_store": "HCM-Q1-B", "lines": [{"sku": "NON-LA", "qty": 3}]}
    res = shop["api_a"].post("/api/v1/pos/transfers/", body, format="json")
    assert res.status_code == 201, res.content
    row = stock_of(a, hat)
    assert (row.on_hand, row.reserved, row.shortfall, row.needs_count) == (0, 0, 0, False)
    assert not Reservation.objects.filter(reference=hold).exists()
    taken = TakenReservation.objects.get()
    assert (taken.reference, taken.units, taken.kind) == (hold, 2, "transfer")
    assert taken.cause == StockMovement.objects.get(reason=MovementReason.TRANSFER_OUT).reference
    told = OutboxEvent.objects.get(topic="hold.reduced")
    assert told.payload["event"] == "transfer" and told.payload["dropped"] is True and told.channel_id == channel.pk
    received = shop["api_b"].post(f"/api/v1/pos/transfers/{res.json()['id']}/receive/",
                                  {"lines": [{"sku": "NON-LA", "qty": 3}]}, format="json")
    assert received.status_code == 201, received.content
    assert stock_of(b, hat).on_hand == 6
    assert audits_clean()


def test_a_void_gives_back_the_shortfall_it_made(shop):
    a, hat = shop["a"], shop["hat"]
    r = receipt([("NON-LA", 5)], rid="V-1")
    out = sync(shop["api_a"], [r]).json()["results"][0]
    assert out["result"]["lines"][0]["shortfall"] == 2
    assert (stock_of(a, hat).on_hand, stock_of(a, hat).shortfall) == (0, 2)
    res = shop["api_a"].post("/api/v1/pos/sales/V-1/void/")
    assert res.status_code == 200, res.content
    assert res.json()["lines"] == [{"sku": "NON-LA", "qty": 5, "restocked": 3}]
    row = stock_of(a, hat)
    assert (row.on_hand, row.shortfall) == (3, 0)
    void = StockMovement.objects.get(reason=MovementReason.SALE_VOID)
    assert (void.delta_on_hand, void.delta_shortfall) == (3, -2)
    assert audits_clean()


def test_a_void_after_a_count_settled_the_shortfall_does_not_go_below_zero(shop):
    a, hat = shop["a"], shop["hat"]
    sync(shop["api_a"], [receipt([("NON-LA", 5)], rid="V-2")])
    res = shop["api_a"].post("/api/v1/pos/counts/", {"count_id": "C-V", "counted_at": timezone.now().isoformat(),
                                                     "lines": [{"sku": "NON-LA", "counted": 0}]}, format="json")
    assert res.status_code == 201 and res.json()["lines"][0]["shortfall_after"] == 0
    assert (stock_of(a, hat).shortfall, stock_of(a, hat).needs_count) == (0, False)
    assert shop["api_a"].post("/api/v1/pos/sales/V-2/void/").status_code == 200
    row = stock_of(a, hat)
    assert (row.on_hand, row.shortfall) == (3, 0)
    assert StockMovement.objects.get(reason=MovementReason.SALE_VOID).delta_shortfall == 0
    assert Order.objects.count() == 0
    assert audits_clean()
