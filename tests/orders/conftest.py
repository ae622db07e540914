import pytest

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
