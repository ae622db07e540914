"""Cross-channel returns through the APIs the tills and the website use: stock back at the receiving store, refunds
split by tender, points given back and reversed, partial returns never beyond the purchase, quarantine, replays,
the return window, store isolation and bad input."""

import math
from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import MovementReason, StockMovement
from loyalty.models import Member, Posting
from o2o.models import OutboxEvent
from orders import services as order_services
from orders.models import Fulfillment, Order
from orders.models import FulfillmentStatus as S
from orders.pos.models import TillReceipt, TillReceiptLine
from orders.returns import services
from orders.returns.models import Disposition, Refund, Return, ReturnLine, ReturnStatus
from tests.conftest import put_stock
from tests.factories import ProductFactory
from tests.returns.conftest import (
    PHONE,
    audits_clean,
    deliver,
    give_points,
    member_available,
    stock_of,
    till,
    till_return,
    till_sale,
    web_order,
)

pytestmark = pytest.mark.django_db


def test_web_order_returned_at_another_store(chain, channel):
    mid, shirt, pot = chain["mid"], chain["shirt"], chain["pot"]
    order = deliver(web_order(channel, {shirt.sku: 2, pot.sku: 1}, discount_vnd=70_000, points=1_000))
    assert order.status == "completed" and order.earn_posting_id  # earned at completion (orders.loyalty_tender)
    shipped_from = order.fulfillments.get().store
    assert shipped_from != mid
    before_ship = stock_of(shipped_from, shirt).on_hand
    before_mid = stock_of(mid, shirt).on_hand
    member_before = Member.objects.get(pk=order.member_id)
    earned = Posting.objects.get(pk=order.earn_posting_id).points

    r = till_return(till(mid), {"order": order.number, "lines": [{"sku": shirt.sku, "qty": 1}], "reason": "size"})

    assert r.status_code == 201, r.content
    body = r.json()
    assert body["status"] == "refunded" and body["receiving_store"] == mid.code
    # The shirt line's share of the 630,000 ₫ paid: 400,000 of 700,000 of value, i.e. 360,000 for two shirts.
    line_net = 630_000 * 400_000 // 700_000
    value = line_net // 2
    money_paid = 630_000 - 100_000
    money = money_paid * value // 630_000
    points_back = math.ceil(1_000 * value / 630_000)
    points_reversed = math.floor(earned * value / 630_000)
    assert body["refund_vnd"] == value and body["refund_money_vnd"] == money
    assert body["points_given_back"] == points_back and body["points_reversed"] == points_reversed
    refunds = {x["tender"]: x for x in body["refunds"]}
    assert refunds["online"]["amount_vnd"] == money
    assert refunds["points"] == {"tender": "points", "amount_vnd": value - money, "points": points_back}
    # Stock up where it was received, not where it was sold.
    assert stock_of(mid, shirt).on_hand == before_mid + 1
    assert stock_of(shipped_from, shirt).on_hand == before_ship
    assert StockMovement.objects.filter(store=mid, product=shirt, reason=MovementReason.RETURN).count() == 1
    # Online points are still pending (the return window): the reversal comes out of pending.
    member = Member.objects.get(pk=order.member_id)
    assert member.available == member_before.available + points_back
    assert member.pending == member_before.pending - points_reversed
    topics = list(OutboxEvent.objects.filter(aggregate=f"order:{order.number}", topic__startswith="return.")
                  .values_list("topic", flat=True))
    assert topics == ["return.opened", "return.received", "return.refunded"]
    assert audits_clean()


def test_returning_the_rest_refunds_exactly_what_was_paid(chain, channel):
    shirt, pot = chain["shirt"], chain["pot"]
    order = deliver(web_order(channel, {shirt.sku: 3, pot.sku: 1}, discount_vnd=77_777, points=333))
    earned = Posting.objects.get(pk=order.earn_posting_id).points
    for store, lines in ((chain["mid"], [{"sku": shirt.sku, "qty": 1}]),
                         (chain["far"], [{"sku": shirt.sku, "qty": 1}, {"sku": pot.sku, "qty": 1}]),
                         (chain["mid"], [{"sku": shirt.sku, "qty": 1, "condition": "damaged"}])):
        assert till_return(till(store), {"order": order.number, "lines": lines}).status_code == 201
    returns = Return.objects.filter(order=order)
    assert sum(r.refund_vnd for r in returns) == order.total_vnd
    assert sum(r.refund_money_vnd for r in returns) == order.total_vnd - order.points_tender_vnd
    assert sum(r.points_given_back for r in returns) == 333
    assert sum(r.points_reversed for r in returns) == earned
    again = till_return(till(chain["far"]), {"order": order.number, "lines": [{"sku": pot.sku, "qty": 1}]})
    assert again.status_code == 409 and again.json()["code"] == "return_exceeds_purchase"
    assert audits_clean()


