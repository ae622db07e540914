"""The courier webhook: everything bad is a 4xx with nothing written; replays are acknowledged and ignored."""

import json
import time

import pytest
from rest_framework.test import APIClient

from o2o import signing
from o2o.models import OutboxEvent
from orders.couriers import services
from orders.couriers.models import CourierEvent, Delivery
from tests.couriers.conftest import SECRETS, packed_order, signed_post

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def delivery(channel, chain):
    f = packed_order(channel)
    return services.dispatch_fulfillment(fulfillment=f, provider="local")


def assigned(d, event_id="e-1"):
    return {"event_id": event_id, "order_id": d.external_id, "status": "ASSIGNED",
            "courier": {"name": "Nguyễn Văn Bình", "phone": "+84901000101", "plate": "59-X1 234.56"}}


def nothing_written(before_outbox):
    return CourierEvent.objects.count() == 0 and OutboxEvent.objects.count() == before_outbox


def test_a_signed_event_is_applied(client, delivery):
    response = signed_post(client, "local", assigned(delivery))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "applied"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.courier_name, delivery.vehicle_plate) == ("assigned", "Nguyễn Văn Bình", "59-X1 234.56")
    assert OutboxEvent.objects.filter(topic="delivery.assigned").count() == 1


def test_a_rotated_secret_still_verifies(client, delivery):
    raw = json.dumps(assigned(delivery)).encode()
    t = int(time.time())
    header = f"t={t},v1={signing.compute('unknown', t, raw)},v1={signing.compute(SECRETS['local'][1], t, raw)}"
    assert signed_post(client, "local", raw, header=header).status_code == 200


@pytest.mark.parametrize(
    "case, status, code",
    [
        ("bad_signature", 401, "invalid_signature"),
        ("missing_header", 401, "invalid_signature"),
        ("malformed_header", 401, "invalid_signature"),
        ("stale_timestamp", 401, "invalid_signature"),
        ("future_timestamp", 401, "invalid_signature"),
        ("other_providers_secret", 401, "invalid_signature"),
        ("unknown_provider", 404, "unknown_provider"),
        ("malformed_json", 400, "malformed_payload"),
        ("json_not_an_object", 400, "malformed_payload"),
        ("missing_fields", 400, "invalid_courier_event"),
        ("two_megabytes", 413, "payload_too_large"),
    ],
)
def test_bad_requests_are_4xx_and_write_nothing(client, delivery, case, status, code):
    before = OutboxEvent.objects.count()
    good = json.dumps(assigned(delivery)).encode()
    now = int(time.time())
    if case == "bad_signature":
        response = signed_post(client, "local", good, header=f"t={now},v1={'0' * 64}")
    elif case == "missing_header":
        response = client.post("/api/v1/webhooks/couriers/local/", data=good, content_type="application/json")
    elif case == "malformed_header":
        response = signed_post(client, "local", good, header="sha256=abc")
    elif case == "stale_timestamp":
        response = signed_post(client, "local", good, timestamp=now - 301)
    elif case == "future_timestamp":
        response = signed_post(client, "local", good, timestamp=now + 360)  # slack: a loaded machine is slow
    elif case == "other_providers_secret":
        response = signed_post(client, "local", good, secret=SECRETS["ahamove"][0])
    elif case == "unknown_provider":
        response = signed_post(client, "ghn", good, secret="anything")
    elif case == "malformed_json":
        response = signed_post(client, "local", b'{"event_id": "e-1", "status": ')
    elif case == "json_not_an_object":
        response = signed_post(client, "local", b'["ASSIGNED"]')
    elif case == "missing_fields":
        response = signed_post(client, "local", {"order_id": delivery.external_id, "status": "ASSIGNED"})
    else:
        response = signed_post(client, "local", b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}')
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert nothing_written(before)
    delivery.refresh_from_db()
    assert delivery.status == "requested"


def test_a_replayed_event_is_acknowledged_and_ignored(client, delivery):
    body = assigned(delivery)
    assert signed_post(client, "local", body).json()["status"] == "applied"
    outbox = OutboxEvent.objects.count()
    # the same event again, even with a different courier in it: nothing changes
    body["courier"]["name"] = "Someone Else"
    response = signed_post(client, "local", body)
    assert response.status_code == 200 and response.json()["status"] == "duplicate"
    assert CourierEvent.objects.count() == 1 and OutboxEvent.objects.count() == outbox
    delivery.refresh_from_db()
    assert delivery.courier_name == "Nguyễn Văn Bình"


def test_an_event_for_an_unknown_delivery_is_recorded_not_applied(client, delivery):
    response = signed_post(client, "local", {"event_id": "x-1", "order_id": "LOC-nope", "status": "DELIVERED"})
    assert response.status_code == 200 and response.json()["status"] == "recorded"
    event = CourierEvent.objects.get()
    assert event.delivery is None and not event.applied and "unknown delivery" in event.note


def test_ahamove_callback_through_the_webhook(client, channel, chain):
    f = packed_order(channel)
    d = services.dispatch_fulfillment(fulfillment=f, provider="local")
    Delivery.objects.filter(pk=d.pk).update(provider="ahamove", external_id="AHA-123")
    body = {"_id": "AHA-123", "status": "ACCEPTED", "supplier_id": "84908888888", "supplier_name": "Tài xế A",
            "accept_time": time.time()}
    assert signed_post(client, "ahamove", body).json()["status"] == "applied"
    assert signed_post(client, "ahamove", body).json()["status"] == "duplicate"  # same callback twice
    d.refresh_from_db()
    assert (d.status, d.courier_phone) == ("assigned", "84908888888")


def test_lalamove_webhook_through_the_webhook(client, channel, chain):
    f = packed_order(channel)
    d = services.dispatch_fulfillment(fulfillment=f, provider="local")
    Delivery.objects.filter(pk=d.pk).update(provider="lalamove", external_id="LLM-9")
    body = {"eventId": "ev-1", "eventType": "ORDER_STATUS_CHANGED", "eventVersion": "v3", "timestamp": int(time.time()),
            "data": {"order": {"orderId": "LLM-9", "status": "PICKED_UP"}, "updatedAt": "2026-01-01T10:00:00Z"}}
    assert signed_post(client, "lalamove", body).json()["status"] == "applied"
    f.refresh_from_db()
    assert f.status == "handed_to_courier"


def test_the_schema_documents_the_webhook(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    assert "/api/v1/webhooks/couriers/{provider}/" in response.json()["paths"]


def test_lalamove_replaced_order_is_followed_by_later_events(client, channel, chain):
    f = packed_order(channel)
    d = services.dispatch_fulfillment(fulfillment=f, provider="local")
    Delivery.objects.filter(pk=d.pk).update(provider="lalamove", external_id="1077")
    replaced = {"eventId": "ev-r", "eventType": "ORDER_REPLACED", "eventVersion": "v3", "timestamp": int(time.time()),
                "data": {"order": {"orderId": "3000"}, "prevOrderId": "1077"}}
    assert signed_post(client, "lalamove", replaced).json()["status"] == "applied"
    picked = {"eventId": "ev-p", "eventType": "ORDER_STATUS_CHANGED", "eventVersion": "v3", "timestamp": int(time.time()),
              "data": {"order": {"orderId": "3000", "status": "PICKED_UP"}}}
    assert signed_post(client, "lalamove", picked).json()["status"] == "applied"
    d.refresh_from_db()
    assert (d.external_id, d.status) == ("3000", "picked_up")
