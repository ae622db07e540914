"""A day at two stores far apart (Ho Chi Minh City and Hà Nội), written through the services and APIs the clients
use, and one staff user per role."""

import uuid

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

import orders.couriers.admin  # noqa: F401 - registers the courier admin before the URLconf is built
from inventory import services as stock_services
from inventory.models import Stock
from inventory.staff.roles import HEAD_OFFICE, REGIONAL_MANAGER, STORE_STAFF, make_staff
from orders import services
from orders.couriers import services as couriers
from orders.pos.models import StoreApiKey
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

PASSWORD = "a-long-test-passphrase-42"
NEAR_A = {"lat": 10.7725, "lon": 106.6980}  # Bến Thành, District 1
NEAR_B = {"lat": 21.0290, "lon": 105.8520}  # Hoàn Kiếm


@pytest.fixture(autouse=True)
def _courier_settings(settings):
    settings.O2O_COURIER_SECRETS = {"local": ["local-secret"]}
    settings.O2O_COURIER_PROVIDERS = ["local"]
    settings.O2O_COURIER_DEFAULT_PROVIDER = "local"
    settings.O2O_LOCAL_COURIER_FAILURE_RATE = 0.0


def _till(store) -> APIClient:
    _, key = StoreApiKey.objects.create_key(name=f"till {store.code}", store=store)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def _ok(response, status=(200, 201)):
    assert response.status_code in status, response.content
    return response.json()


def _order(channel, method: str, *, store=None, near=None, lines=None):
    return services.place_order(
        channel=channel, lines=lines or {"AO-THUN-M": 1}, customer_name="Trần Thị B", customer_phone="0912 345 678",
        method=method, actor="test", pickup_store_code=store.code if store else None,
        address="1 Đường Thử" if method == "delivery" else "", **(near or {}),
    )


def store_day(channel, store, near, other) -> dict:
    """Orders, a delivery with a courier event, one waiting for a courier, a till sale, a count, a goods receipt, a transfer and a return at `store`."""
    pickup = _order(channel, "pickup", store=store)
    delivery = _order(channel, "delivery", near=near)
    shipped = delivery.fulfillments.get()
    assert shipped.store_id == store.pk
    for step in ("picking", "packed"):
        services.transition_fulfillment(fulfillment=shipped.pk, to=step, actor="test")
    couriers.dispatch_fulfillment(fulfillment=shipped.pk, provider="local", actor="test")
    couriers.advance_local_deliveries(step_seconds=0)  # the courier's first event
    waiting = _order(channel, "delivery", near=near).fulfillments.get()  # packed, no courier yet
    for step in ("picking", "packed"):
        services.transition_fulfillment(fulfillment=waiting.pk, to=step, actor="test")
    till = _till(store)
    now = timezone.now().isoformat()
    rid = f"{store.code}-R-1"
    _ok(till.post("/api/v1/pos/sales/", {"receipts": [{
        "receipt_id": rid, "sold_at": now, "lines": [{"sku": "NON-LA", "qty": 1, "unit_price_vnd": 150_000}],
        "tenders": [{"type": "cash", "amount_vnd": 150_000}]}]}, format="json"))
    # A sale below the policy price (the till's own mistake): applied, and queued as a price exception of the store.
    _ok(till.post("/api/v1/pos/sales/", {"receipts": [{
        "receipt_id": f"{store.code}-R-9", "sold_at": now, "lines": [{"sku": "NON-LA", "qty": 1, "unit_price_vnd": 1_000}],
        "tenders": [{"type": "cash", "amount_vnd": 1_000}]}]}, format="json"))
    _ok(till.post("/api/v1/pos/counts/", {"count_id": f"{store.code}-CC-1", "counted_at": now,
                                          "lines": [{"sku": "TUI-VAI", "counted": 6}]}, format="json"))
    _ok(till.post("/api/v1/pos/goods-receipts/", {"receipt_id": f"{store.code}-DN-1", "source": "DC Bình Dương",
                                                  "lines": [{"sku": "TUI-VAI", "qty": 4}]}, format="json"))
    _ok(till.post("/api/v1/pos/transfers/", {"transfer_id": f"{store.code}-TR-1", "to_store": other.code,
                                             "lines": [{"sku": "TUI-VAI", "qty": 1}]}, format="json"))
    _ok(till.post("/api/v1/pos/returns/", {"receipt": {"store": store.code, "receipt_id": rid},
                                           "lines": [{"sku": "NON-LA", "qty": 1}], "reason": "size"},
                  format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())), status=(201,))
    # Goods found damaged while a website held every free bag: the report takes one from the hold (a
    # TakenReservation at this store, reconciled in the same request), then the website lets the hold go.
    row = Stock.objects.get(store=store, product__sku="TUI-VAI")
    hold = stock_services.hold_stock(store=store, quantities={row.product: row.on_hand - row.reserved - row.unavailable},
                                     ttl_seconds=900, actor="website", channel=channel)
    _ok(till.post("/api/v1/pos/damage/", {"report_id": f"{store.code}-DMG-1", "lines": [{"sku": "TUI-VAI", "qty": 1}],
                                          "note": "torn"}, format="json"))
    stock_services.release_reservations(reference=hold.reference, actor="website")
    return {"pickup": pickup, "pickup_f": pickup.fulfillments.get(), "delivery": delivery, "delivery_f": shipped,
            "waiting_f": waiting}


@pytest.fixture
def two_stores(db, channel):
    a = StoreFactory(code="HCM-Q1-001", name="Q1 Lê Lợi", city="Ho Chi Minh City", lat=10.7743, lon=106.7038)
    b = StoreFactory(code="HN-HK-001", name="Hoàn Kiếm Tràng Tiền", city="Hà Nội", district="Hoàn Kiếm",
                     lat=21.0245, lon=105.8550)
    # a third store, far from both and without stock, that receives their transfers
    c = StoreFactory(code="DN-HC-001", name="Đà Nẵng Hải Châu", city="Đà Nẵng", district="Hải Châu",
                     lat=16.0680, lon=108.2210)
    shirt = ProductFactory(sku="AO-THUN-M", price_vnd=199_000)
    hat = ProductFactory(sku="NON-LA", price_vnd=150_000, category="non")
    bag = ProductFactory(sku="TUI-VAI", price_vnd=99_000, category="tui")
    for store in (a, b):
        put_stock(store, shirt, 10)
        put_stock(store, hat, 5)
        put_stock(store, bag, 5)
    day_a = store_day(channel, a, NEAR_A, c)
    day_b = store_day(channel, b, NEAR_B, c)
    return {"a": a, "b": b, "c": c, "day_a": day_a, "day_b": day_b, "shirt": shirt}


@pytest.fixture
def staff_a(two_stores):
    return make_staff(username="lan.q1", password=PASSWORD, role=STORE_STAFF, stores=[two_stores["a"]])


@pytest.fixture
def regional(two_stores):
    return make_staff(username="minh.south", password=PASSWORD, role=REGIONAL_MANAGER, stores=[two_stores["a"]])


@pytest.fixture
def head_office(two_stores):
    return make_staff(username="hoa.hq", password=PASSWORD, role=HEAD_OFFICE, all_stores=True)