def test_receipt_of_store_a_returned_at_store_b(chain):
    a, b, shirt = chain["near"], chain["far"], chain["shirt"]
    give_points(2_000)
    sale = till_sale(till(a), [(shirt.sku, 2, 200_000)], phone=PHONE,
                     tenders=[{"type": "cash", "amount_vnd": 100_000}, {"type": "card", "amount_vnd": 200_000},
                              {"type": "points", "points": 1_000}])
    receipt = TillReceipt.objects.get(store=a, receipt_id=sale["receipt_id"])
    earned = Posting.objects.get(pk=receipt.earn_posting_id).points
    a_before, b_before = stock_of(a, shirt).on_hand, stock_of(b, shirt).on_hand
    points_before = member_available()

    r = till_return(till(b), {"receipt": {"store": a.code, "receipt_id": sale["receipt_id"]},
                              "lines": [{"sku": shirt.sku, "qty": 1}]})

    assert r.status_code == 201, r.content
    body = r.json()
    assert body["receipt"] == {"store": a.code, "receipt_id": sale["receipt_id"]}
    assert body["refund_vnd"] == 200_000 and body["refund_money_vnd"] == 150_000
    assert {x["tender"]: x["amount_vnd"] for x in body["refunds"]} == {"cash": 50_000, "card": 100_000, "points": 50_000}
    assert body["points_given_back"] == 500 and body["points_reversed"] == earned // 2
    assert stock_of(b, shirt).on_hand == b_before + 1 and stock_of(a, shirt).on_hand == a_before
    assert member_available() == points_before + 500 - earned // 2
    assert TillReceiptLine.objects.get(receipt=receipt).refunded_qty == 1
    # The selling till can no longer void the receipt (that would undo the returned unit a second time).
    void = till(a).post(f"/api/v1/pos/sales/{sale['receipt_id']}/void/")
    assert void.status_code == 409 and void.json()["code"] == "receipt_refunded"
    assert OutboxEvent.objects.filter(aggregate=f"receipt:{a.code}:{sale['receipt_id']}",
                                      topic="return.refunded").count() == 1
    assert audits_clean()


def test_other_store_receipts_can_be_refused_by_policy(chain, settings):
    settings.RETURNS_ACCEPT_OTHER_STORE_RECEIPTS = False
    a, b, shirt = chain["near"], chain["mid"], chain["shirt"]
    sale = till_sale(till(a), [(shirt.sku, 1, 200_000)])
    ref = {"receipt": {"store": a.code, "receipt_id": sale["receipt_id"]}, "lines": [{"sku": shirt.sku, "qty": 1}]}
    refused = till_return(till(b), ref)
    assert refused.status_code == 422 and refused.json()["code"] == "other_store_receipt_refused"
    assert till_return(till(a), ref).status_code == 201


def test_partial_returns_up_to_what_was_bought_with_till_refunds(chain):
    a, b, c, shirt = chain["near"], chain["mid"], chain["far"], chain["shirt"]
    sale = till_sale(till(a), [(shirt.sku, 3, 199_000, 10_000)])
    rid = sale["receipt_id"]
    # One unit refunded at the selling till (the POS's own refund), two returned at other stores.
    refund = till(a).post(f"/api/v1/pos/sales/{rid}/refunds/",
                          {"refund_id": "RF-1", "lines": [{"sku": shirt.sku, "qty": 1}]}, format="json")
    assert refund.status_code == 201, refund.content
    ref = {"receipt": {"store": a.code, "receipt_id": rid}}
    assert till_return(till(b), {**ref, "lines": [{"sku": shirt.sku, "qty": 1}]}).status_code == 201
    assert till_return(till(c), {**ref, "lines": [{"sku": shirt.sku, "qty": 1}]}).status_code == 201

    refused = till_return(till(b), {**ref, "lines": [{"sku": shirt.sku, "qty": 1}]})
    assert refused.status_code == 409
    assert refused.json()["code"] == "return_exceeds_purchase"
    assert refused.json()["details"] == {"sku": shirt.sku, "returnable": 0, "requested": 1}
    too_late_at_till = till(a).post(f"/api/v1/pos/sales/{rid}/refunds/",
                                    {"refund_id": "RF-2", "lines": [{"sku": shirt.sku, "qty": 1}]}, format="json")
    assert too_late_at_till.status_code == 409
    line = TillReceiptLine.objects.get(receipt__store=a, receipt__receipt_id=rid)
    assert line.refunded_qty == line.qty == 3
    # The till refund is a return too (one refund door): together exactly the line's net value, never more.
    refunded = list(Return.objects.filter(receipt=line.receipt).order_by("pk").values_list("refund_vnd", flat=True))
    assert len(refunded) == 3 and refunded[0] == refund.json()["amount_vnd"]
    assert sum(refunded) == 3 * 199_000 - 10_000
    assert audits_clean()


