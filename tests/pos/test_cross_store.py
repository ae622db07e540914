"""A store's key can read and write only its own store. The matrix is built from the POS URL conf, so a new endpoint
is covered as soon as it is routed: store A's key against every store-B endpoint and every store-B object id is
answered 403/404 and writes nothing, while the same requests from the object's own store are not refused (so the
404 comes from the store check, not from a bad body)."""

import copy

import pytest
from django.urls import URLPattern

from inventory.models import Stock, StockMovement
from loyalty.models import Member, Posting
from orders import services as order_services
from orders.models import Fulfillment
from orders.pos.api import urls as pos_urls
from orders.pos.models import DamageReport, GoodsReceipt, StockCount, StockTransfer, TillReceipt, TillRefund
from orders.returns.api import urls as returns_urls
from tests.conftest import put_stock
from tests.factories import StoreFactory
from tests.pos.conftest import receipt, store_client, sync

pytestmark = pytest.mark.django_db

PREFIX = "/api/v1/pos/"
# URL kwargs that name an object of one store, by the first path segment of the route (the kind of object).
OBJECT_KINDS = {"sales": "receipt", "counts": "count", "goods-receipts": "goods", "transfers": "transfer",
                "pickups": "pickup"}
# URL kwargs that name chain-wide reference data, not a store's object: a SKU (the caller's own stock row is
# shown, plus what nearby stores can sell, by design) and a member's phone (one member across all stores).
CHAIN_WIDE_KWARGS = {"sku", "phone"}
# A valid body for every POST route, by route name: the request must be refused for being another store's, not
# for being malformed.
BODIES = {
    "pos-sales": lambda ids: {"receipts": [receipt([("AO-THUN-M", 1)], rid=ids["receipt"], store="HCM-Q1-B")]},
    "pos-receipt-void": lambda ids: None,
    "pos-receipt-refund": lambda ids: {"refund_id": "X-RF-1", "lines": [{"sku": "AO-THUN-M", "qty": 1}]},
    "pos-counts": lambda ids: {"count_id": ids["count"], "counted_at": ids["sold_at"], "store": "HCM-Q1-B",
                               "lines": [{"sku": "NON-LA", "counted": 3}]},
    "pos-goods-receipts": lambda ids: {"receipt_id": ids["goods"], "store": "HCM-Q1-B",
                                       "lines": [{"sku": "NON-LA", "qty": 1}]},
    "pos-transfers": lambda ids: {"transfer_id": "B-T-1", "to_store": "HCM-Q7-C", "from_store": "HCM-Q1-B",
                                  "lines": [{"sku": "AO-THUN-M", "qty": 1}]},
    "pos-transfer-receive": lambda ids: {"lines": [{"sku": "AO-THUN-M", "qty": 1}, {"sku": "NON-LA", "qty": 1}]},
    "pos-pickup-handover": lambda ids: None,
    "pos-damage": lambda ids: {"report_id": ids["damage"], "store": "HCM-Q1-B", "note": "crushed",
                               "lines": [{"sku": "NON-LA", "qty": 1}]},
    "pos-prices": lambda ids: {"lines": [{"sku": "AO-THUN-M", "qty": 1}], "store": "HCM-Q1-B"},
}


def pos_patterns() -> list:
    """The POS contract's URL patterns (routes relative to /api/v1/pos/): the POS URL conf's, and the till refund of a
    receipt, which the returns app serves (orders/returns/api/urls.py: the one refund door)."""
    refunds = [p for p in returns_urls.urlpatterns if str(p.pattern).startswith("pos/sales/")]
    assert refunds, "the till refund route has gone from the returns URL conf"
    return [*pos_urls.urlpatterns, *(_relative(p) for p in refunds)]


def _relative(pattern):
    """A copy of a returns route under /api/v1/ as if mounted under /api/v1/pos/ like the other POS routes."""
    moved = copy.copy(pattern)
    moved.pattern = copy.copy(pattern.pattern)
    moved.pattern._route = str(pattern.pattern).removeprefix("pos/")
    return moved


def routes():
    """(name, route, kwargs, methods) of every POS endpoint, straight from the URL confs."""
    found = []
    for pattern in pos_patterns():
        assert isinstance(pattern, URLPattern), f"nested POS URL conf: extend routes() for {pattern}"
        view = pattern.callback.view_class
        methods = [m for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)]
        found.append((pattern.name, str(pattern.pattern), list(pattern.pattern.converters), methods))
    return found


def _url(route: str, values: dict) -> str:
    path = route
    for name, value in values.items():
        path = path.replace(f"<{_converter(route, name)}:{name}>", str(value))
    return PREFIX + path


def _converter(route: str, name: str) -> str:
    start = route.index(f":{name}>")
    return route[route.rindex("<", 0, start) + 1:start]


