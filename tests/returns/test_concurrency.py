"""Returns of the same purchase racing at several stores at once (PostgreSQL, real threads and connections): the
purchase's row lock and the counters' CHECK constraints let exactly as many units come back as were bought, with
till refunds at the selling store in the mix; the audits stay clean."""

import pytest
from rest_framework.test import APIClient

from orders.pos.models import StoreApiKey, TillReceiptLine
from orders.returns.models import Return, ReturnedOrderLine
from tests.concurrency import run_concurrently
from tests.returns.conftest import audits_clean, deliver, till_sale, web_order

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]


def _client(store, name):
    _, key = StoreApiKey.objects.create_key(name=name, store=store)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def test_tills_race_for_the_last_returnable_units_of_a_receipt(chain):
    a, shirt = chain["near"], chain["shirt"]
    stores = [chain["near"], chain["mid"], chain["far"]]
    sale = till_sale(_client(a, "seller"), [(shirt.sku, 3, 200_000)])
    rid = sale["receipt_id"]
    tills = [_client(stores[i % 3], f"t{i}") for i in range(8)]

    def attempt(i):
        if i == 0:  # the selling till refunds at the same time
            return tills[i].post(f"/api/v1/pos/sales/{rid}/refunds/",
                                 {"refund_id": "RF-race", "lines": [{"sku": shirt.sku, "qty": 1}]}, format="json")
        return tills[i].post("/api/v1/pos/returns/", {"receipt": {"store": a.code, "receipt_id": rid},
                                                      "lines": [{"sku": shirt.sku, "qty": 1}]},
                             format="json", HTTP_IDEMPOTENCY_KEY=f"race-{i}")

    results = run_concurrently(8, attempt)
    codes = [r.status_code for r in results]
    assert codes.count(201) == 3 and codes.count(409) == 5, codes
    assert TillReceiptLine.objects.get(receipt__receipt_id=rid).refunded_qty == 3
    assert audits_clean()


def test_web_order_returns_racing_never_exceed_the_delivered_units(chain, channel):
    shirt = chain["shirt"]
    order = deliver(web_order(channel, {shirt.sku: 2}))
    stores = [chain["near"], chain["mid"], chain["far"]]
    tills = [_client(stores[i % 3], f"w{i}") for i in range(6)]

    def attempt(i):
        return tills[i].post("/api/v1/pos/returns/", {"order": order.number, "lines": [{"sku": shirt.sku, "qty": 1}]},
                             format="json", HTTP_IDEMPOTENCY_KEY=f"web-race-{i}")

    codes = [r.status_code for r in run_concurrently(6, attempt)]
    assert codes.count(201) == 2 and codes.count(409) == 4, codes
    counter = ReturnedOrderLine.objects.get(order_line__order=order)
    assert (counter.returned_qty, counter.handed_over_qty) == (2, 2)
    assert sum(Return.objects.filter(order=order).values_list("refund_vnd", flat=True)) == order.total_vnd
    assert audits_clean()
