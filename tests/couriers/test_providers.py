"""Provider adapters: status maps, payload parsing, and the outbound clients' requests (against a fake session:
no network in tests)."""

import json

import pytest

from orders.couriers.exceptions import InvalidCourierEvent, ProviderError, UnknownProvider
from orders.couriers.providers import get_provider
from orders.couriers.providers.ahamove import Ahamove
from orders.couriers.providers.lalamove import Lalamove, request_signature
from orders.couriers.providers.local import LocalCourier


@pytest.mark.parametrize(
    "status, ours",
    [("IDLE", "requested"), ("ASSIGNING", "requested"), ("ACCEPTED", "assigned"), ("IN PROCESS", "picked_up"),
     ("COMPLETED", "delivered"), ("CANCELLED", "cancelled"), ("PAYING", "requested"), ("SOMETHING_NEW", None)],
)
def test_ahamove_status_map(status, ours):
    assert Ahamove().map_status(status) == ours


@pytest.mark.parametrize(
    "status, ours",
    [("ASSIGNING_DRIVER", "requested"), ("ON_GOING", "assigned"), ("PICKED_UP", "picked_up"),
     ("COMPLETED", "delivered"), ("CANCELED", "cancelled"), ("EXPIRED", "cancelled"), ("REJECTED", "cancelled"), ("SOMETHING_NEW", None)],
)
def test_lalamove_status_map(status, ours):
    assert Lalamove().map_status(status) == ours


def test_ahamove_callback_parsing():
    aha = Ahamove()
    accepted = {"_id": "21ABCD", "status": "ACCEPTED", "supplier_id": "84901111222", "supplier_name": "Tài xế B",
                "accept_time": 1767225600, "path": [{"address": "store"}, {"address": "customer"}]}
    event = aha.parse_event(accepted)
    assert (event.external_id, event.status, event.courier_phone, event.courier_name) == (
        "21ABCD", "assigned", "84901111222", "Tài xế B")
    assert event.occurred_at.timestamp() == 1767225600
    assert aha.parse_event(accepted).event_id == event.event_id  # the same callback is the same event
    failed = {**accepted, "status": "COMPLETED", "complete_time": 1767229200,
              "path": [{"status": "COMPLETED"}, {"status": "FAILED", "fail_comment": "Khách không nghe máy"}]}
    event = aha.parse_event(failed)
    assert (event.status, event.failure_reason) == ("failed", "Khách không nghe máy")
    delivered = {**failed, "path": [{"status": "COMPLETED"}, {"status": "COMPLETED", "name": "Chị Lan"}]}
    assert aha.parse_event(delivered).status == "delivered"
    assert aha.parse_event(delivered).event_id != event.event_id
    with pytest.raises(InvalidCourierEvent):
        aha.parse_event({"status": "ACCEPTED"})


def test_ahamove_returns_zero_times_and_proof_as_the_docs_show():
    aha = Ahamove()
    # Ahamove's sample callback: times not reached yet are 0; the drop-off stop carries the outcome.
    base = {"_id": "22VMV54W", "accept_time": 1665742400, "board_time": 0, "pickup_time": 0, "complete_time": 0,
            "cancel_time": 0, "sub_status": "", "path": [{"name": "Anh", "status": ""}, {"name": "Bao", "status": ""}]}
    in_process = aha.parse_event({**base, "status": "IN PROCESS", "pickup_time": 1665742500})
    assert (in_process.status, in_process.occurred_at.timestamp()) == ("picked_up", 1665742500)
    assert aha.parse_event({**base, "status": "ASSIGNING", "accept_time": 0}).occurred_at is None
    stops = [{"status": "COMPLETED"}, {"name": "Bao", "status": "COMPLETED", "complete_time": 1665743000,
                                       "pod_info": "https://aha.example/pod/22VMV54W.jpg"}]
    done = aha.parse_event({**base, "status": "COMPLETED", "complete_time": 1665743100, "path": stops})
    assert (done.status, done.recipient_name, done.proof_photo_url) == (
        "delivered", "Bao", "https://aha.example/pod/22VMV54W.jpg")
    assert done.occurred_at.timestamp() == 1665743000  # the stop's own completion time
    failed_stops = [{"status": "COMPLETED"}, {"name": "Bao", "status": "FAILED", "fail_time": 1665743050,
                                              "fail_comment": "Khách hẹn giao lại", "return_time": 1665744000}]
    on_the_way_back = aha.parse_event({**base, "status": "COMPLETED", "sub_status": "IN_RETURN", "path": failed_stops})
    assert (on_the_way_back.status, on_the_way_back.failure_reason) == ("failed", "Khách hẹn giao lại")
    back = aha.parse_event({**base, "status": "COMPLETED", "sub_status": "RETURNED", "path": failed_stops})
    assert (back.status, back.provider_status, back.occurred_at.timestamp()) == ("returned", "RETURNED", 1665744000)
    assert back.event_id != on_the_way_back.event_id
    cancelled = aha.parse_event({**base, "status": "CANCELLED", "cancel_time": 1665742450,
                                 "cancel_comment": "Auto cancel, no driver accepted"})
    assert (cancelled.status, cancelled.failure_reason) == ("cancelled", "Auto cancel, no driver accepted")


def test_lalamove_order_replaced_names_the_new_order():
    event = Lalamove().parse_event({"eventId": "E9", "eventType": "ORDER_REPLACED", "timestamp": 1767225600000,
                                    "data": {"order": {"orderId": "3000"}, "prevOrderId": "1077"}})
    assert (event.external_id, event.replaced_by, event.status) == ("1077", "3000", None)
    assert event.occurred_at.timestamp() == 1767225600  # milliseconds