def _snapshot() -> dict:
    return {
        "stock": sorted(Stock.objects.values_list("store_id", "product_id", "on_hand", "reserved", "safety",
                                                  "unavailable", "needs_count")),
        "movements": StockMovement.objects.count(),
        "receipts": sorted(TillReceipt.objects.values_list("store_id", "receipt_id", "status", "content_hash")),
        "refunds": TillRefund.objects.count(),
        "counts": sorted(StockCount.objects.values_list("store_id", "count_id", "content_hash")),
        "goods": sorted(GoodsReceipt.objects.values_list("store_id", "receipt_id", "content_hash")),
        "damage": sorted(DamageReport.objects.values_list("store_id", "report_id", "content_hash", "result")),
        "transfers": sorted(StockTransfer.objects.values_list("pk", "from_store_id", "to_store_id", "status")),
        "postings": Posting.objects.count(),
        "members": sorted(Member.objects.values_list("phone", "available")),
        "fulfillments": sorted(Fulfillment.objects.values_list("pk", "status")),
    }


def _store_snapshot(store) -> dict:
    """Everything of one store that a POS call could change."""
    return {
        "stock": sorted(Stock.objects.filter(store=store).values_list("product_id", "on_hand", "reserved", "safety",
                                                                      "unavailable")),
        "movements": StockMovement.objects.filter(store=store).count(),
        "receipts": sorted(TillReceipt.objects.filter(store=store).values_list("receipt_id", "status", "content_hash")),
        "counts": sorted(StockCount.objects.filter(store=store).values_list("count_id", "content_hash")),
        "goods": sorted(GoodsReceipt.objects.filter(store=store).values_list("receipt_id", "content_hash")),
        "damage": sorted(DamageReport.objects.filter(store=store).values_list("report_id", "content_hash", "result")),
        "transfers_out": sorted(StockTransfer.objects.filter(from_store=store).values_list("pk", "transfer_id", "status")),
        "transfers_in": sorted(StockTransfer.objects.filter(to_store=store).values_list("pk", "status")),
        "fulfillments": sorted(Fulfillment.objects.filter(store=store).values_list("pk", "status")),
    }


@pytest.fixture
def store_b(shop, channel):
    """Everything store B has: a receipt (with points), a count, a goods receipt, a transfer to a third store C, a
    transfer from C to B, and a pickup ready at B. Returns B's object ids by kind and the keys that own them."""
    api_b = shop["api_b"]
    r = receipt([("AO-THUN-M", 2)], rid="B-R-1", phone="0901234567")
    assert sync(api_b, [r]).json()["results"][0]["status"] == "applied"
    assert api_b.post("/api/v1/pos/counts/", {"count_id": "B-C-1", "counted_at": r["sold_at"],
                                               "lines": [{"sku": "NON-LA", "counted": 3}]}, format="json").status_code == 201
    assert api_b.post("/api/v1/pos/goods-receipts/", {"receipt_id": "B-G-1", "lines": [{"sku": "NON-LA", "qty": 2}]},
                      format="json").status_code == 201
    assert api_b.post("/api/v1/pos/damage/", {"report_id": "B-D-1", "lines": [{"sku": "AO-THUN-M", "qty": 1}]},
                      format="json").status_code == 201
    c = StoreFactory(code="HCM-Q7-C", lat=10.7295, lon=106.7218)
    api_c = store_client(c)
    put_stock(c, shop["hat"], 2)
    out = api_b.post("/api/v1/pos/transfers/", {"transfer_id": "B-T-1", "to_store": c.code,
                                                 "lines": [{"sku": "AO-THUN-M", "qty": 1}]}, format="json")
    assert out.status_code == 201
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
    code = f.pickup_code.code
    return {
        "ids": {"receipt": ["B-R-1"], "count": ["B-C-1"], "goods": ["B-G-1"],
                "transfer": [out.json()["id"], inbound.json()["id"]], "pickup": [code, code.lower()]},
        "body_ids": {"receipt": "B-R-1", "count": "B-C-1", "goods": "B-G-1", "damage": "B-D-1",
                     "sold_at": r["sold_at"]},
        "owners": [api_b, api_c],
        "c": c,
    }


def _call(client, method: str, url: str, body):
    if method == "get":
        return client.get(url)
    return getattr(client, method)(url, body, format="json") if body is not None else getattr(client, method)(url)


def _attempts(store_b) -> tuple[list, list]:
    """(object attempts, collection attempts) for every POS route and method: object routes with every store-B id
    of their kind, collection routes with store B's ids and store codes in the body."""
    objects, collections = [], []
    for name, route, kwargs, methods in routes():
        object_kwargs = [k for k in kwargs if k not in CHAIN_WIDE_KWARGS]
        for method in methods:
            if method != "get":
                assert name in BODIES, f"new POS endpoint {name} ({method.upper()} {route}): add a valid body to BODIES"
            body = BODIES[name](store_b["body_ids"]) if method != "get" else None
            if not object_kwargs:
                collections.append((name, method, route, kwargs, body))
                continue
            assert len(object_kwargs) == 1, f"{route}: several object ids, extend the matrix"
            kind = OBJECT_KINDS.get(route.split("/", 1)[0])
            assert kind, f"new POS object route {route}: say which kind of store object it names in OBJECT_KINDS"
            for value in store_b["ids"][kind]:
                objects.append((name, method, _url(route, {object_kwargs[0]: value}), body))
    return objects, collections


