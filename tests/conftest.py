import socket

import pytest
from rest_framework.test import APIClient

from inventory import services as stock_services
from inventory.models import MovementReason
from o2o.models import SalesChannelKey
from orders.pricing import selectors as pricing_selectors
from tests.factories import ProductFactory, SalesChannelFactory, StoreFactory


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """Passwords hashed with MD5 in tests only: each HTTP Basic request (the head office's pricing API, which the
    API fuzz calls with made-up users) would otherwise run PBKDF2's 870,000 rounds, ~0.4 s of CPU."""
    from django.conf import settings
    from django.contrib.auth.hashers import get_hashers, get_hashers_by_algorithm

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    get_hashers.cache_clear()
    get_hashers_by_algorithm.cache_clear()
    yield


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests never call out: any connection to a non-loopback address fails loudly."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in {"localhost", "::1"} or host.startswith("/")):
            raise RuntimeError(f"tests may not connect to {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _no_outbox_kick(settings):
    """Outbox delivery is driven explicitly by the tests that test it, not kicked through the broker."""
    settings.O2O_OUTBOX_KICK = False


@pytest.fixture
def channel(db):
    return SalesChannelFactory()


@pytest.fixture
def channel_key(channel):
    _, key = SalesChannelKey.objects.create_key(name="test", channel=channel)
    return key


@pytest.fixture
def api(channel_key):
    """An API client authenticated as the website sales channel."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {channel_key}")
    return client


@pytest.fixture
def anon_api():
    return APIClient()


@pytest.fixture
def store(db):
    return StoreFactory()


@pytest.fixture
def product(db):
    return ProductFactory()


def put_stock(store, product, on_hand, *, safety=0):
    """Give a store stock the way a retailer would: a goods receipt through the service."""
    stock_services.adjust_stock(
        store=store, product=product, reason=MovementReason.GOODS_RECEIPT, actor="test", on_hand=on_hand
    )
    if safety:
        stock_services.set_stock_levels(store=store, product=product, actor="test", safety=safety)


@pytest.fixture(autouse=True)
def _fresh_policy_cache():
    """Each process caches the price policy by its version, and versions start again in each test's rolled-back
    database: forgotten around every test, so no test prices with another's promotions."""
    pricing_selectors.forget_cached_policy()
    yield
    pricing_selectors.forget_cached_policy()
