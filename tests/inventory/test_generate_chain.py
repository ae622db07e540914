"""`manage.py generate_chain`: a small synthetic chain on PostgreSQL through the command itself."""

import math

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from inventory.models import OpeningHours, Product, Stock, StockMovement, Store
from inventory.selectors import stock_ledger_differences
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the generator's fast path needs PostgreSQL"),
]

CENTRES = {"Ho Chi Minh City": (10.7769, 106.7009, 12), "Hà Nội": (21.0285, 105.8542, 10), "Đà Nẵng": (16.0544, 108.2022, 6)}


def generate(**kwargs):
    options = {"stores": 12, "skus": 30, "seed": 7, "verbosity": 0, **kwargs}
    call_command("generate_chain", **options)


def snapshot() -> dict:
    """Everything that should depend on the seed only, keyed by codes (ids change when the chain is regenerated)."""
    stores = {
        s.code: (s.name, s.city, s.lat, s.lon, s.services, s.delivery_radius_km, s.picking_capacity_per_hour)
        for s in Store.objects.filter(code__startswith="GEN-")
    }
    products = {p.sku: (p.name, p.barcode, p.price_vnd, p.category) for p in Product.objects.filter(sku__startswith="GEN-")}
    stock = {
        (code, sku): (on_hand, safety)
        for code, sku, on_hand, safety in Stock.objects.filter(store__code__startswith="GEN-").values_list(
            "store__code", "product__sku", "on_hand", "safety"
        )
    }
    hours = sorted(
        OpeningHours.objects.filter(store__code__startswith="GEN-").values_list("store__code", "weekday", "opens", "closes")
    )
    return {"stores": stores, "products": products, "stock": stock, "hours": hours}


def ean13_valid(code: str) -> bool:
    digits = [int(c) for c in code]
    return len(digits) == 13 and sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10 == 0


def km(lat1, lon1, lat2, lon2) -> float:
    dlat = math.radians(lat2 - lat1)
    dlon = math.radians(lon2 - lon1)
    a = math.sin(dlat / 2) ** 2 + math.cos(math.radians(lat1)) * math.cos(math.radians(lat2)) * math.sin(dlon / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def test_small_chain_has_every_store_sku_pair_and_a_clean_ledger():
    generate()
    stores = list(Store.objects.filter(code__startswith="GEN-"))
    products = list(Product.objects.filter(sku__startswith="GEN-"))
    assert len(stores) == 12 and len(products) == 30
    assert Stock.objects.count() == 12 * 30
    assert StockMovement.objects.filter(reason="opening_balance").count() == Stock.objects.exclude(on_hand=0, safety=0).count()
    assert stock_ledger_differences() == []
    # 55 / 35 / 10 %, largest remainder: 7, 4, 1
    assert sorted(s.code.split("-")[1] for s in stores).count("HCM") == 7
    assert [s.code for s in stores if s.code.startswith("GEN-HN-")] == [f"GEN-HN-{i:04d}" for i in range(1, 5)]
    for store in stores:
        lat, lon, radius = CENTRES[store.city]
        assert km(lat, lon, store.lat, store.lon) <= radius + 0.01
        assert 5 <= store.delivery_radius_km <= 10
        assert 10 <= store.picking_capacity_per_hour <= 60
        assert "pickup" in store.services
        assert store.opening_hours.exists()
    barcodes = [p.barcode for p in products]
    assert len(set(barcodes)) == len(barcodes)
    assert all(b.startswith("893") and ean13_valid(b) for b in barcodes)
    assert len({p.sku for p in products}) == 30
    assert all(p.price_vnd > 0 and p.price_vnd % 1000 == 0 for p in products)
    quantities = list(Stock.objects.values_list("on_hand", "safety"))
    assert all(0 <= oh <= 40 and 0 <= sf <= 2 for oh, sf in quantities)
    assert len({oh for oh, _ in quantities}) > 5  # varied, not constant


def test_same_seed_gives_the_same_chain_and_another_seed_does_not():
    generate(seed=11)
    first = snapshot()
    generate(seed=11, replace=True)
    assert snapshot() == first
    generate(seed=12, replace=True)
    other = snapshot()
    assert other["stores"].keys() == first["stores"].keys()  # the codes, not where the stores are
    assert len(other["stock"]) == len(first["stock"])
    assert other["stores"] != first["stores"] and other["stock"] != first["stock"]


def test_replace_is_idempotent_and_leaves_other_stores_alone():
    demo_store, demo_product = StoreFactory(), ProductFactory()
    put_stock(demo_store, demo_product, 5)
    with pytest.raises(CommandError, match="--replace"):
        generate()  # nothing there yet: fine
        generate()  # a chain exists and --replace was not given
    generate(replace=True)
    counts = (Store.objects.count(), Product.objects.count(), Stock.objects.count(), StockMovement.objects.count())
    generate(replace=True)
    assert (Store.objects.count(), Product.objects.count(), Stock.objects.count(), StockMovement.objects.count()) == counts
    # The generated stores hold only generated products; the other store keeps its stock and ledger.
    assert not Stock.objects.filter(store__code__startswith="GEN-", product=demo_product).exists()
    assert Stock.objects.get(store=demo_store, product=demo_product).on_hand == 5
    assert StockMovement.objects.filter(store=demo_store).count() == 1
    assert stock_ledger_differences() == []
    codes = list(Store.objects.values_list("code", flat=True))
    assert len(codes) == len(set(codes))


def test_city_subset_and_bad_input():
    generate(stores=5, skus=3, cities="dn")
    assert set(Store.objects.filter(code__startswith="GEN-").values_list("city", flat=True)) == {"Đà Nẵng"}
    with pytest.raises(CommandError):
        generate(cities="sg", replace=True)
