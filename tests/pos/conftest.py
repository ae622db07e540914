import itertools
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from inventory.models import Stock
from inventory.selectors import reservation_differences, stock_ledger_differences
from loyalty import selectors as loyalty_selectors
from orders.pos.models import StoreApiKey
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

_ids = itertools.count(1)


def store_client(store, name="till-1") -> APIClient:
    _, key = StoreApiKey.objects.create_key(name=name, store=store)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def receipt(lines, *, rid=None, sold_at=None, tenders=None, phone=None, **extra) -> dict:
    """A receipt body: lines are (sku, qty) or (sku, qty, unit_price); paid in cash unless tenders are given."""
    body_lines = []
    for line in lines:
        sku, qty, *rest = line
        body_lines.append({"sku": sku, "qty": qty, "unit_price_vnd": rest[0] if rest else 100_000})
    total = sum(x["qty"] * x["unit_price_vnd"] for x in body_lines)
    body = {
        "receipt_id": rid or f"R-{next(_ids):06d}",
        "sold_at": (sold_at or timezone.now() - timedelta(minutes=1)).isoformat(),
        "lines": body_lines,
        "tenders": tenders if tenders is not None else [{"type": "cash", "amount_vnd": total}],
        **extra,
    }
    if phone:
        body["member_phone"] = phone
    return body


def sync(client, receipts):
    return client.post("/api/v1/pos/sales/", {"receipts": receipts}, format="json")


def stock_of(store, product) -> Stock:
    return Stock.objects.get(store=store, product=product)


def audits_clean() -> bool:
    return (
        stock_ledger_differences() == []
        and reservation_differences() == []
        and loyalty_selectors.ledger_differences() == []
        and loyalty_selectors.unbalanced_postings() == []
    )


@pytest.fixture
def shop(db):
    """Two stores 0.8 km apart in District 1, each with a till key; two SKUs stocked at both."""
    a = StoreFactory(code="HCM-Q1-A", name="Q1 Lê Lợi", lat=10.7743, lon=106.7038)
    b = StoreFactory(code="HCM-Q1-B", name="Q1 Nguyễn Huệ", lat=10.7800, lon=106.7080)
    shirt = ProductFactory(sku="AO-THUN-M", price_vnd=100_000)
    hat = ProductFactory(sku="NON-LA", price_vnd=50_000)
    for store in (a, b):
        put_stock(store, shirt, 10)
        put_stock(store, hat, 3)
    return {"a": a, "b": b, "shirt": shirt, "hat": hat, "api_a": store_client(a), "api_b": store_client(b)}


def backdate_ledger(hours: float = 3) -> None:
    """Place every movement so far `hours` in the past (the stock was there before the times a test plays with)."""
    from inventory.models import StockMovement

    StockMovement.objects.update(created_at=timezone.now() - timedelta(hours=hours))


@pytest.fixture(autouse=True)
def _fresh_pricing_policy():
    """Each test prices with the policy its own rows make: the process's cached policy (kept while the policy's
    version does not move, and products do not move it) is dropped before and after."""
    from orders.pricing import selectors as pricing_selectors

    pricing_selectors.forget_cached_policy()
    yield
    pricing_selectors.forget_cached_policy()


EXAMPLE_STORE = "HCM-Q1-01"


def example_policy(store=None) -> dict:
    """The pricing policy of the POS contract's examples (orders/pos/api/examples.py), for the tills and the
    website alike: the shirt at 179,000 ₫ on a chain-wide price list (199,000 ₫ base), 10 % off the hat, and a
    single-use 20,000 ₫ coupon SUMMER20K off the cart. Creates the two SKUs unless they exist."""
    from inventory.models import Product
    from orders.pricing import services as pricing_services
    from orders.pricing.models import Code, PriceList, PriceListRow, Promotion

    shirt = Product.objects.filter(sku="AO-THUN-001-M").first() or ProductFactory(
        sku="AO-THUN-001-M", name="Áo thun cotton trắng M", price_vnd=199_000, category="ao-thun")
    hat = Product.objects.filter(sku="NON-LA-01").first() or ProductFactory(
        sku="NON-LA-01", name="Nón lá Huế", price_vnd=85_000, category="non")
    summer = PriceList.objects.create(code="summer-2025", name="Summer 2025")
    PriceListRow.objects.create(price_list=summer, product=shirt, price_vnd=179_000)
    hat10 = Promotion.objects.create(code="hat-10", name="10% off the hat", kind="percent_off", target="sku",
                                     skus=["NON-LA-01"], percent=10, channels=["website", "store"])
    coupon = Promotion.objects.create(code="coupon-20k", name="20,000 ₫ off with a coupon", kind="amount_off",
                                      target="cart", amount_vnd=20_000, requires_code=True,
                                      channels=["website", "store"])
    code = Code.objects.create(code="SUMMER20K", promotion=coupon, max_uses=1)
    pricing_services.policy_changed()
    return {"shirt": shirt, "hat": hat, "price_list": summer, "hat10": hat10, "coupon": coupon, "code": code}