def test_damaged_item_is_kept_out_of_atp_until_inspected(chain, channel):
    mid, shirt = chain["mid"], chain["shirt"]
    order = deliver(web_order(channel, {shirt.sku: 2}))
    before = stock_of(mid, shirt)
    r = till_return(till(mid), {"order": order.number, "lines": [{"sku": shirt.sku, "qty": 2, "condition": "damaged"}]})
    assert r.status_code == 201
    after = stock_of(mid, shirt)
    assert (after.on_hand, after.unavailable) == (before.on_hand + 2, before.unavailable + 2)
    assert after.available == before.available  # nothing more for sale online
    availability = till(mid).get(f"/api/v1/pos/stock/{shirt.sku}/").json()
    assert availability["unavailable"] == after.unavailable
    line = ReturnLine.objects.get(ret__number=r.json()["number"])
    assert line.disposition == Disposition.QUARANTINED

    services.dispose_quarantined(line=line, write_off=True, actor="staff:test")
    gone = stock_of(mid, shirt)
    assert (gone.on_hand, gone.unavailable) == (before.on_hand, before.unavailable)
    with pytest.raises(Exception) as twice:
        services.dispose_quarantined(line=line, write_off=False, actor="staff:test")
    assert getattr(twice.value, "code", None) == "return_not_open"
    assert audits_clean()


def test_quarantined_item_back_on_sale_through_the_admin(chain, channel, admin_client):
    mid, shirt = chain["mid"], chain["shirt"]
    order = deliver(web_order(channel, {shirt.sku: 1}))
    r = till_return(till(mid), {"order": order.number, "lines": [{"sku": shirt.sku, "qty": 1,
                                                                  "condition": "missing_parts"}]})
    line = ReturnLine.objects.get(ret__number=r.json()["number"])
    before = stock_of(mid, shirt)
    response = admin_client.post("/admin/returns/returnline/", {"action": "back_on_sale", "_selected_action": [line.pk]})
    assert response.status_code == 302
    after = stock_of(mid, shirt)
    assert (after.on_hand, after.unavailable, after.available) == (before.on_hand, before.unavailable - 1,
                                                                   before.available + 1)
    assert ReturnLine.objects.get(pk=line.pk).disposition == Disposition.RELEASED
    assert admin_client.get(f"/admin/returns/return/{line.ret_id}/change/").status_code == 200
    assert audits_clean()


