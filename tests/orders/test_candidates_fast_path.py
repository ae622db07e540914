"""Checkout loads its candidate stores with one statement that stops reading stores once it has what it needs
(orders.problem._nearest_candidates_postgres). It must pick the same stores as the general path that reads every
store in reach (the one waves and pinned stores use): the same whole-cart stores with the same stock, distance,
load and opening state, and as partial stores the nearest of the general path's partial ones."""

import random
from datetime import time, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from inventory import services as stock
from inventory.exceptions import InsufficientStock
from inventory.models import OpeningHours, Reservation, Store
from orders import problem as problems
from orders.models import Fulfillment, FulfillmentLine, Order
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the fast path is PostgreSQL's")

CENTRE = (10.7769, 106.7009)
# A cart's candidates through the general path: units added back make load_candidates read every store in reach;
# these add none.
GENERAL = {"extra_stock": {(-1, -1): 0}}


def _key(c: problems.Candidate) -> tuple:
    return (
        c.code, c.distance_km, c.delivery_radius_km, tuple(c.methods), c.capacity_per_hour, tuple(sorted(c.stock.items())),
        c.load, c.open_now, c.closes_at, c.next_opening, c.time_zone,
    )


@pytest.fixture
def city(channel):
    """60 stores around District 1 with uneven stock of 6 SKUs: empty, safety stock, units set aside, live and
    expired holds; a few closed now, a few not delivering or not offering pickup, a few with open orders."""
    rng = random.Random(42)
    now = timezone.now()
    products = [ProductFactory(sku=f"SKU-{i}") for i in range(6)]
    stores = []
    for i in range(60):
        store = StoreFactory(
            code=f"HCM-{i:03d}", lat=CENTRE[0] + rng.gauss(0, 0.03), lon=CENTRE[1] + rng.gauss(0, 0.03),
            delivery_radius_km=rng.choice([2, 4, 6]), offers_delivery=rng.random() > 0.1,
            offers_pickup=rng.random() > 0.2, picking_capacity_per_hour=rng.choice([10, 20]),
            hours=rng.random() > 0.15,
        )
        if not OpeningHours.objects.filter(store=store).exists():  # closed now, opens at 23:59 local time
            OpeningHours.objects.bulk_create(
                [OpeningHours(store=store, weekday=d, opens=time(23, 59), closes=time(23, 59, 59)) for d in range(7)]
            )
        stores.append(store)
        for p in products:
            units = rng.choice([0, 0, 1, 2, 3, 5])
            if units:
                put_stock(store, p, units, safety=rng.choice([0, 0, 1]))
    for i, store in enumerate(stores[::3]):
        p = products[i % len(products)]
        try:
            stock.reserve_stock(lines=[stock.StockLine(store.pk, p.pk, 1)], reference=f"hold-{i}", actor="test",
                                expires_at=now + timedelta(minutes=10))
        except InsufficientStock:
            continue
        if i % 2:  # expired, not yet cleaned up: its unit counts as sellable again
            Reservation.objects.filter(reference=f"hold-{i}").update(expires_at=now - timedelta(minutes=1))
    order = Order.objects.create(
        number="T-1", channel=channel, customer_name="x", customer_phone="+84901234567", method="delivery",
        destination_lat=CENTRE[0], destination_lon=CENTRE[1], subtotal_vnd=0, total_vnd=0, created_at=now,
        updated_at=now,
    )
    for store in stores[::5]:
        f = Fulfillment.objects.create(order=order, store=store, round=1, method="delivery",
                                       promised_by=now + timedelta(minutes=30), created_at=now, status_changed_at=now,
                                       line_count=3)
        FulfillmentLine.objects.bulk_create([FulfillmentLine(fulfillment=f, product=p, qty=1) for p in products[:3]])
    assert Reservation.objects.filter(expires_at__lt=now).count() >= 3
    return {"stores": stores, "products": products, "now": now, "rng": rng}


@pytest.mark.parametrize("k", [2, 4, 12])
def test_the_fast_path_picks_the_general_paths_stores(city, k):
    rng, products, at = city["rng"], city["products"], city["now"]
    stores = city["stores"]
    compared = 0
    for _ in range(60):
        lat, lon = CENTRE[0] + rng.gauss(0, 0.03), CENTRE[1] + rng.gauss(0, 0.03)
        lines = {p.pk: rng.choice([1, 1, 2]) for p in rng.sample(products, rng.randint(1, 3))}
        method = rng.choice(["delivery", "delivery", "pickup"])
        kwargs = dict(
            lat=lat, lon=lon, lines=lines, method=method, at=at, k=k,
            radius_km=rng.choice([None, 3.0]), only_whole_cart=method == "pickup" or rng.random() < 0.2,
            exclude_store_ids={s.pk for s in rng.sample(stores, rng.randint(0, 5))},
            slot_hours=rng.choice([1, 2]),
        )
        fast = problems.load_candidates(**kwargs)
        general = problems.load_candidates(**kwargs, **GENERAL)
        fast_whole = [c for c in fast if c.serves_whole(lines)]
        general_whole = [c for c in general if c.serves_whole(lines)]
        assert [_key(c) for c in fast_whole] == [_key(c) for c in general_whole]
        fast_partial = [_key(c) for c in fast if not c.serves_whole(lines)]
        general_partial = [_key(c) for c in general if not c.serves_whole(lines)]
        assert fast_partial == general_partial[: len(fast_partial)]
        if len(general_whole) < k:  # every store in reach was read: the same partial stores
            assert fast_partial == general_partial
        assert [c.code for c in fast] == [c.code for c in fast_whole] + [k_[0] for k_ in fast_partial]
        compared += bool(general)
    assert compared > 20  # most draws reach stores holding the cart


def _stock_index_scans() -> int:
    with connection.cursor() as cursor:  # this transaction's own counts
        cursor.execute("SELECT coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = 'inventory_stock'")
        return cursor.fetchone()[0]


def test_the_fast_path_stops_reading_once_it_has_k_whole_cart_stores(city):
    """With every store stocked, the k nearest stores serve the whole cart: the fast statement looks up the stock
    of a few stores, where the general path looks up all sixty."""
    shirt = ProductFactory(sku="EVERYWHERE")
    for store in city["stores"]:
        put_stock(store, shirt, 5)
    kwargs = dict(lat=CENTRE[0], lon=CENTRE[1], lines={shirt.pk: 1}, method="pickup", at=city["now"], k=3,
                  radius_km=20, only_whole_cart=True)
    before = _stock_index_scans()
    cands = problems.load_candidates(**kwargs)
    fast_scans = _stock_index_scans() - before
    problems.load_candidates(**kwargs, **GENERAL)
    general_scans = _stock_index_scans() - before - fast_scans
    reach = sorted(
        (problems.great_circle_km(CENTRE[0], CENTRE[1], s.lat, s.lon), s.code)
        for s in Store.objects.filter(offers_pickup=True)
    )
    assert [c.code for c in cands] == [code for _, code in reach[:3]]
    assert general_scans >= 40
    assert fast_scans <= 10, (fast_scans, general_scans)
