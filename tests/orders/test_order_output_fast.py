"""The order placement's answer built without the serializers (placed_order_payload) is the serializer's answer
(represent(OrderOutput, ...)) for every shape placement writes: same keys in the same order, same values of the
same types, same JSON text, and the order detail's fields (PostgreSQL, through the API)."""

import json
from datetime import datetime

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from loyalty import services as loyalty
from orders import services
from orders.api import serializers as io
from orders.models import Order
from orders.pricing import services as pricing
from orders.pricing.models import DeliveryFeeRule
from tests.orders.conftest import BEN_THANH, CUSTOMER
from tests.pricing.conftest import make_code, make_promotion

pytestmark = pytest.mark.django_db

PHONE = "+84901234567"  # CUSTOMER's phone in E.164


@pytest.fixture
def placements(monkeypatch):
    """The orders the API's placements return, each with the PlacedOrder the view answers from."""
    orders: list[Order] = []
    real = services.place_order

    def spy(**kwargs):
        order = real(**kwargs)
        orders.append(order)
        return order

    monkeypatch.setattr(services, "place_order", spy)
    return orders


@pytest.fixture
def fast_calls(monkeypatch):
    calls = []
    real = io.placed_order_payload

    def spy(placed):
        calls.append(placed)
        return real(placed)

    monkeypatch.setattr(io, "placed_order_payload", spy)
    return calls


