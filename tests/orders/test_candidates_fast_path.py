"""Checkout loads its candidate stores with one statement that stops reading stores once it has what it needs
(orders.fast_paths._nearest_candidates_sql). It must pick the same stores as the general path that reads every
store in reach (the one waves and pinned stores use): the same whole-cart stores with the same stock, distance,
load and opening state, and as partial stores the nearest of the general path's partial ones."""

import pytest
from django.db import connection

from inventory.models import Store
from orders import routing_input
from orders.candidate_stores import Candidate, great_circle_km
from tests.conftest import put_stock
from tests.factories import ProductFactory
from tests.orders.conftest import CENTRE

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the fast path is PostgreSQL's")

# A cart's candidates through the general path: units added back make load_candidates read every store in reach;
# these add none.
GENERAL = {"extra_stock": {(-1, -1): 0}}


def _key(c: Candidate) -> tuple:
    return (
        c.code, c.distance_km, c.delivery_radius_km, tuple(c.methods), c.capacity_per_hour, tuple(sorted(c.stock.items())),
        c.load, c.open_now, c.closes_at, c.next_opening, c.time_zone,
    )


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
        fast = routing_input.load_candidates(**kwargs)
        general = routing_input.load_candidates(**kwargs, **GENERAL)
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
    cands = routing_input.load_candidates(**kwargs)
    fast_scans = _stock_index_scans() - before
    routing_input.load_candidates(**kwargs, **GENERAL)
    general_scans = _stock_index_scans() - before - fast_scans
    reach = sorted(
        (great_circle_km(CENTRE[0], CENTRE[1], s.lat, s.lon), s.code)
        for s in Store.objects.filter(offers_pickup=True)
    )
    assert [c.code for c in cands] == [code for _, code in reach[:3]]
    assert general_scans >= 40
    assert fast_scans <= 10, (fast_scans, general_scans)