def test_lalamove_webhook_parsing():
    lala = Lalamove()
    driver = {"eventId": "E1", "eventType": "DRIVER_ASSIGNED", "timestamp": 1767225600,
              "data": {"driver": {"driverId": "9", "name": "Anh Tuấn", "phone": "+84902222333",
                                  "plateNumber": "59-X3 111.11"}, "order": {"orderId": "1077"},
                       "updatedAt": "2026-01-01T00:00:00.00Z"}}
    event = lala.parse_event(driver)
    assert (event.status, event.vehicle_plate, event.external_id) == ("assigned", "59-X3 111.11", "1077")
    done = {"eventId": "E2", "eventType": "ORDER_STATUS_CHANGED",
            "data": {"order": {"orderId": "1077", "status": "COMPLETED",
                               "stops": [{}, {"POD": {"image": "https://x/pod.jpg", "recipientName": "Lan"}}]}}}
    event = lala.parse_event(done)
    assert (event.status, event.proof_photo_url, event.recipient_name) == ("delivered", "https://x/pod.jpg", "Lan")
    other = lala.parse_event({"eventId": "E3", "eventType": "WALLET_BALANCE_CHANGED", "data": {"order": {"orderId": "1"}}})
    assert other.status is None
    with pytest.raises(InvalidCourierEvent):
        lala.parse_event({"eventType": "ORDER_STATUS_CHANGED", "data": {}})


def test_local_payloads_parse_back():
    local = LocalCourier()
    event = local.parse_event({"event_id": "LOC-1:failed", "order_id": "LOC-1", "status": "FAILED", "reason": "x"})
    assert (event.status, event.failure_reason) == ("failed", "x")


def test_unknown_or_disabled_providers(settings):
    with pytest.raises(UnknownProvider):
        get_provider("ghn")
    settings.O2O_COURIER_PROVIDERS = ["local"]
    with pytest.raises(UnknownProvider):
        get_provider("ahamove")


class FakeResponse:
    def __init__(self, status_code, body):
        self.status_code, self._body = status_code, body
        self.content = json.dumps(body).encode()
        self.text = self.content.decode()

    def json(self):
        return self._body


class FakeSession:
    def __init__(self, *responses):
        self.responses = list(responses)
        self.calls = []

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs))
        return self.responses.pop(0)


class FakeDelivery:
    """Enough of a Delivery for the request builders."""

    pk = 5
    reference = "o2o-delivery-5"
    external_id = "X-1"

    class fulfillment:  # noqa: N801
        pk = 9

        class order:  # noqa: N801
            number, customer_name, customer_phone = "WEB-000009", "Nguyễn Văn A", "+84901234567"
            destination_address, destination_lat, destination_lon = "12 Lê Lợi", 10.77, 106.70
            total_vnd, payment_state = 199000, "cod"

        class store:  # noqa: N801
            name, address, lat, lon = "Q1 Lê Lợi", "1 Lê Lợi", 10.774, 106.703


def test_lalamove_client_signs_its_requests(settings):
    session = FakeSession(
        FakeResponse(201, {"data": {"quotationId": "Q1", "stops": [{"stopId": "s1"}, {"stopId": "s2"}],
                                    "priceBreakdown": {"total": "32000"}}}),
        FakeResponse(201, {"data": {"orderId": "1077", "shareLink": "https://share/1077"}}),
    )
    settings.O2O_COURIER_CONFIG = {"lalamove": {"api_key": "pk_test", "api_secret": "sk_test", "session": session}}
    result = Lalamove().request_pickup(FakeDelivery)
    assert (result.external_id, result.fee_vnd, result.tracking_url) == ("1077", 32000, "https://share/1077")
    method, url, kwargs = session.calls[1]
    assert (method, url) == ("POST", "https://rest.sandbox.lalamove.com/v3/orders")
    scheme, _, credentials = kwargs["headers"]["Authorization"].partition(" ")
    key, ts, signature = credentials.split(":")
    assert (scheme, key, kwargs["headers"]["Market"]) == ("hmac", "pk_test", "VN")
    assert signature == request_signature("sk_test", int(ts), "POST", "/v3/orders", kwargs["data"])
    assert json.loads(kwargs["data"])["data"]["recipients"][0]["stopId"] == "s2"


def test_ahamove_client_builds_the_order_and_reports_refusals(settings):
    session = FakeSession(FakeResponse(200, {"order_id": "21XYZ", "shared_link": "https://aha/21XYZ",
                                             "order": {"total_pay": 25000}}),
                          FakeResponse(400, {"title": "NOT_ENOUGH_CREDIT"}))
    settings.O2O_COURIER_CONFIG = {"ahamove": {"api_token": "t0k", "session": session}}
    result = Ahamove().request_pickup(FakeDelivery)
    assert (result.external_id, result.fee_vnd) == ("21XYZ", 25000)
    _, url, kwargs = session.calls[0]
    assert url.endswith("/v3/orders") and kwargs["headers"]["Authorization"] == "Bearer t0k"
    assert kwargs["json"]["path"][1]["cod"] == 199000 and kwargs["json"]["service_id"] == "SGN-BIKE"
    with pytest.raises(ProviderError):
        Ahamove().request_pickup(FakeDelivery)


def test_unconfigured_clients_refuse_without_calling_out(settings):
    settings.O2O_COURIER_CONFIG = {}
    with pytest.raises(ProviderError):
        Ahamove().request_pickup(FakeDelivery)
    with pytest.raises(ProviderError):
        Lalamove().cancel(FakeDelivery, reason="x")