def test_replayed_return_is_idempotent(chain, channel):
    mid, shirt = chain["mid"], chain["shirt"]
    order = deliver(web_order(channel, {shirt.sku: 2}))
    client = till(mid)
    body = {"order": order.number, "lines": [{"sku": shirt.sku, "qty": 1}]}
    first = till_return(client, body, idem="ret-1")
    on_hand = stock_of(mid, shirt).on_hand
    second = till_return(client, body, idem="ret-1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert Return.objects.filter(order=order).count() == 1
    assert stock_of(mid, shirt).on_hand == on_hand
    other = till_return(client, {**body, "reason": "another"}, idem="ret-1")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert Return.objects.filter(order=order).count() == 1


def test_return_window_and_non_returnable_goods(chain, channel):
    mid, shirt, pot, brief = chain["mid"], chain["shirt"], chain["pot"], chain["brief"]
    order = deliver(web_order(channel, {shirt.sku: 1, pot.sku: 1, brief.sku: 1}))
    Fulfillment.objects.filter(order=order).update(status_changed_at=timezone.now() - timedelta(days=8))
    client = till(mid)
    late = till_return(client, {"order": order.number, "lines": [{"sku": pot.sku, "qty": 1}]})
    assert late.status_code == 422
    assert late.json()["code"] == "return_window_closed"
    assert late.json()["details"]["window_days"] == 7
    never = till_return(client, {"order": order.number, "lines": [{"sku": brief.sku, "qty": 1}]})
    assert never.status_code == 422 and never.json()["code"] == "not_returnable"
    assert till_return(client, {"order": order.number, "lines": [{"sku": shirt.sku, "qty": 1}]}).status_code == 201
    Fulfillment.objects.filter(order=order).update(status_changed_at=timezone.now() - timedelta(days=31))
    order2 = deliver(web_order(channel, {shirt.sku: 1}))
    Fulfillment.objects.filter(order=order2).update(status_changed_at=timezone.now() - timedelta(days=31))
    closed = till_return(client, {"order": order2.number, "lines": [{"sku": shirt.sku, "qty": 1}]})
    assert closed.status_code == 422 and closed.json()["details"]["window_days"] == 30
    assert Return.objects.filter(order=order2).count() == 0


def test_a_store_sees_only_returns_it_received(chain, channel):
    b, c, shirt = chain["mid"], chain["far"], chain["shirt"]
    order = deliver(web_order(channel, {shirt.sku: 2}))
    at_c = till_return(till(c), {"order": order.number, "lines": [{"sku": shirt.sku, "qty": 1}]}).json()["number"]
    at_b = till_return(till(b), {"order": order.number, "lines": [{"sku": shirt.sku, "qty": 1}]}).json()["number"]
    client_b = till(b, "till-2")
    assert client_b.get(f"/api/v1/pos/returns/{at_c}/").status_code == 404
    assert client_b.post(f"/api/v1/pos/returns/{at_c}/receive/", {}, format="json").status_code == 404
    assert [x["number"] for x in client_b.get("/api/v1/pos/returns/").json()["results"]] == [at_b]
    assert till(c).get(f"/api/v1/pos/returns/{at_c}/").status_code == 200


def test_bad_input_is_a_clear_4xx(chain, channel, api):
    mid, shirt = chain["mid"], chain["shirt"]
    client = till(mid)
    open_order = web_order(channel, {shirt.sku: 1})
    delivered = deliver(web_order(channel, {shirt.sku: 1}))
    cases = [
        ({"order": delivered.number}, 400, "invalid"),
        ({"order": delivered.number, "lines": []}, 400, "invalid"),
        ({"order": delivered.number, "lines": [{"sku": shirt.sku, "qty": 0}]}, 400, "invalid"),
        ({"order": delivered.number, "lines": [{"sku": shirt.sku, "qty": "x"}]}, 400, "invalid"),
        ({"order": delivered.number, "lines": [{"sku": shirt.sku, "qty": 1, "condition": "wet"}]}, 400, "invalid"),
        ({"order": delivered.number, "receipt": {"store": mid.code, "receipt_id": "R"},
          "lines": [{"sku": shirt.sku, "qty": 1}]}, 400, "invalid"),
        ({"lines": [{"sku": shirt.sku, "qty": 1}]}, 400, "invalid"),
        ({"order": "WEB-NOPE", "lines": [{"sku": shirt.sku, "qty": 1}]}, 404, "purchase_not_found"),
        ({"receipt": {"store": mid.code, "receipt_id": "NOPE"}, "lines": [{"sku": shirt.sku, "qty": 1}]}, 404,
         "purchase_not_found"),
        ({"order": delivered.number, "lines": [{"sku": "NO-SUCH", "qty": 1}]}, 422, "unknown_sku"),
        ({"order": delivered.number, "lines": [{"sku": chain["pot"].sku, "qty": 1}]}, 409, "return_exceeds_purchase"),
        ({"order": delivered.number, "lines": [{"sku": shirt.sku, "qty": 2}]}, 409, "return_exceeds_purchase"),
        ({"order": open_order.number, "lines": [{"sku": shirt.sku, "qty": 1}]}, 409, "not_handed_over"),
        ([1, 2, 3], 400, "invalid"),
    ]
    for body, status, code in cases:
        r = till_return(client, body)
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.content)
    assert client.post("/api/v1/pos/returns/", "{not json", content_type="application/json",
                       HTTP_IDEMPOTENCY_KEY="x").status_code == 400
    no_key = client.post("/api/v1/pos/returns/", {"order": delivered.number, "lines": [{"sku": shirt.sku, "qty": 1}]},
                         format="json")
    assert no_key.status_code == 400
    assert api.post("/api/v1/pos/returns/", {}, format="json").status_code in (401, 403)  # a website key
    assert client.get("/api/v1/returns/").status_code in (401, 403)  # a store key on the website's surface
    assert client.get("/api/v1/pos/returns/NOPE/").status_code == 404
    mid.offers_returns = False
    mid.save(update_fields=["offers_returns"])
    closed = till_return(till(mid, "till-9"), {"order": delivered.number, "lines": [{"sku": shirt.sku, "qty": 1}]})
    assert closed.status_code == 422 and closed.json()["code"] == "store_not_accepting_returns"
    assert Return.objects.count() == 0
    assert audits_clean()


