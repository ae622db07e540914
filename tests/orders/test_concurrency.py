"""Concurrent placements on PostgreSQL: the last unit is sold once; the rest get a clean 409."""

import pytest
from django.db import connection
from rest_framework.test import APIClient

from inventory.models import Stock
from inventory.selectors import reservation_differences, stock_ledger_differences
from orders.models import Order
from tests.concurrency import run_concurrently
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory
from tests.orders.conftest import BEN_THANH, CUSTOMER

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("row locks are a PostgreSQL promise")


def test_concurrent_placements_on_the_last_unit(channel_key):
    StoreFactory(code="HCM-Q1-001", lat=10.7743, lon=106.7038)
    far = StoreFactory(code="HCM-Q7-001", lat=10.7295, lon=106.7218)
    product = ProductFactory(sku="LAST-ONE")
    put_stock(far, product, 1)

    def attempt(i: int):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {channel_key}")
        return client.post(
            "/api/v1/orders/",
            {"lines": [{"sku": "LAST-ONE", "qty": 1}], "customer": CUSTOMER, "method": "delivery",
             "destination": BEN_THANH},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"race-{i}",
        )

    responses = run_concurrently(16, attempt)
    assert not [r for r in responses if isinstance(r, BaseException)], responses
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1 and statuses.count(409) == 15, statuses
    assert all(r.json()["code"] == "insufficient_stock" for r in responses if r.status_code == 409)
    assert Order.objects.count() == 1
    assert Stock.objects.get(store=far, product=product).reserved == 1
    assert stock_ledger_differences() == [] and reservation_differences() == []
