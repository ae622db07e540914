from datetime import time

import pytest

from inventory.models import OpeningHours
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

pytestmark = pytest.mark.django_db

BEN_THANH = {"lat": 10.7725, "lon": 106.6980}


@pytest.fixture
def chain(db):
    """Three stores at increasing distance from Bến Thành market, a scarce SKU and a common one."""
    near = StoreFactory(code="HCM-Q1-001", lat=10.7743, lon=106.7038)  # ~0.7 km
    mid = StoreFactory(code="HCM-Q3-001", lat=10.7835, lon=106.6870, offers_delivery=False)  # ~1.7 km
    far = StoreFactory(code="HCM-Q7-001", lat=10.7295, lon=106.7218, delivery_radius_km=3)  # ~5.4 km
    scarce, common = ProductFactory(sku="AO-DAI-DO-M"), ProductFactory(sku="AO-THUN-TRANG-M")
    put_stock(near, common, 5, safety=1)
    put_stock(mid, common, 2)
    put_stock(mid, scarce, 1)
    put_stock(far, common, 9)
    put_stock(far, scarce, 4)
    return {"near": near, "mid": mid, "far": far, "scarce": scarce, "common": common}


def test_stores_near_a_point_nearest_first(api, chain):
    response = api.get("/api/v1/stores/", {**BEN_THANH, "radius_km": 10})
    assert response.status_code == 200, response.content
    codes = [s["code"] for s in response.json()["stores"]]
    assert codes == ["HCM-Q1-001", "HCM-Q3-001", "HCM-Q7-001"]
    first = response.json()["stores"][0]
    assert 0.5 < first["distance_km"] < 1.0 and first["open_now"] is True
    assert first["services"] == ["delivery", "pickup", "returns"]


def test_service_filter_and_delivery_radius(api, chain):
    codes = [s["code"] for s in api.get("/api/v1/stores/", {**BEN_THANH, "service": "delivery"}).json()["stores"]]
    # Q3 does not deliver; Q7 delivers only within 3 km of itself.
    assert codes == ["HCM-Q1-001"]
    small = api.get("/api/v1/stores/", {**BEN_THANH, "radius_km": 1}).json()["stores"]
    assert [s["code"] for s in small] == ["HCM-Q1-001"]


def test_stores_near_an_address_uses_the_offline_gazetteer(api, chain):
    response = api.get("/api/v1/stores/", {"address": "Chợ Bến Thành, Quận 1", "limit": 1})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["point"]["source"] == "gazetteer"
    assert body["stores"][0]["code"] == "HCM-Q1-001"


def test_unknown_address_is_404(api, chain):
    response = api.get("/api/v1/stores/", {"address": "Nowhere street, Atlantis"})
    assert response.status_code == 404 and response.json()["code"] == "address_not_found"


def test_closed_store_says_when_it_opens(api, db):
    store = StoreFactory(hours=False, lat=10.7743, lon=106.7038)
    OpeningHours.objects.bulk_create(
        [OpeningHours(store=store, weekday=d, opens=time(8), closes=time(8, 0, 1)) for d in range(7)]
    )
    entry = api.get("/api/v1/stores/", BEN_THANH).json()["stores"][0]
    assert entry["open_now"] is False and entry["next_opening"].endswith("+07:00")


