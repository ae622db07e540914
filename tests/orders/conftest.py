import random
from datetime import time, timedelta

import pytest
from django.utils import timezone

from inventory import services as stock
from inventory.exceptions import InsufficientStock
from inventory.models import OpeningHours, Reservation
from orders.models import Fulfillment, FulfillmentLine, Order
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

BEN_THANH = {"lat": 10.7725, "lon": 106.6980}  # District 1
HANOI = {"lat": 21.0285, "lon": 105.8542}


@pytest.fixture
def chain(db):
    """Three District 1/3/7 stores around Bến Thành market and three SKUs.

    near (0.7 km) holds 3 shirts and 1 hat; mid (1.7 km) holds 5 shirts, 2 bags, 1 hat; far (5.4 km) holds 4 bags."""
    near = StoreFactory(code="HCM-Q1-001", name="Q1 Lê Lợi", lat=10.7743, lon=106.7038)
    mid = StoreFactory(code="HCM-Q3-001", name="Q3 Võ Văn Tần", lat=10.7835, lon=106.6870)
    far = StoreFactory(code="HCM-Q7-001", name="Q7 Phú Mỹ Hưng", lat=10.7295, lon=106.7218)
    shirt = ProductFactory(sku="AO-THUN-M", price_vnd=199_000)
    bag = ProductFactory(sku="TUI-VAI", price_vnd=99_000)
    hat = ProductFactory(sku="NON-LA", price_vnd=150_000)
    put_stock(near, shirt, 3)
    put_stock(near, hat, 1)
    put_stock(mid, shirt, 5)
    put_stock(mid, bag, 2)
    put_stock(mid, hat, 1)
    put_stock(far, bag, 4)
    return {"near": near, "mid": mid, "far": far, "shirt": shirt, "bag": bag, "hat": hat}


CUSTOMER = {"name": "Nguyễn Văn A", "phone": "0901 234 567"}

CENTRE = (10.7769, 106.7009)


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