def test_courier_collection_routed_received_and_refunded(chain, channel, api, admin_client):
    near, mid, far, shirt = chain["near"], chain["mid"], chain["far"], chain["shirt"]
    order = deliver(web_order(channel, {shirt.sku: 2}))
    # The customer lives next to `near`; `mid` is short of shirts and only ~1.9 km further.
    from inventory import services as stock_services

    stock_services.set_stock_levels(store=mid, product=shirt, actor="test", target=20)
    pickup = {"lat": 10.7750, "lon": 106.7020}
    r = api.post("/api/v1/returns/", {"order": order.number, "lines": [{"sku": shirt.sku, "qty": 1}],
                                      "collection": pickup, "reason": "changed my mind"},
                 format="json", HTTP_IDEMPOTENCY_KEY="collect-1")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["status"] == "opened" and body["receiving_store"] == mid.code
    routing = body["routing"]
    chosen = [c for c in routing["candidates"] if c["chosen"]]
    assert [c["store"] for c in chosen] == [mid.code]
    nearest = min(routing["candidates"], key=lambda c: c["distance_km"])
    assert nearest["store"] == near.code and "short of target" in routing["reason"]
    # The units are spoken for while the parcel travels: a second return of both shirts is refused.
    assert till_return(till(far), {"order": order.number, "lines": [{"sku": shirt.sku, "qty": 2}]}).status_code == 409
    assert api.get(f"/api/v1/returns/{body['number']}/").json()["status"] == "opened"
    on_hand = stock_of(mid, shirt).on_hand

    received = till(mid).post(f"/api/v1/pos/returns/{body['number']}/receive/", {}, format="json")
    assert received.status_code == 201, received.content
    assert received.json()["status"] == "refunded" and received.json()["refund_vnd"] == order.total_vnd // 2
    assert stock_of(mid, shirt).on_hand == on_hand + 1
    again = till(mid).post(f"/api/v1/pos/returns/{body['number']}/receive/", {}, format="json")
    assert again.status_code == 200 and stock_of(mid, shirt).on_hand == on_hand + 1
    assert till(far).post(f"/api/v1/pos/returns/{body['number']}/receive/", {}, format="json").status_code == 404
    listed = api.get("/api/v1/returns/").json()["results"]
    assert [x["number"] for x in listed] == [body["number"]]
    stored = Return.objects.get(number=body["number"])
    assert stored.routing.problem["returns"][0]["id"] == stored.number  # replayable with route_returns
    page = admin_client.get(f"/admin/returns/return/{stored.pk}/change/")
    assert page.status_code == 200 and "short of target" in page.content.decode()
    assert audits_clean()


