"""The availability answer is built as plain dicts for speed; it must stay exactly what the schema's serializer gives."""

import json
from datetime import time

import pytest

from inventory import selectors
from inventory.api import serializers as io
from inventory.geocoding import locate
from inventory.models import OpeningHours
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

pytestmark = pytest.mark.django_db


def test_plain_payload_equals_the_serializer_output(api):
    open_store = StoreFactory(code="HCM-Q1-101", lat=10.7743, lon=106.7038, offers_returns=False)
    closed_store = StoreFactory(code="HCM-Q3-101", lat=10.7835, lon=106.6870)
    OpeningHours.objects.filter(store=closed_store).delete()
    OpeningHours.objects.create(store=closed_store, weekday=0, opens=time(0, 0), closes=time(0, 1))
    shirt, dress = ProductFactory(sku="AO-THUN-XANH-L"), ProductFactory(sku="VAY-DEN-S")
    put_stock(open_store, shirt, 3)
    put_stock(closed_store, shirt, 1)
    put_stock(closed_store, dress, 2, safety=1)
    lines = {"AO-THUN-XANH-L": 2, "VAY-DEN-S": 1}
    place = locate(lat=10.7725, lon=106.6980, address=None)
    stores = selectors.cart_availability(lat=place.lat, lon=place.lon, lines=lines, radius_km=10)
    assert [s.nearby.store.code for s in stores] == ["HCM-Q1-101", "HCM-Q3-101"]
    assert {s.nearby.open_now for s in stores} == {True, False}  # both the closes_at and the next_opening branch

    expected = io.CartAvailabilityOutput({"point": place, "lines": lines, "stores": stores}).data
    fast = io.cart_availability_payload(place=place, lines=lines, stores=stores)
    assert json.dumps(fast, sort_keys=True) == json.dumps(expected, sort_keys=True, default=str)

    response = api.post(
        "/api/v1/availability/", {"lat": 10.7725, "lon": 106.6980, "lines": [
            {"sku": "AO-THUN-XANH-L", "qty": 2}, {"sku": "VAY-DEN-S", "qty": 1}]}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert [s["available"] for s in body["stores"]] == [{"AO-THUN-XANH-L": 3, "VAY-DEN-S": 0},
                                                        {"AO-THUN-XANH-L": 1, "VAY-DEN-S": 1}]
    assert [s["store"]["services"] for s in body["stores"]] == [["delivery", "pickup"],
                                                                 ["delivery", "pickup", "returns"]]