def test_routes_cover_every_pos_endpoint():
    names = {name for name, *_ in routes()}
    assert len(names) == len(pos_patterns()) and len(names) >= 15
    assert {"pos-sales", "pos-receipt-void", "pos-pickup-handover", "pos-transfer-receive"} <= names


def test_store_a_key_against_every_store_b_endpoint_and_id(shop, store_b):
    api_a = shop["api_a"]
    objects, _ = _attempts(store_b)
    assert len(objects) >= 13 and {a[0] for a in objects} == {n for n, _, k, _ in routes() if set(k) - CHAIN_WIDE_KWARGS}
    before = _snapshot()
    answers = [(name, method, url, _call(api_a, method, url, body).status_code) for name, method, url, body in objects]
    refused = [a for a in answers if a[3] in (403, 404)]
    assert refused == answers, [a for a in answers if a[3] not in (403, 404)]
    assert _snapshot() == before  # nothing written, anywhere

    # The control: the object's own store (B, or C for what C sent or receives) is not refused the same requests.
    for name, method, url, body in objects:
        statuses = [_call(owner, method, url, body).status_code for owner in store_b["owners"]]
        assert any(s not in (403, 404) for s in statuses), (name, method, url, statuses)


def test_store_a_key_on_collection_endpoints_never_reaches_store_b(shop, store_b):
    """Routes without an object id act on the key's store: store B's ids or store codes in the body make store A's
    own objects (or are refused) and never change store B; chain-wide look-ups show store A's own row."""
    api_a = shop["api_a"]
    _, collections = _attempts(store_b)
    b_before, c_before = _store_snapshot(shop["b"]), _store_snapshot(store_b["c"])
    b_receipts = dict(TillReceipt.objects.filter(store=shop["b"]).values_list("receipt_id", "result"))
    for name, method, route, kwargs, body in collections:
        if kwargs:  # chain-wide look-ups
            values = {"sku": "AO-THUN-M", "phone": "0901234567"}
            res = _call(api_a, method, _url(route, {k: values[k] for k in kwargs}) + "?store=HCM-Q1-B", body)
        else:
            res = _call(api_a, method, PREFIX + route, body)
        assert res.status_code < 500, (name, res.status_code)
        text = res.content.decode()
        if name != "pos-stock":  # the stock look-up names nearby stores on purpose
            assert "HCM-Q1-B" not in text or name in ("pos-sales", "pos-transfers"), (name, text)
    # Store A's sale with store B's receipt id and "store": "HCM-Q1-B" became store A's own receipt.
    assert TillReceipt.objects.filter(store=shop["a"], receipt_id="B-R-1").exists()
    assert StockCount.objects.filter(store=shop["a"], count_id="B-C-1").exists()
    assert GoodsReceipt.objects.filter(store=shop["a"], receipt_id="B-G-1").exists()
    assert StockTransfer.objects.filter(from_store=shop["a"], transfer_id="B-T-1").exists()
    assert DamageReport.objects.filter(store=shop["a"], report_id="B-D-1").exists()
    # Only the transfer store A shipped to C changed C (in transit to C: C's rows are untouched until received).
    assert _store_snapshot(shop["b"]) == b_before
    assert _store_snapshot(store_b["c"])["stock"] == c_before["stock"]
    assert dict(TillReceipt.objects.filter(store=shop["b"]).values_list("receipt_id", "result")) == b_receipts
    # Store A's list of transfers shows its own only.
    listed = api_a.get("/api/v1/pos/transfers/").json()
    assert {t["from_store"] for t in listed} | {t["to_store"] for t in listed} <= {"HCM-Q1-A", "HCM-Q7-C"}
    assert api_a.get("/api/v1/pos/stock/AO-THUN-M/").json()["on_hand"] == Stock.objects.get(
        store=shop["a"], product=shop["shirt"]).on_hand


def test_keys_of_an_inactive_store_stop_working(shop):
    shop["b"].is_active = False
    shop["b"].save(update_fields=["is_active"])
    assert sync(shop["api_b"], [receipt([("AO-THUN-M", 1)])]).status_code == 401


def test_no_key_and_a_wrong_key(shop, anon_api):
    assert sync(anon_api, [receipt([("AO-THUN-M", 1)])]).status_code in (401, 403)
    anon_api.credentials(HTTP_AUTHORIZATION="Api-Key nope.nope")
    assert sync(anon_api, [receipt([("AO-THUN-M", 1)])]).status_code == 401
