"""The promise and order API as the website uses it (sales channel key)."""

import pytest
from rest_framework.test import APIClient

from inventory.models import Reservation, StockMovement
from inventory.selectors import stock_ledger_differences
from o2o.models import SalesChannelKey
from orders import services
from orders.models import Order
from tests.factories import SalesChannelFactory, StoreFactory
from tests.orders.conftest import BEN_THANH, CUSTOMER, HANOI

pytestmark = pytest.mark.django_db


def _place(api, body, key="k-1"):
    return api.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_quote_place_and_read_back(api, chain):
    quote = api.post(
        "/api/v1/promises/", {"lines": [{"sku": "AO-THUN-M", "qty": 2}], "destination": BEN_THANH}, format="json"
    )
    assert quote.status_code == 201, quote.content
    body = quote.json()
    assert "routing" not in body["options"][0]
    option = body["options"][0]
    assert option["kind"] == "express_1h" and option["shipments"][0]["store"] == "HCM-Q1-001"
    # Times in the chain's time zone (Asia/Ho_Chi_Minh), as every other time the API renders
    for value in (option["window_start"], option["window_end"], option["shipments"][0]["ready_by"], body["expires_at"]):
        assert value.endswith("+07:00"), value
    placed = _place(
        api,
        {
            "lines": [{"sku": "AO-THUN-M", "qty": 2}], "customer": CUSTOMER, "method": "delivery",
            "promise": body["id"], "option": option["id"], "payment_state": "paid",
        },
    )
    assert placed.status_code == 201, placed.content
    order = placed.json()
    assert order["number"].startswith("WEB-") and order["customer_phone"] == "+84901234567"
    (f,) = order["fulfillments"]
    assert f["store"]["code"] == "HCM-Q1-001" and f["lines"] == [{"sku": "AO-THUN-M", "qty": 2, "picked_qty": None}]
    assert f["promised_by"] == option["window_end"] and f["pickup"] is None
    detail = api.get(f"/api/v1/orders/{order['number']}/").json()
    (decision,) = detail["routing"]
    assert decision["kind"] == "initial" and decision["reason"]
    chosen = [c for c in decision["candidates"] if c["chosen"]]
    assert chosen[0]["store"] == "HCM-Q1-001" and chosen[0]["stock"] == {"AO-THUN-M": 3}
    listing = api.get("/api/v1/orders/").json()
    assert listing["count"] == 1 and listing["results"][0]["number"] == order["number"]


def test_pickup_order_has_code(api, chain):
    r = _place(
        api,
        {"lines": [{"sku": "NON-LA", "qty": 1}], "customer": CUSTOMER, "method": "pickup", "pickup_store": "HCM-Q3-001"},
    )
    assert r.status_code == 201, r.content
    pickup = r.json()["fulfillments"][0]["pickup"]
    assert len(pickup["code"]) == 6 and pickup["qr_payload"].endswith(pickup["code"])


def test_idempotent_placement(api, chain):
    body = {"lines": [{"sku": "AO-THUN-M", "qty": 1}], "customer": CUSTOMER, "method": "delivery", "destination": BEN_THANH}
    first = _place(api, body, key="same")
    again = _place(api, body, key="same")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert Order.objects.count() == 1
    other = _place(api, {**body, "lines": [{"sku": "AO-THUN-M", "qty": 2}]}, key="same")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1 and Reservation.objects.count() == 1
    missing = api.post("/api/v1/orders/", body, format="json")
    assert missing.status_code == 400


