"""Promises and orders under the price policy (PostgreSQL, through the API): each promise option's price and
delivery fee, placement re-pricing (409 price_changed when the option's price no longer holds), what an order stores,
codes reserved with the order and released when it is cancelled or fails, consumed when it completes.

The policy is tests.pricing.conftest's `pricing_chain` (q1-prices, hats-10, gold-5, tet-coupon/TET2025, fee bands
hcm-3km 15,000 ₫ free from 500,000 ₫ and hcm-10km 30,000 ₫)."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from inventory.models import Reservation
from o2o.models import IdempotencyRecord, OutboxEvent
from orders import services
from orders.models import FulfillmentStatus as S
from orders.models import Order, OrderStatus, Promise
from orders.pricing import selectors
from orders.pricing import services as pricing
from orders.pricing.exceptions import CodeUsedUp
from orders.pricing.models import Code, CodeUse, Promotion, PromotionApplication
from tests.pricing.conftest import BEN_THANH, CUSTOMER, PHONE, make_promotion, member_with

pytestmark = pytest.mark.django_db


def promise(api, body, status=201) -> dict:
    r = api.post("/api/v1/promises/", body, format="json")
    assert r.status_code == status, r.content
    return r.json()


def place(api, body, key, status=201) -> dict:
    r = api.post("/api/v1/orders/", {"customer": CUSTOMER, **body}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert r.status_code == status, r.content
    return r.json()


def option(quote: dict, option_id: str) -> dict:
    return next(o for o in quote["options"] if o["id"] == option_id)


def walk(number: str, *steps: str) -> Order:
    order = Order.objects.get(number=number)
    for f in order.fulfillments.order_by("pk"):
        for to in steps:
            services.transition_fulfillment(fulfillment=f.pk, to=to, actor="test")
    return Order.objects.get(pk=order.pk)


def assert_totals_hold(order: Order) -> None:
    lines = list(order.lines.all())
    assert order.total_vnd == order.subtotal_vnd - order.discount_vnd + order.delivery_fee_vnd
    assert order.subtotal_vnd == sum(line.qty * line.unit_price_vnd for line in lines)
    assert order.discount_vnd == sum(line.discount_vnd for line in lines)
    assert order.pricing["grand_total_vnd"] == order.total_vnd


# --- promise options --------------------------------------------------------------------------------------------------


def test_each_option_carries_its_price_and_delivery_fee(api, pricing_chain):
    q = promise(api, {"lines": [{"sku": "AO-THUN-M", "qty": 1}], "destination": BEN_THANH})
    express = option(q, "express_1h")
    assert [s["store"] for s in express["shipments"]] == ["HCM-Q1-001"]
    # The District 1 store sells at its price list; 0.7 km away: the first band.
    assert express["pricing"]["lines"][0]["price_source"] == "q1-prices"
    assert express["pricing"]["delivery_fee_rule"] == "hcm-3km" and express["delivery_fee_vnd"] == 15_000
    assert express["pricing"]["delivery_fee_reason"] == "up to 3 km"
    assert express["total_vnd"] == express["pricing"]["grand_total_vnd"] == 179_000 + 15_000
    # Pickup is free; at the District 3 store the base price.
    near, mid = option(q, "pickup:HCM-Q1-001"), option(q, "pickup:HCM-Q3-001")
    assert (near["delivery_fee_vnd"], near["pricing"]["delivery_fee_reason"], near["total_vnd"]) == (0, "pickup", 179_000)
    assert (mid["delivery_fee_vnd"], mid["total_vnd"]) == (0, 199_000)
    assert mid["pricing"]["lines"][0]["price_source"] == "base"


def test_delivery_is_free_over_the_bands_threshold_and_farther_bands_cost_more(api, pricing_chain):
    three = promise(api, {"lines": [{"sku": "AO-THUN-M", "qty": 3}], "destination": BEN_THANH})
    express = option(three, "express_1h")
    assert express["pricing"]["total_vnd"] == 537_000
    assert (express["delivery_fee_vnd"], express["pricing"]["delivery_fee_reason"]) == (0, "free over 500000 VND")
    # Four bags: only the Phú Mỹ Hưng store (5.4 km) has them.
    bags = promise(api, {"lines": [{"sku": "TUI-VAI", "qty": 4}], "destination": BEN_THANH})
    delivery = next(o for o in bags["options"] if o["method"] == "delivery")
    assert [s["store"] for s in delivery["shipments"]] == ["HCM-Q7-001"]
    assert (delivery["delivery_fee_vnd"], delivery["pricing"]["delivery_fee_rule"]) == (30_000, "hcm-10km")
    assert delivery["total_vnd"] == 396_000 + 30_000


def test_a_promise_prices_for_its_member_and_codes_and_keeps_them(api, pricing_chain):
    member_with(PHONE, tier="gold")
    q = promise(api, {"lines": [{"sku": "TUI-VAI", "qty": 4}], "destination": BEN_THANH,
                      "member_phone": "0901 234 567", "codes": ["tet2025"]})
    delivery = next(o for o in q["options"] if o["method"] == "delivery")
    applied = {p["promotion"]: p["discount_vnd"] for p in delivery["pricing"]["promotions"]}
    assert applied == {"gold-5": 19_800, "tet-coupon": 50_000}
    assert delivery["pricing"]["codes"] == [{"code": "TET2025", "promotion": "tet-coupon", "applied": True,
                                             "reason": ""}]
    assert Promise.objects.get(pk=q["id"]).pricing_input == {"member_phone": PHONE, "codes": ["tet2025"]}
    assert Code.objects.get(code="TET2025").uses == 0  # a promise reserves nothing


def test_a_bad_code_is_refused_at_the_promise(api, pricing_chain):
    body = {"lines": [{"sku": "AO-THUN-M", "qty": 1}], "destination": BEN_THANH}
    assert promise(api, {**body, "codes": ["NOPE"]}, status=422)["code"] == "code_unknown"
    Code.objects.filter(code="TET2025").update(uses=1)
    assert promise(api, {**body, "codes": ["TET2025"]}, status=422)["code"] == "code_used_up"


def test_a_code_some_options_cannot_use_shows_there_and_none_is_a_422(api, pricing_chain):
    q1_only = make_promotion(code="q1-app", kind="amount_off", amount_vnd=10_000, requires_code=True,
                             store_group=pricing_chain["q1"])
    Code.objects.create(code="Q1APP", promotion=q1_only)
    q = promise(api, {"lines": [{"sku": "AO-THUN-M", "qty": 1}], "destination": BEN_THANH, "codes": ["Q1APP"]})
    assert option(q, "pickup:HCM-Q1-001")["pricing"]["codes"][0]["applied"] is True
    elsewhere = option(q, "pickup:HCM-Q3-001")["pricing"]["codes"][0]
    assert (elsewhere["applied"], elsewhere["reason"]) == (False, "out_of_scope")
    refused = promise(api, {"lines": [{"sku": "AO-THUN-M", "qty": 1}], "pickup_store": "HCM-Q3-001",
                            "codes": ["Q1APP"]}, status=422)
    assert refused["code"] == "code_out_of_scope"


# --- placement --------------------------------------------------------------------------------------------------------


def test_an_order_placed_from_a_promise_stores_what_was_applied(api, pricing_chain):
    member_with(PHONE, tier="gold")
    lines = [{"sku": "AO-THUN-M", "qty": 3}, {"sku": "NON-LA", "qty": 1}]
    q = promise(api, {"lines": lines, "destination": BEN_THANH, "member_phone": PHONE, "codes": ["TET2025"]})
    shown = option(q, "express_1h")
    answer = place(api, {"lines": lines, "method": "delivery", "promise": q["id"], "option": "express_1h"}, key="k-1")

    order = Order.objects.get(number=answer["number"])
    assert_totals_hold(order)
    # 3 × 179,000 + 150,000 - 10 % of the hat; 5 % off for gold; 50,000 with the coupon; free delivery over 500,000.
    assert (order.subtotal_vnd, order.discount_vnd, order.delivery_fee_vnd) == (687_000, 15_000 + 33_600 + 50_000, 0)
    assert order.total_vnd == shown["total_vnd"] == 588_400
    assert order.pricing == shown["pricing"]
    by_sku = {line.product.sku: line for line in order.lines.select_related("product")}
    assert by_sku["AO-THUN-M"].unit_price_vnd == 179_000 and by_sku["NON-LA"].unit_price_vnd == 150_000
    assert {sku: line.discount_vnd for sku, line in by_sku.items()} == {
        line["sku"]: line["discount_vnd"] for line in shown["pricing"]["lines"]
    }
    # The answer and the detail show it; the code is reserved with the order; each promotion's result recorded.
    assert (answer["discount_vnd"], answer["delivery_fee_vnd"], answer["total_vnd"]) == (98_600, 0, 588_400)
    assert answer["pricing"] == shown["pricing"]
    assert {line["sku"]: line["net_vnd"] for line in answer["lines"]} == {
        line["sku"]: line["net_vnd"] for line in shown["pricing"]["lines"]
    }
    detail = api.get(f"/api/v1/orders/{order.number}/").json()
    assert {k: detail[k] for k in answer} == answer
    listed = api.get("/api/v1/orders/").json()["results"][0]
    assert listed["pricing"] == answer["pricing"] and listed["lines"] == answer["lines"]
    use = CodeUse.objects.get(code__code="TET2025")
    assert (use.reference, use.status, use.member_phone, use.store) == (
        f"order:{order.number}", CodeUse.Status.RESERVED, PHONE, "HCM-Q1-001"
    )
    results = {a.promotion.code: a.discount_vnd for a in PromotionApplication.objects.filter(
        reference=f"order:{order.number}")}
    assert results == {"hats-10": 15_000, "gold-5": 33_600, "tet-coupon": 50_000}
    placed = OutboxEvent.objects.get(topic="order.placed").payload
    assert (placed["discount_vnd"], placed["delivery_fee_vnd"], placed["total_vnd"]) == (98_600, 0, 588_400)


def test_an_order_without_a_promise_is_priced_at_its_routed_store(api, pricing_chain):
    answer = place(api, {"lines": [{"sku": "AO-THUN-M", "qty": 1}], "method": "delivery", "destination": BEN_THANH},
                   key="k-1")
    order = Order.objects.get(number=answer["number"])
    assert order.fulfillments.get().store.code == "HCM-Q1-001"
    assert (order.subtotal_vnd, order.delivery_fee_vnd, order.total_vnd) == (179_000, 15_000, 194_000)
    assert order.pricing["lines"][0]["price_source"] == "q1-prices"
    pickup = place(api, {"lines": [{"sku": "NON-LA", "qty": 1}], "method": "pickup", "pickup_store": "HCM-Q3-001"},
                   key="k-2")
    assert (pickup["subtotal_vnd"], pickup["discount_vnd"], pickup["delivery_fee_vnd"], pickup["total_vnd"]) == (
        150_000, 15_000, 0, 135_000)
    assert_totals_hold(Order.objects.get(number=pickup["number"]))


def test_a_promotion_that_ended_since_the_promise_is_a_409_with_the_new_price_and_nothing_written(api, pricing_chain):
    lines = [{"sku": "NON-LA", "qty": 1}]
    q = promise(api, {"lines": lines, "pickup_store": "HCM-Q1-001"})
    assert option(q, "pickup:HCM-Q1-001")["total_vnd"] == 135_000
    with transaction.atomic():
        Promotion.objects.filter(code="hats-10").update(ends_at=timezone.now() - timedelta(minutes=1))
        pricing.policy_changed()
    body = {"lines": lines, "method": "pickup", "pickup_store": "HCM-Q1-001", "promise": q["id"],
            "option": "pickup:HCM-Q1-001"}
    refused = place(api, body, key="k-1", status=409)
    assert refused["code"] == "price_changed"
    assert refused["details"]["pricing"]["total_vnd"] == 150_000 and refused["details"]["pricing"]["promotions"] == []
    assert refused["details"]["option"] == "pickup:HCM-Q1-001"
    assert not Order.objects.exists() and not Reservation.objects.exists() and not IdempotencyRecord.objects.exists()
    assert not PromotionApplication.objects.exists()
    # A new promise shows the new price, and the order placed with it gets it.
    again = promise(api, {"lines": lines, "pickup_store": "HCM-Q1-001"})
    placed = place(api, {**body, "promise": again["id"]}, key="k-2")
    assert placed["total_vnd"] == 150_000


def test_a_member_the_promise_was_not_quoted_for_gets_a_409_with_their_price(api, pricing_chain):
    member_with(PHONE, tier="gold")
    lines = [{"sku": "TUI-VAI", "qty": 1}]
    q = promise(api, {"lines": lines, "pickup_store": "HCM-Q3-001"})  # anonymous: no gold discount
    refused = place(api, {"lines": lines, "method": "pickup", "pickup_store": "HCM-Q3-001", "promise": q["id"],
                          "option": "pickup:HCM-Q3-001"}, key="k-1", status=409)
    assert refused["code"] == "price_changed" and refused["details"]["pricing"]["discount_vnd"] == 4_950


def test_a_single_use_code_goes_to_one_order_until_it_is_cancelled(api, pricing_chain):
    body = {"lines": [{"sku": "TUI-VAI", "qty": 2}], "method": "pickup", "pickup_store": "HCM-Q3-001"}
    big = {"lines": [{"sku": "AO-THUN-M", "qty": 2}], "method": "pickup", "pickup_store": "HCM-Q3-001",
           "codes": ["TET2025"]}
    first = place(api, big, key="k-1")
    assert first["discount_vnd"] == 50_000
    assert Code.objects.get(code="TET2025").uses == 1
    refused = place(api, {**body, "lines": [{"sku": "AO-THUN-M", "qty": 2}], "codes": ["TET2025"]}, key="k-2",
                    status=422)
    assert refused["code"] == "code_used_up" and Order.objects.count() == 1
    # Cancelled: the code comes back (its use released), and the next order can take it.
    r = api.post(f"/api/v1/orders/{first['number']}/cancel/", {"reason": "changed my mind"}, format="json")
    assert r.status_code == 200, r.content
    use = CodeUse.objects.get(reference=f"order:{first['number']}")
    assert use.status == CodeUse.Status.RELEASED and use.closed_at is not None
    assert Code.objects.get(code="TET2025").uses == 0
    assert PromotionApplication.objects.get(reference=f"order:{first['number']}").cancelled is True
    second = place(api, big, key="k-3")
    assert second["discount_vnd"] == 50_000 and Code.objects.get(code="TET2025").uses == 1
    api.post(f"/api/v1/orders/{first['number']}/cancel/", {}, format="json")  # cancelling again gives nothing back
    assert Code.objects.get(code="TET2025").uses == 1


def test_a_replayed_order_takes_no_code_twice(api, pricing_chain):
    body = {"lines": [{"sku": "AO-THUN-M", "qty": 2}], "method": "delivery", "destination": BEN_THANH,
            "codes": ["TET2025"]}
    first = place(api, body, key="k-1")
    again = place(api, body, key="k-1")
    assert again == first
    assert Order.objects.count() == 1 and CodeUse.objects.count() == 1
    assert Code.objects.get(code="TET2025").uses == 1 and PromotionApplication.objects.count() == 1


def test_completion_consumes_the_code_and_failure_releases_it(api, pricing_chain):
    make_promotion(code="open-5k", kind="amount_off", amount_vnd=5_000, requires_code=True)
    Code.objects.create(code="MANY", promotion=Promotion.objects.get(code="open-5k"), max_uses=None)
    pricing.policy_changed()
    body = {"lines": [{"sku": "TUI-VAI", "qty": 1}], "method": "pickup", "pickup_store": "HCM-Q3-001",
            "codes": ["MANY"]}
    done = place(api, body, key="k-1")
    order = walk(done["number"], S.PICKING, S.PACKED, S.READY_FOR_PICKUP, S.COLLECTED)
    assert order.status == OrderStatus.COMPLETED
    assert CodeUse.objects.get(reference=f"order:{done['number']}").status == CodeUse.Status.CONSUMED
    failed = place(api, body, key="k-2")
    order = walk(failed["number"], S.PICKING, S.PACKED, S.READY_FOR_PICKUP, S.NOT_COLLECTED)
    assert order.status == OrderStatus.FAILED
    assert CodeUse.objects.get(reference=f"order:{failed['number']}").status == CodeUse.Status.RELEASED
    assert Code.objects.get(code="MANY").uses == 1


def test_points_pay_up_to_the_discounted_total(api, pricing_chain):
    member_with(PHONE, points=3_000)  # enough for both holds (a refused order leaves its hold held)

    def hold(points: int, key: str) -> int:
        r = api.post("/api/v1/loyalty/redemptions/", {"phone": PHONE, "points": points}, format="json",
                     HTTP_IDEMPOTENCY_KEY=key)
        assert r.status_code == 201, r.content
        return r.json()["id"]

    body = {"lines": [{"sku": "NON-LA", "qty": 1}], "method": "pickup", "pickup_store": "HCM-Q3-001"}
    refused = place(api, {**body, "loyalty": {"hold_id": hold(1_400, "h-1")}}, key="k-1", status=422)
    assert refused["code"] == "points_exceed_total" and refused["details"]["total_vnd"] == 135_000
    paid = place(api, {**body, "loyalty": {"hold_id": hold(1_350, "h-2")}}, key="k-2")
    assert (paid["total_vnd"], paid["points_tender_vnd"]) == (135_000, 135_000)


# --- races lost after pricing: the order rolls back whole ------------------------------------------------------------


def test_a_code_lost_to_a_concurrent_order_after_pricing_leaves_no_half_order(channel, pricing_chain, monkeypatch):
    """Priced while the code looked free, taken by someone else before this order records it: CodeUsedUp, and the
    order (a single-store delivery, which otherwise skips the savepoint) is gone with its reservation."""
    real = selectors.codes_by_text

    def as_priced(texts):
        found = real(texts)
        for code in found.values():
            code.uses = 0  # what pricing saw a moment ago
        return found

    Code.objects.filter(code="TET2025").update(uses=1)
    monkeypatch.setattr(selectors, "codes_by_text", as_priced)
    with transaction.atomic():  # as inside the idempotency record's transaction
        with pytest.raises(CodeUsedUp):
            services.place_order(channel=channel, lines={"AO-THUN-M": 2}, customer_name="A", customer_phone=PHONE,
                                 method="delivery", actor="test", lat=BEN_THANH["lat"], lon=BEN_THANH["lon"],
                                 codes=["TET2025"])
        assert not Order.objects.exists() and not Reservation.objects.exists() and not CodeUse.objects.exists()


def test_a_budget_lost_after_pricing_is_a_409_and_nothing_is_written(api, pricing_chain, monkeypatch):
    make_promotion(code="first-100", percent=10, max_uses=100)
    Promotion.objects.filter(code="first-100").update(uses=100)
    real = selectors.budgets_for
    monkeypatch.setattr(selectors, "budgets_for", lambda policy, **_: {})  # pricing saw budget left
    refused = place(api, {"lines": [{"sku": "AO-THUN-M", "qty": 1}], "method": "delivery", "destination": BEN_THANH},
                    key="k-1", status=409)
    assert refused["code"] == "promotion_budget_exhausted"
    assert not Order.objects.exists() and not Reservation.objects.exists()
    assert not PromotionApplication.objects.exists() and Promotion.objects.get(code="first-100").uses == 100
    monkeypatch.setattr(selectors, "budgets_for", real)
    placed = place(api, {"lines": [{"sku": "AO-THUN-M", "qty": 1}], "method": "delivery", "destination": BEN_THANH},
                   key="k-2")
    assert [p["promotion"] for p in placed["pricing"]["promotions"]] == []  # exhausted: not applied
