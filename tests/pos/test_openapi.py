"""The POS contract in the OpenAPI schema: every POS operation documented with examples, and the examples are what
the service answers."""

import pytest
from drf_spectacular.generators import SchemaGenerator

from loyalty import services as loyalty
from orders.pos.api import examples as ex
from tests.conftest import put_stock
from tests.factories import ProductFactory
from tests.pos.conftest import sync

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def _pos_operations(schema):
    """The operations routed by orders/pos/api/urls.py (the till returns under /api/v1/pos/returns/ belong to
    the returns app and are documented there)."""
    for path, item in schema["paths"].items():
        if path.startswith("/api/v1/pos/") and not path.startswith("/api/v1/pos/returns/"):
            for method, operation in item.items():
                if isinstance(operation, dict) and "responses" in operation:
                    yield path, method, operation


def test_every_pos_operation_has_request_and_response_examples(schema):
    operations = list(_pos_operations(schema))
    assert len(operations) == 17  # 16 + POST /api/v1/pos/damage/ (issue #18)
    missing = []
    for path, method, operation in operations:
        assert operation["tags"] == ["POS"] and operation["operationId"].startswith("pos_"), (path, method)
        assert operation["security"] == [{"StoreKey": []}], (path, method)
        ok = [r for s, r in operation["responses"].items() if s.startswith("2")]
        if not any(r.get("content", {}).get("application/json", {}).get("examples") for r in ok):
            missing.append((method, path, "response"))
        body = operation.get("requestBody")
        if body and not body["content"]["application/json"].get("examples"):
            missing.append((method, path, "request"))
    assert not missing, missing
    tag = next(t for t in schema["tags"] if t["name"] == "POS")
    assert f"v{ex.CONTRACT_VERSION}" in tag["description"]


def test_the_sales_example_is_what_the_service_answers(shop):
    """The documented request, sent to a store that has the SKUs and a member with 300 points, gets the documented
    answer, field for field."""
    put_stock(shop["a"], ProductFactory(sku="AO-THUN-001-M", price_vnd=199_000), 5)
    put_stock(shop["a"], ProductFactory(sku="NON-LA-01", price_vnd=85_000), 5)
    member, _ = loyalty.get_or_create_member(phone="0901234567")
    loyalty.adjust_points(member=member, points=300, reason="welcome", staff="test")
    res = sync(shop["api_a"], ex.SALES_REQUEST["receipts"])
    assert res.status_code == 200
    got = res.json()
    for mine, documented in zip(got["results"], ex.SALES_ANSWER["results"], strict=True):
        assert mine == documented
    assert got == ex.SALES_ANSWER
    replay = sync(shop["api_a"], ex.SALES_REQUEST["receipts"][:1]).json()
    assert replay["results"][0] == ex.SALES_REPLAY["results"][0]


def test_the_batch_limit_example_is_what_the_service_answers(shop):
    body = ex.SALES_REQUEST["receipts"][1]
    res = sync(shop["api_a"], [body] * 100_000)
    assert res.status_code == 413
    assert res.json()["code"] == ex.TOO_LARGE["code"]
    assert res.json()["details"]["max_receipts"] == ex.TOO_LARGE["details"]["max_receipts"]
    assert res.json()["details"]["max_bytes"] == ex.TOO_LARGE["details"]["max_bytes"]


def test_the_damage_example_is_what_the_service_answers(shop):
    """The documented damage report, at a store with two of the hats on the shelf, one of them held for an online
    checkout: both quarantined, one taken from the hold; the same report again is the same answer (200)."""
    from inventory import services as stock_services

    hat = ProductFactory(sku="NON-LA-01", price_vnd=85_000)
    put_stock(shop["a"], hat, 2)
    stock_services.hold_stock(store=shop["a"], quantities={hat: 1}, ttl_seconds=600, actor="web")
    res = shop["api_a"].post("/api/v1/pos/damage/", ex.DAMAGE_REQUEST, format="json")
    assert res.status_code == 201, res.content
    documented = {k: v for k, v in ex.DAMAGE_RESULT.items() if k != "reported_at"}
    assert {k: v for k, v in res.json().items() if k != "reported_at"} == documented
    again = shop["api_a"].post("/api/v1/pos/damage/", ex.DAMAGE_REQUEST, format="json")
    assert again.status_code == 200 and again.json() == res.json()


def test_the_count_example_is_what_the_service_answers(shop):
    """The documented count, at a store whose ledger had 8 shirts and 1 hat before the count's time, the hat held
    for an online checkout: the shirt adjusted by -1, the hat not found taken from the hold, field for field."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from inventory import services as stock_services
    from inventory.models import StockMovement

    put_stock(shop["a"], ProductFactory(sku="AO-THUN-001-M", price_vnd=199_000), 8)
    hat = ProductFactory(sku="NON-LA-01", price_vnd=85_000)
    put_stock(shop["a"], hat, 1)
    stock_services.hold_stock(store=shop["a"], quantities={hat: 1}, ttl_seconds=600, actor="web")
    StockMovement.objects.update(created_at=datetime(2025, 6, 1, 8, 0, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh")))
    res = shop["api_a"].post("/api/v1/pos/counts/", ex.COUNT_REQUEST, format="json")
    assert res.status_code == 201, res.content
    assert res.json() == ex.COUNT_RESULT
    again = shop["api_a"].post("/api/v1/pos/counts/", ex.COUNT_REQUEST, format="json")
    assert again.status_code == 200 and again.json() == ex.COUNT_RESULT
