"""A store's key can read and write only its own store: store A's key against every store-B endpoint and object id
is answered 403/404 and writes nothing."""

import pytest

from inventory.models import Stock, StockMovement
from inventory.pos.models import GoodsReceipt, StockCount, StockTransfer, TillReceipt, TillRefund
from loyalty.models import Posting
from orders import services as order_services
from orders.models import Fulfillment
from tests.factories import StoreFactory
from tests.pos.conftest import receipt, store_client, sync

pytestmark = pytest.mark.django_db


def _snapshot():
    return {
        "stock": sorted(Stock.objects.values_list("store_id", "product_id", "on_hand", "reserved", "safety", "unavailable")),
        "movements": StockMovement.objects.count(),
        "receipts": sorted(TillReceipt.objects.values_list("store_id", "receipt_id", "status")),
        "refunds": TillRefund.objects.count(),
        "counts": StockCount.objects.count(),
        "goods": GoodsReceipt.objects.count(),
        "transfers": sorted(StockTransfer.objects.values_list("pk", "status")),
        "postings": Posting.objects.count(),
        "fulfillments": sorted(Fulfillment.objects.values_list("pk", "status")),
    }


@pytest.fixture
def store_b_objects(shop, channel):
    """Everything store B has: a receipt (with points), a count, a goods receipt, a transfer to a third store, a
    transfer from a third store to B, and a pickup ready at B."""
    api_b = shop["api_b"]
    r = receipt([("AO-THUN-M", 2)], rid="B-R-1", phone="0901234567")
    assert sync(api_b, [r]).json()["results"][0]["status"] == "applied"
    assert api_b.post("/api/v1/pos/counts/", {"count_id": "B-C-1", "counted_at": r["sold_at"],
                                               "lines": [{"sku": "NON-LA", "counted": 3}]}, format="json").status_code == 201
    assert api_b.post("/api/v1/pos/goods-receipts/", {"receipt_id": "B-G-1", "lines": [{"sku": "NON-LA", "qty": 2}]},
                      format="json").status_code == 201
    c = StoreFactory(code="HCM-Q7-C", lat=10.7295, lon=106.7218)
    out = api_b.post("/api/v1/pos/transfers/", {"transfer_id": "B-T-1", "to_store": c.code,
                                                 "lines": [{"sku": "AO-THUN-M", "qty": 1}]}, format="json")
    assert out.status_code == 201
    api_c = store_client(c)
    from tests.conftest import put_stock

    put_stock(c, shop["hat"], 2)
    inbound = api_c.post("/api/v1/pos/transfers/", {"transfer_id": "C-T-1", "to_store": "HCM-Q1-B",
                                                     "lines": [{"sku": "NON-LA", "qty": 1}]}, format="json")
    assert inbound.status_code == 201
    order = order_services.place_order(
        channel=channel, lines={"NON-LA": 1}, customer_name="Lê C", customer_phone="0912345678", method="pickup",
        pickup_store_code="HCM-Q1-B", actor="test",
    )
    f = order.fulfillments.get()
    for step in ("picking", "packed", "ready_for_pickup"):
        order_services.transition_fulfillment(fulfillment=f, to=step, actor="test")
    return {"receipt": "B-R-1", "count": "B-C-1", "goods": "B-G-1", "transfer_out": out.json()["id"],
            "transfer_in": inbound.json()["id"], "pickup": f.pickup_code.code}


def test_store_a_key_against_every_store_b_endpoint(shop, store_b_objects):
    ids = store_b_objects
    api_a = shop["api_a"]
    attempts = [
        ("get", f"/api/v1/pos/sales/{ids['receipt']}/", None),
        ("post", f"/api/v1/pos/sales/{ids['receipt']}/void/", None),
        ("post", f"/api/v1/pos/sales/{ids['receipt']}/refunds/",
         {"refund_id": "A-RF-1", "lines": [{"sku": "AO-THUN-M", "qty": 1}]}),
        ("get", f"/api/v1/pos/counts/{ids['count']}/", None),
        ("get", f"/api/v1/pos/goods-receipts/{ids['goods']}/", None),
        ("get", f"/api/v1/pos/transfers/{ids['transfer_out']}/", None),
        ("post", f"/api/v1/pos/transfers/{ids['transfer_out']}/receive/", {"lines": []}),
        ("get", f"/api/v1/pos/transfers/{ids['transfer_in']}/", None),
        ("post", f"/api/v1/pos/transfers/{ids['transfer_in']}/receive/", {"lines": [{"sku": "NON-LA", "qty": 1}]}),
        ("get", f"/api/v1/pos/pickups/{ids['pickup']}/", None),
        ("post", f"/api/v1/pos/pickups/{ids['pickup']}/handover/", None),
        ("post", f"/api/v1/pos/pickups/{ids['pickup'].lower()}/handover/", None),
    ]
    before = _snapshot()
    answers = []
    for method, url, body in attempts:
        res = getattr(api_a, method)(url, body, format="json") if body is not None else getattr(api_a, method)(url)
        answers.append((url, method, res.status_code))
    assert all(status in (403, 404) for _, _, status in answers), answers
    assert _snapshot() == before

    # Nothing in a body can point a store-A key at store B: the store always comes from the key.
    sneaky = receipt([("AO-THUN-M", 1)], rid="B-R-1", store="HCM-Q1-B", store_id=shop["b"].pk)
    out = sync(api_a, [sneaky]).json()["results"][0]
    assert out["status"] == "applied"  # a receipt of store A with the same id as store B's
    assert Stock.objects.get(store=shop["b"], product=shop["shirt"]).on_hand == before["stock"][
        [s[:2] for s in before["stock"]].index((shop["b"].pk, shop["shirt"].pk))][2]
    assert TillReceipt.objects.get(store=shop["b"], receipt_id="B-R-1").result == \
        shop["api_b"].get("/api/v1/pos/sales/B-R-1/").json()["result"]
    # Store A's look-up of its stock shows store A's row, never B's.
    assert shop["api_a"].get("/api/v1/pos/stock/AO-THUN-M/").json()["on_hand"] == 9


def test_keys_of_an_inactive_store_stop_working(shop):
    shop["b"].is_active = False
    shop["b"].save(update_fields=["is_active"])
    assert sync(shop["api_b"], [receipt([("AO-THUN-M", 1)])]).status_code == 401


def test_no_key_and_a_wrong_key(shop, anon_api):
    assert sync(anon_api, [receipt([("AO-THUN-M", 1)])]).status_code in (401, 403)
    anon_api.credentials(HTTP_AUTHORIZATION="Api-Key nope.nope")
    assert sync(anon_api, [receipt([("AO-THUN-M", 1)])]).status_code == 401