def test_cancelled_collection_gives_the_units_back(chain, channel, api):
    shirt = chain["shirt"]
    order = deliver(web_order(channel, {shirt.sku: 1}))
    body = {"order": order.number, "lines": [{"sku": shirt.sku, "qty": 1}], "collection": {"lat": 10.78, "lon": 106.69}}
    number = api.post("/api/v1/returns/", body, format="json", HTTP_IDEMPOTENCY_KEY="c-1").json()["number"]
    assert api.post("/api/v1/returns/", body, format="json", HTTP_IDEMPOTENCY_KEY="c-2").status_code == 409
    cancelled = api.post(f"/api/v1/returns/{number}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == ReturnStatus.CANCELLED
    assert api.post("/api/v1/returns/", body, format="json", HTTP_IDEMPOTENCY_KEY="c-3").status_code == 201
    store = Return.objects.get(number=number).receiving_store
    assert till(store).post(f"/api/v1/pos/returns/{number}/receive/", {}, format="json").status_code == 409
    assert not Refund.objects.filter(ret__number=number).exists()
    assert Order.objects.get(pk=order.pk).status == "completed"
    assert audits_clean()


def test_partly_handed_over_order_returns_only_what_was_handed_over(chain, channel):
    """A split order: one parcel delivered, the other failed and back in its store. The order earned on, and kept
    the points for, the delivered part only; returning that part reverses all of the earning and gives back all
    the points still spent."""
    cap, bag = ProductFactory(sku="MU-LUOI", price_vnd=150_000), ProductFactory(sku="TUI-DA", price_vnd=450_000)
    put_stock(chain["near"], cap, 2)
    put_stock(chain["far"], bag, 2)
    order = web_order(channel, {cap.sku: 1, bag.sku: 1}, points=600, discount_vnd=60_000)
    parcels = {f.store_id: f for f in order.fulfillments.all()}
    assert set(parcels) == {chain["near"].pk, chain["far"].pk}
    for to in (S.PICKING, S.PACKED, S.HANDED_TO_COURIER, S.DELIVERED):
        order_services.transition_fulfillment(fulfillment=parcels[chain["near"].pk].pk, to=to, actor="test")
    for to in (S.PICKING, S.PACKED, S.HANDED_TO_COURIER, S.DELIVERY_FAILED, S.RETURNED_TO_STORE):
        order_services.transition_fulfillment(fulfillment=parcels[chain["far"].pk].pk, to=to, actor="test")
    order = Order.objects.get(pk=order.pk)
    assert order.status == "completed" and order.earn_posting_id

    refused = till_return(till(chain["mid"]), {"order": order.number, "lines": [{"sku": bag.sku, "qty": 1}]})
    assert refused.status_code == 409 and refused.json()["code"] == "not_handed_over"
    r = till_return(till(chain["mid"]), {"order": order.number, "lines": [{"sku": cap.sku, "qty": 1}]})
    assert r.status_code == 201, r.content
    assert r.json()["refund_vnd"] == order.total_vnd * 150_000 // 600_000
    redemption = Posting.objects.get(pk=order.redeem_posting_id)
    given_back = sum(Posting.objects.filter(original=redemption, kind="refund").values_list("points", flat=True))
    assert given_back == 600  # the failed parcel's share by the order, the delivered one's by the return
    earning = Posting.objects.get(pk=order.earn_posting_id)
    reversed_points = sum(Posting.objects.filter(original=earning, kind="reverse").values_list("points", flat=True))
    assert reversed_points == earning.points
    assert audits_clean()


def test_parcel_returned_before_the_order_completes_earns_nothing_for_it(chain, channel):
    """A split order: the first parcel is delivered and returned while the second is still on its way. When the
    order completes it earns on both parcels, and takes back at once what the early return would have reversed,
    so the member keeps points only for the goods kept; a later return of the rest reverses the remainder."""
    cap, bag = ProductFactory(sku="MU-SOM", price_vnd=150_000), ProductFactory(sku="TUI-SOM", price_vnd=450_000)
    put_stock(chain["near"], cap, 2)
    put_stock(chain["far"], bag, 2)
    order = web_order(channel, {cap.sku: 1, bag.sku: 1}, points=600)
    parcels = {f.store_id: f for f in order.fulfillments.all()}
    for to in (S.PICKING, S.PACKED, S.HANDED_TO_COURIER, S.DELIVERED):
        order_services.transition_fulfillment(fulfillment=parcels[chain["near"].pk].pk, to=to, actor="test")
    early = till_return(till(chain["mid"]), {"order": order.number, "lines": [{"sku": cap.sku, "qty": 1}]})
    assert early.status_code == 201, early.content
    assert early.json()["points_reversed"] == 0  # nothing earned yet
    for to in (S.PICKING, S.PACKED, S.HANDED_TO_COURIER, S.DELIVERED):
        order_services.transition_fulfillment(fulfillment=parcels[chain["far"].pk].pk, to=to, actor="test")
    order = Order.objects.get(pk=order.pk)
    assert order.status == "completed" and order.earn_posting_id
    earning = Posting.objects.get(pk=order.earn_posting_id)
    reversed_now = sum(Posting.objects.filter(original=earning, kind="reverse").values_list("points", flat=True))
    basis = order.total_vnd  # everything was handed over
    refunded = early.json()["refund_vnd"]
    assert reversed_now == math.floor(earning.points * refunded / basis) and reversed_now > 0

    rest = till_return(till(chain["mid"]), {"order": order.number, "lines": [{"sku": bag.sku, "qty": 1}]})
    assert rest.status_code == 201, rest.content
    total_reversed = sum(Posting.objects.filter(original=earning, kind="reverse").values_list("points", flat=True))
    assert total_reversed == earning.points  # everything came back: nothing earned is kept
    assert audits_clean()