def test_cancel_over_the_api(api, chain):
    body = {"lines": [{"sku": "AO-THUN-M", "qty": 6}], "customer": CUSTOMER, "method": "delivery", "destination": BEN_THANH}
    number = _place(api, body).json()["number"]
    r = api.post(f"/api/v1/orders/{number}/cancel/", {"reason": "customer changed their mind"}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert Reservation.objects.count() == 0 and stock_ledger_differences() == []


def test_a_channel_sees_only_its_own_orders(api, chain):
    body = {"lines": [{"sku": "AO-THUN-M", "qty": 1}], "customer": CUSTOMER, "method": "delivery", "destination": BEN_THANH}
    number = _place(api, body).json()["number"]
    other_channel = SalesChannelFactory(code="app", name="App")
    _, key = SalesChannelKey.objects.create_key(name="app", channel=other_channel)
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert other.get(f"/api/v1/orders/{number}/").status_code == 404
    assert other.post(f"/api/v1/orders/{number}/cancel/", {}, format="json").status_code == 404
    assert other.get("/api/v1/orders/").json()["count"] == 0


def test_needs_a_key(anon_api, chain):
    assert anon_api.get("/api/v1/orders/").status_code in (401, 403)


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"lines": [{"sku": "NOPE", "qty": 1}]}, 422, "unknown_sku"),
        ({"lines": [{"sku": "AO-THUN-M", "qty": 0}]}, 400, "invalid"),
        ({"lines": [{"sku": "AO-THUN-M", "qty": -1}]}, 400, "invalid"),
        ({"lines": [{"sku": "AO-THUN-M", "qty": 1}], "destination": HANOI}, 422, "out_of_delivery_area"),
        ({"lines": [{"sku": "AO-THUN-M", "qty": 1}], "method": "pickup", "pickup_store": "HCM-NOPICK"}, 422,
         "pickup_not_offered"),
        ({"lines": [{"sku": "AO-THUN-M", "qty": 50}]}, 409, "insufficient_stock"),
        ({"lines": [{"sku": "AO-THUN-M", "qty": 1}], "customer": {"name": "A", "phone": "123"}}, 400, "invalid_phone"),
        ({"lines": [{"sku": "AO-THUN-M", "qty": 1}], "destination": {"lat": 10.7}}, 400, "invalid"),
        ({"lines": [{"sku": "AO-THUN-M", "qty": 1}], "promise": "00000000-0000-0000-0000-000000000000",
          "option": "express_1h"}, 404, "promise_not_found"),
    ],
)
def test_bad_orders_are_4xx_and_write_nothing(api, chain, body, status, code):
    StoreFactory(code="HCM-NOPICK", offers_pickup=False)
    movements = StockMovement.objects.count()
    full = {"customer": CUSTOMER, "method": "delivery", "destination": BEN_THANH, **body}
    if full["method"] == "pickup":
        full.pop("destination")
    r = _place(api, full)
    assert r.status_code == status, r.content
    assert r.json()["code"] == code
    assert Order.objects.count() == 0 and StockMovement.objects.count() == movements


def test_bad_quotes(api, chain):
    StoreFactory(code="HCM-NOPICK", offers_pickup=False)
    cases = [
        ({"lines": [{"sku": "NOPE", "qty": 1}], "destination": BEN_THANH}, 422, "unknown_sku"),
        ({"lines": [{"sku": "AO-THUN-M", "qty": 1}], "destination": HANOI}, 422, "out_of_delivery_area"),
        ({"lines": [{"sku": "AO-THUN-M", "qty": 1}], "pickup_store": "HCM-NOPICK"}, 422, "pickup_not_offered"),
        ({"lines": [{"sku": "AO-THUN-M", "qty": 1}], "pickup_store": "NOWHERE"}, 422, "unknown_store"),
        ({"lines": [{"sku": "AO-THUN-M", "qty": 1}]}, 400, "invalid"),
        ({"lines": []}, 400, "invalid"),
    ]
    for body, status, code in cases:
        r = api.post("/api/v1/promises/", body, format="json")
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.content)


def test_expired_promise_is_409(api, chain):
    from datetime import timedelta

    from django.utils import timezone

    from orders.models import Promise

    quote = api.post("/api/v1/promises/", {"lines": [{"sku": "NON-LA", "qty": 1}], "destination": BEN_THANH},
                     format="json").json()
    Promise.objects.filter(pk=quote["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    r = _place(api, {"lines": [{"sku": "NON-LA", "qty": 1}], "customer": CUSTOMER, "method": "delivery",
                     "promise": quote["id"], "option": quote["options"][0]["id"]})
    assert r.status_code == 409 and r.json()["code"] == "promise_expired"


def test_detail_of_unknown_order(api, chain):
    r = api.get("/api/v1/orders/WEB-999999/")
    assert r.status_code == 404 and r.json()["code"] == "order_not_found"
    assert services  # the API is a thin layer over orders.services
