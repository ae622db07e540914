"""The last unit is sold once, whatever the concurrency (PostgreSQL, real threads and connections)."""

import pytest
from django.db import connection
from rest_framework.test import APIClient

from inventory import services
from inventory.exceptions import InsufficientStock, InvalidStockChange
from inventory.models import Reservation, Stock
from inventory.selectors import reservation_differences, stock_ledger_differences
from inventory.services import StockLine
from tests.concurrency import run_concurrently
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("row locks are a PostgreSQL promise; the suite runs on PostgreSQL")


def test_fifty_clients_race_for_the_last_unit_over_http(channel_key):
    store, product = StoreFactory(code="HCM-Q1-LAST"), ProductFactory(sku="LAST-ONE")
    put_stock(store, product, 1)

    def attempt(i: int):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {channel_key}")
        return client.post(
            "/api/v1/holds/",
            {"store": "HCM-Q1-LAST", "lines": [{"sku": "LAST-ONE", "qty": 1}]},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"race-{i}",
        )

    responses = run_concurrently(50, attempt)
    assert not [r for r in responses if isinstance(r, BaseException)]
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1
    assert statuses.count(409) == 49
    assert all(r.json()["code"] == "insufficient_stock" for r in responses if r.status_code == 409)
    assert Stock.objects.get(store=store, product=product).reserved == 1
    assert stock_ledger_differences() == [] and reservation_differences() == []


def test_last_units_of_several_skus_in_one_cart_no_deadlock():
    """Carts list the same SKUs in different orders; rows are locked in one fixed order, so no deadlock and no
    oversell: exactly as many carts succeed as there are units."""
    store = StoreFactory()
    products = [ProductFactory() for _ in range(4)]
    for p in products:
        put_stock(store, p, 3)

    def attempt(i: int):
        ordered = products[i % 4 :] + products[: i % 4]  # every rotation of the cart
        if i % 2:
            ordered.reverse()
        try:
            services.reserve_stock(
                lines=[StockLine(store.pk, p.pk, 1) for p in ordered], reference=f"cart:{i}", actor="test"
            )
            return "ok"
        except InsufficientStock:
            return "short"

    results = run_concurrently(40, attempt)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert results.count("ok") == 3 and results.count("short") == 37
    for p in products:
        row = Stock.objects.get(store=store, product=p)
        assert row.reserved == 3 and row.available == 0
    assert Reservation.objects.count() == 12
    assert stock_ledger_differences() == [] and reservation_differences() == []


def test_replays_of_one_idempotency_key_race_to_one_hold(channel_key):
    store, product = StoreFactory(code="HCM-Q1-RPL"), ProductFactory(sku="REPLAYED")
    put_stock(store, product, 10)
    body = {"store": "HCM-Q1-RPL", "lines": [{"sku": "REPLAYED", "qty": 2}]}

    def attempt(i: int):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {channel_key}")
        return client.post("/api/v1/holds/", body, format="json", HTTP_IDEMPOTENCY_KEY="same-key")

    responses = run_concurrently(20, attempt)
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["reference"] for r in responses}) == 1
    assert Stock.objects.get(store=store, product=product).reserved == 2
    assert stock_ledger_differences() == []


def test_multi_line_carts_racing_till_sales_receipts_and_releases_never_overshoot():
    """Carts of 1-3 lines, till sales, goods receipts and releases, all at once on three rows: every reservation
    that succeeds fits (no CHECK refusal, no 5xx) and the ledger explains every row."""
    import random
    import threading

    from inventory.models import MovementReason

    store = StoreFactory(code="HCM-Q1-MULTI")
    products = [ProductFactory(sku=f"MULTI-{i}") for i in range(3)]
    for p in products:
        put_stock(store, p, 4)
    held: list[str] = []
    lock = threading.Lock()

    def worker(i: int):
        rng = random.Random(i)
        outcomes = []
        for n in range(25):
            op = rng.choice(["reserve", "reserve", "sell", "sell", "release", "receive"])
            try:
                if op == "reserve":
                    ref = f"multi-{i}-{n}"
                    services.reserve_stock(
                        lines=[StockLine(store_id=store.pk, product_id=p.pk, quantity=rng.randint(1, 2))
                               for p in rng.sample(products, rng.randint(1, 3))],
                        reference=ref, actor="test",
                    )
                    with lock:
                        held.append(ref)
                elif op == "sell":
                    services.adjust_stock(store=store, product=rng.choice(products), reason=MovementReason.SALE,
                                          actor="test", on_hand=-1)
                elif op == "receive":
                    services.adjust_stock(store=store, product=rng.choice(products),
                                          reason=MovementReason.GOODS_RECEIPT, actor="test", on_hand=2)
                else:
                    with lock:
                        ref = held.pop() if held else None
                    if ref:
                        services.release_reservations(reference=ref, actor="test")
                outcomes.append((op, "ok"))
            except InsufficientStock:
                outcomes.append((op, "insufficient"))
            except InvalidStockChange:
                outcomes.append((op, "refused"))  # a till sale of units promised online: refused, not applied
        return outcomes

    results = run_concurrently(24, worker)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert any(("reserve", "ok") in r for r in results) and any(("reserve", "insufficient") in r for r in results)
    for row in Stock.objects.filter(store=store):
        assert row.on_hand >= row.reserved + row.unavailable
    assert not stock_ledger_differences() and not reservation_differences()