def test_cart_availability_per_store(api, chain):
    response = api.post(
        "/api/v1/availability/",
        {**BEN_THANH, "lines": [{"sku": "AO-THUN-TRANG-M", "qty": 2}, {"sku": "AO-DAI-DO-M", "qty": 1}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    stores = response.json()["stores"]
    assert [s["store"]["code"] for s in stores] == ["HCM-Q1-001", "HCM-Q3-001", "HCM-Q7-001"]
    assert stores[0]["available"] == {"AO-THUN-TRANG-M": 4, "AO-DAI-DO-M": 0}  # 5 on hand - 1 safety
    assert [s["serves_whole_cart"] for s in stores] == [False, True, True]
    whole = api.post(
        "/api/v1/availability/",
        {**BEN_THANH, "only_whole_cart": True, "limit": 1, "lines": [{"sku": "AO-DAI-DO-M", "qty": 2}]},
        format="json",
    ).json()["stores"]
    assert [s["store"]["code"] for s in whole] == ["HCM-Q7-001"]


def test_network_atp(api, chain):
    response = api.get("/api/v1/availability/network/", {"sku": ["AO-THUN-TRANG-M", "AO-DAI-DO-M"]})
    assert response.status_code == 200, response.content
    assert response.json() == [
        {"sku": "AO-THUN-TRANG-M", "atp": 4 + 2 + 9, "stores": 3},
        {"sku": "AO-DAI-DO-M", "atp": 5, "stores": 2},
    ] or sorted(response.json(), key=lambda e: e["sku"]) == sorted(
        [{"sku": "AO-THUN-TRANG-M", "atp": 15, "stores": 3}, {"sku": "AO-DAI-DO-M", "atp": 5, "stores": 2}],
        key=lambda e: e["sku"],
    )


def test_hold_then_release(api, chain):
    body = {"store": "HCM-Q3-001", "lines": [{"sku": "AO-DAI-DO-M", "qty": 1}], "ttl_seconds": 120}
    created = api.post("/api/v1/holds/", body, format="json", HTTP_IDEMPOTENCY_KEY="chk-1")
    assert created.status_code == 201, created.content
    replay = api.post("/api/v1/holds/", body, format="json", HTTP_IDEMPOTENCY_KEY="chk-1")
    assert replay.status_code == 201 and replay.json() == created.json()
    other = api.post("/api/v1/holds/", {**body, "ttl_seconds": 60}, format="json", HTTP_IDEMPOTENCY_KEY="chk-1")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    second = api.post("/api/v1/holds/", body, format="json", HTTP_IDEMPOTENCY_KEY="chk-2")
    assert second.status_code == 409 and second.json()["code"] == "insufficient_stock"
    assert second.json()["details"]["lines"][0]["sku"] == "AO-DAI-DO-M"
    reference = created.json()["reference"]
    assert api.delete(f"/api/v1/holds/{reference}/").status_code == 204
    assert api.delete(f"/api/v1/holds/{reference}/").status_code == 204
    again = api.post("/api/v1/holds/", body, format="json", HTTP_IDEMPOTENCY_KEY="chk-3")
    assert again.status_code == 201


def test_hold_needs_an_idempotency_key(api, chain):
    body = {"store": "HCM-Q3-001", "lines": [{"sku": "AO-DAI-DO-M", "qty": 1}]}
    response = api.post("/api/v1/holds/", body, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid"


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code"),
    [
        ("get", "/api/v1/stores/", {"lat": 91, "lon": 106}, 400, "invalid"),
        ("get", "/api/v1/stores/", {"lat": 10.7, "lon": 106.7, "radius_km": -1}, 400, "invalid"),
        ("get", "/api/v1/stores/", {"lat": "abc", "lon": 106.7}, 400, "invalid"),
        ("get", "/api/v1/stores/", {"lat": 10.7}, 400, "invalid"),
        ("get", "/api/v1/stores/", {}, 400, "invalid"),
        ("get", "/api/v1/stores/", {"lat": 10.7, "lon": 106.7, "service": "teleport"}, 400, "invalid"),
        ("get", "/api/v1/stores/", {"lat": 10.7, "lon": 106.7, "limit": 0}, 400, "invalid"),
        ("post", "/api/v1/availability/", {**BEN_THANH, "lines": [{"sku": "NOPE", "qty": 1}]}, 422, "unknown_sku"),
        ("post", "/api/v1/availability/", {**BEN_THANH, "lines": [{"sku": "AO-DAI-DO-M", "qty": "two"}]}, 400, "invalid"),
        ("post", "/api/v1/availability/", {**BEN_THANH, "lines": [{"sku": "AO-DAI-DO-M", "qty": 0}]}, 400, "invalid"),
        ("post", "/api/v1/availability/", {**BEN_THANH, "lines": []}, 400, "invalid"),
        ("post", "/api/v1/availability/", {**BEN_THANH, "lines": "AO"}, 400, "invalid"),
        (
            "post",
            "/api/v1/availability/",
            {**BEN_THANH, "lines": [{"sku": f"S{i}", "qty": 1} for i in range(10_000)]},
            400,
            "invalid",
        ),
        ("get", "/api/v1/availability/network/", {}, 400, "invalid"),
        ("get", "/api/v1/availability/network/", {"sku": "NOPE"}, 422, "unknown_sku"),
        ("post", "/api/v1/holds/", {"store": "NOPE", "lines": [{"sku": "AO-DAI-DO-M", "qty": 1}]}, 404, "unknown_store"),
    ],
)
def test_bad_input_gets_a_clear_4xx(api, chain, method, path, payload, status, code):
    kwargs = {"format": "json", "HTTP_IDEMPOTENCY_KEY": "k"} if method == "post" else {}
    response = getattr(api, method)(path, payload, **kwargs)
    assert response.status_code == status, response.content
    assert response.json()["code"] == code and response.json()["message"]


def test_malformed_json_is_400(api, chain):
    response = api.generic("POST", "/api/v1/availability/", "{not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "malformed_request"


@pytest.mark.parametrize("header", [None, "Api-Key wrong.key", "Bearer abc", "Api-Key "])
def test_missing_or_wrong_key_is_401(anon_api, chain, header):
    if header:
        anon_api.credentials(HTTP_AUTHORIZATION=header)
    response = anon_api.get("/api/v1/stores/", BEN_THANH)
    assert response.status_code == 401, response.content
    assert response.json()["code"] in {"not_authenticated", "invalid_api_key"}


def test_revoked_key_is_401(api, chain, channel):
    channel.api_keys.update(revoked=True)
    assert api.get("/api/v1/stores/", BEN_THANH).status_code == 401


def test_schema_and_docs_are_served(client, db):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/availability/" in schema.content
    assert client.get("/api/docs/").status_code == 200
