import json

import pytest
from rest_framework.test import APIClient

import orders.couriers.admin  # noqa: F401 - registers the courier admin before the URLconf is built (see report)
from o2o import signing
from orders import services
from tests.orders.conftest import BEN_THANH, CUSTOMER, chain  # noqa: F401 - the chain fixture

SECRETS = {"local": ["local-new", "local-old"], "ahamove": ["aha-secret"], "lalamove": ["lala-secret"]}


@pytest.fixture(autouse=True)
def _courier_settings(settings):
    settings.O2O_COURIER_SECRETS = SECRETS
    settings.O2O_COURIER_PROVIDERS = ["local", "ahamove", "lalamove"]
    settings.O2O_COURIER_DEFAULT_PROVIDER = "local"
    settings.O2O_LOCAL_COURIER_FAILURE_RATE = 0.0
    settings.O2O_COURIER_SLA_ASSIGN_MINUTES = 10
    settings.O2O_COURIER_SLA_PICKUP_MINUTES = 20
    settings.O2O_COURIER_MAX_REDISPATCH = 1
    settings.O2O_COURIER_MAX_ATTEMPTS = 3


def packed_order(channel, lines=None, *, address="12 Lê Lợi, Quận 1"):
    """A delivery order placed at the chain and packed at its store, ready for a courier."""
    order = services.place_order(
        channel=channel, lines=lines or {"AO-THUN-M": 1}, customer_name=CUSTOMER["name"],
        customer_phone=CUSTOMER["phone"], method="delivery", actor="test", address=address, **BEN_THANH,
    )
    f = order.fulfillments.get()
    for step in ("picking", "packed"):
        services.transition_fulfillment(fulfillment=f.pk, to=step, actor="staff")
    f.refresh_from_db()
    return f


def signed_post(client: APIClient, provider: str, body: bytes | dict, *, secret: str | None = None,
                timestamp: int | None = None, header: str | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {}
    if header is not None:
        headers["HTTP_O2O_SIGNATURE"] = header
    elif secret is not None or provider in SECRETS:
        headers["HTTP_O2O_SIGNATURE"] = signing.sign(secret or SECRETS[provider][0], raw, timestamp=timestamp)
    return client.post(f"/api/v1/webhooks/couriers/{provider}/", data=raw, content_type="application/json", **headers)