def _typed(value):
    """The value with every leaf's exact type, so 1 vs 1.0 vs True and str vs enum member tell apart; dicts keep
    their key order."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value), value)


def _json_texts(value) -> tuple[bytes, str]:
    return JSONRenderer().render(value), json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)


def _assert_same_as_serializer(placed) -> dict:
    fast = io.placed_order_payload(placed)
    slow = io.represent(io.OrderOutput, placed)
    assert fast == slow
    assert list(fast) == list(slow) == list(io.OrderOutput().fields)
    assert _typed(fast) == _typed(slow)
    assert _json_texts(fast) == _json_texts(slow)
    return fast


def _quote(api, body) -> dict:
    r = api.post("/api/v1/promises/", body, format="json")
    assert r.status_code == 201, r.content
    return r.json()


def _option(quote: dict, method: str) -> dict:
    return next(o for o in quote["options"] if o["method"] == method)


def _place_and_check(api, placements, fast_calls, body, key) -> tuple[Order, dict]:
    r = api.post("/api/v1/orders/", {"customer": CUSTOMER, **body}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert r.status_code == 201, r.content
    order = placements[-1]
    assert isinstance(order.placed, services.PlacedOrder)
    assert fast_calls and fast_calls[-1] is order.placed  # the view answered through the fast path
    payload = _assert_same_as_serializer(order.placed)
    answer = r.json()
    assert answer == json.loads(_json_texts(payload)[0])
    detail = api.get(f"/api/v1/orders/{answer['number']}/").json()
    assert {k: detail[k] for k in answer} == answer
    return order, answer


@pytest.mark.parametrize(
    "body, stores",
    [
        ({"lines": [{"sku": "AO-THUN-M", "qty": 2}], "method": "delivery", "destination": BEN_THANH}, ["HCM-Q1-001"]),
        (
            {"lines": [{"sku": "TUI-VAI", "qty": 4}, {"sku": "NON-LA", "qty": 1}], "method": "delivery",
             "destination": {**BEN_THANH, "address": "Chợ Bến Thành, Quận 1"}, "payment_state": "paid"},
            ["HCM-Q1-001", "HCM-Q7-001"],
        ),
        ({"lines": [{"sku": "NON-LA", "qty": 1}], "method": "pickup", "pickup_store": "HCM-Q3-001"}, ["HCM-Q3-001"]),
    ],
    ids=["delivery", "split", "pickup"],
)
def test_placement_without_promise(api, chain, placements, fast_calls, body, stores):
    order, answer = _place_and_check(api, placements, fast_calls, body, key="k-1")
    assert sorted(f["store"]["code"] for f in answer["fulfillments"]) == stores
    assert answer["promise_option"] == order.promise_option
    if body["method"] == "pickup":
        (f,) = answer["fulfillments"]
        assert answer["pickup_store"] == "HCM-Q3-001" and answer["destination_lat"] is None
        assert f["pickup"]["is_live"] is True and f["pickup"]["qr_payload"].endswith(f["pickup"]["code"])
        assert f["distance_km"] is None or isinstance(f["distance_km"], float)
    else:
        assert answer["pickup_store"] is None and all(f["pickup"] is None for f in answer["fulfillments"])
        assert isinstance(answer["destination_lat"], float)
    assert all(line["picked_qty"] is None for f in answer["fulfillments"] for line in f["lines"])


def test_delivery_with_promise(api, chain, placements, fast_calls):
    lines = [{"sku": "AO-THUN-M", "qty": 1}, {"sku": "TUI-VAI", "qty": 4}]
    quote = _quote(api, {"lines": lines, "destination": BEN_THANH})
    option = _option(quote, "delivery")
    _, answer = _place_and_check(
        api, placements, fast_calls,
        {"lines": lines, "method": "delivery", "promise": quote["id"], "option": option["id"]}, key="k-2",
    )
    assert answer["promise_option"] == option["id"]
    window_end = datetime.fromisoformat(option["window_end"])
    assert [datetime.fromisoformat(f["promised_by"]) for f in answer["fulfillments"]] == [window_end] * len(
        answer["fulfillments"]
    )


def test_pickup_with_promise(api, chain, placements, fast_calls):
    lines = [{"sku": "AO-THUN-M", "qty": 2}]
    quote = _quote(api, {"lines": lines, "pickup_store": "HCM-Q1-001"})
    option = _option(quote, "pickup")
    _, answer = _place_and_check(
        api, placements, fast_calls,
        {"lines": lines, "method": "pickup", "pickup_store": "HCM-Q1-001", "promise": quote["id"], "option": option["id"]}, key="k-3",
    )
    (f,) = answer["fulfillments"]
    assert answer["pickup_store"] == "HCM-Q1-001" and f["pickup"]["code"]


def test_order_paid_partly_with_points(api, chain, placements, fast_calls):
    member, _ = loyalty.get_or_create_member(phone=PHONE, name="Khách")
    loyalty.adjust_points(member=member, points=1_000, reason="welcome", staff="test")
    hold = api.post("/api/v1/loyalty/redemptions/", {"phone": PHONE, "points": 500}, format="json",
                    HTTP_IDEMPOTENCY_KEY="h-1")
    assert hold.status_code == 201, hold.content
    _, answer = _place_and_check(
        api, placements, fast_calls,
        {"lines": [{"sku": "AO-THUN-M", "qty": 2}], "method": "delivery", "destination": BEN_THANH,
         "loyalty": {"hold_id": hold.json()["id"]}},
        key="k-4",
    )
    assert (answer["subtotal_vnd"], answer["points_tender_vnd"], answer["points_redeemed"]) == (398_000, 50_000, 500)


def test_priced_order_with_promotions_a_code_and_a_delivery_fee(api, chain, placements, fast_calls):
    make_promotion(code="shirts-10", kind="percent_off", target="sku", skus=["AO-THUN-M"], percent=10)
    make_code(make_promotion(code="tet", kind="amount_off", amount_vnd=30_000, requires_code=True), "TET")
    DeliveryFeeRule.objects.create(code="anywhere", max_km=20, fee_vnd=25_000)
    pricing.policy_changed()
    lines = [{"sku": "AO-THUN-M", "qty": 2}, {"sku": "TUI-VAI", "qty": 1}]
    quote = _quote(api, {"lines": lines, "destination": BEN_THANH, "codes": ["TET"]})
    option = _option(quote, "delivery")
    _, answer = _place_and_check(
        api, placements, fast_calls,
        {"lines": lines, "method": "delivery", "promise": quote["id"], "option": option["id"], "codes": ["TET"]},
        key="k-7",
    )
    assert (answer["subtotal_vnd"], answer["discount_vnd"], answer["delivery_fee_vnd"]) == (497_000, 69_800, 25_000)
    assert answer["total_vnd"] == option["total_vnd"] == 452_200 and answer["pricing"] == option["pricing"]
    shirts = next(line for line in answer["lines"] if line["sku"] == "AO-THUN-M")
    assert shirts["net_vnd"] == 2 * 199_000 - shirts["discount_vnd"] and shirts["discount_vnd"] > 39_800


@pytest.mark.parametrize("zone", ["UTC", "Asia/Ho_Chi_Minh", "America/New_York"])
def test_datetimes_follow_the_current_time_zone(api, chain, placements, fast_calls, zone):
    body = {"lines": [{"sku": "NON-LA", "qty": 1}], "method": "pickup", "pickup_store": "HCM-Q3-001"}
    order, _ = _place_and_check(api, placements, fast_calls, body, key="k-5")
    with timezone.override(zone):
        payload = _assert_same_as_serializer(order.placed)
    if zone == "UTC":
        assert payload["created_at"].endswith("Z") and payload["fulfillments"][0]["promised_by"].endswith("Z")


def test_replay_answers_the_same(api, chain, placements, fast_calls):
    body = {"customer": CUSTOMER, "lines": [{"sku": "AO-THUN-M", "qty": 1}], "method": "delivery",
            "destination": BEN_THANH}
    first = api.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    again = api.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert first.status_code == again.status_code == 201
    assert len(placements) == len(fast_calls) == 1  # the replay answers the stored payload
    assert first.json() == again.json() == json.loads(JSONRenderer().render(io.placed_order_payload(placements[0].placed)))


def test_an_order_without_placed_is_read_back(api, chain, monkeypatch, fast_calls):
    real = services.place_order

    def without_placed(**kwargs):
        order = real(**kwargs)
        del order.placed
        return order

    monkeypatch.setattr(services, "place_order", without_placed)
    body = {"customer": CUSTOMER, "lines": [{"sku": "NON-LA", "qty": 1}], "method": "pickup",
            "pickup_store": "HCM-Q3-001"}
    r = api.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-6")
    assert r.status_code == 201, r.content
    assert fast_calls == []
    answer = r.json()
    detail = api.get(f"/api/v1/orders/{answer['number']}/").json()
    assert {k: detail[k] for k in answer} == answer and answer["fulfillments"][0]["pickup"]["code"]
