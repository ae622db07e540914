"""The POS contract in the OpenAPI schema: every POS operation documented with examples, and the examples are what
the service answers."""

import pytest
from drf_spectacular.generators import SchemaGenerator

from loyalty import services as loyalty
from orders.pos.api import examples as ex
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory
from tests.pos.conftest import EXAMPLE_STORE, example_policy, store_client, sync

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
    # 16 + POST /api/v1/pos/damage/ (issue #18) + the price call and the policy snapshot (issue #19)
    assert len(operations) == 19
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


def test_the_price_call_example_is_what_the_service_answers(db):
    """The documented cart, member and coupon at the examples' store under the examples' policy: the documented
    breakdown (the policy's version aside); once the coupon is used, the documented 422."""
    from orders.pricing.models import Code

    till = store_client(StoreFactory(code=EXAMPLE_STORE))
    example_policy()
    loyalty.get_or_create_member(phone="0901234567")
    res = till.post("/api/v1/pos/prices/", ex.PRICE_REQUEST, format="json")
    assert res.status_code == 200, res.content
    assert {**res.json(), "policy_version": 42} == ex.PRICE_ANSWER
    Code.objects.filter(code="SUMMER20K").update(uses=1)
    used = till.post("/api/v1/pos/prices/", ex.PRICE_REQUEST, format="json")
    assert used.status_code == 422 and used.json() == ex.PRICE_CODE_USED


def test_the_snapshot_example_is_what_the_service_answers(db):
    """The examples' store and policy: the documented snapshot, field for field but the version, the time and the
    signature (which is the till's own key's); the same version again: the documented small answer."""
    till = store_client(StoreFactory(code=EXAMPLE_STORE))
    example_policy()
    res = till.get("/api/v1/pos/pricing/snapshot/")
    assert res.status_code == 200, res.content
    got = res.json()
    version = got["version"]
    assert got["signature"].startswith("v1=") and len(got["signature"]) == 3 + 64
    moving = {"version": 42, "generated_at": ex.SNAPSHOT["generated_at"], "signature": ex.SNAPSHOT["signature"]}
    assert {**got, **moving, "policy": {**got["policy"], "version": 42}} == ex.SNAPSHOT
    same = till.get("/api/v1/pos/pricing/snapshot/", {"since": version}).json()
    assert {**same, "version": 42} == ex.SNAPSHOT_UNCHANGED


def test_the_priced_receipt_example_is_what_the_service_answers(db):
    """The documented receipt with the coupon and the manager's override, under the examples' policy: applied as
    documented, the code consumed, the hat queued as an override with its reason and staff id."""
    from orders.pricing.models import Code, CodeUse, PriceException

    store = StoreFactory(code=EXAMPLE_STORE)
    rows = example_policy()
    put_stock(store, rows["shirt"], 5)
    put_stock(store, rows["hat"], 5)
    res = sync(store_client(store), ex.SALES_PRICED_REQUEST["receipts"])
    assert res.status_code == 200
    assert res.json() == ex.SALES_PRICED_ANSWER
    e = PriceException.objects.get()
    assert (e.kind, e.sku, e.expected_vnd, e.charged_vnd, e.override_reason, e.override_staff) == (
        "override", "NON-LA-01", 72979, 50000, "damaged brim, sold as seen", "QL-0042")
    assert Code.objects.get(code="SUMMER20K").uses == 1
    assert CodeUse.objects.get().status == "consumed"
