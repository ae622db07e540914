"""Input and output shapes of the store and availability API. No business rules here."""

import math
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from rest_framework import serializers

from inventory.selectors import SERVICES


class PointInput(serializers.Serializer):
    lat = serializers.FloatField(required=False, min_value=-90, max_value=90)
    lon = serializers.FloatField(required=False, min_value=-180, max_value=180)
    address = serializers.CharField(required=False, max_length=300, allow_blank=False)
    radius_km = serializers.FloatField(required=False, default=10.0, min_value=0.1, max_value=settings.O2O_MAX_RADIUS_KM)
    service = serializers.ChoiceField(required=False, choices=SERVICES)
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=100)

    def validate(self, attrs):
        has_point = "lat" in attrs and "lon" in attrs
        if ("lat" in attrs) != ("lon" in attrs):
            raise serializers.ValidationError("Give both lat and lon, or an address.")
        if not has_point and not attrs.get("address"):
            raise serializers.ValidationError("Give lat and lon, or an address.")
        return attrs


class CartLineInput(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    qty = serializers.IntegerField(min_value=1, max_value=10_000)


class CartAvailabilityInput(PointInput):
    lines = CartLineInput(many=True, allow_empty=False, max_length=settings.O2O_MAX_CART_LINES)
    only_whole_cart = serializers.BooleanField(required=False, default=False)

    def validate_lines(self, lines):
        merged: dict[str, int] = {}
        for line in lines:
            merged[line["sku"]] = merged.get(line["sku"], 0) + line["qty"]
        return merged


class PlaceOutput(serializers.Serializer):
    lat = serializers.FloatField()
    lon = serializers.FloatField()
    label = serializers.CharField()
    source = serializers.CharField()


class StoreOutput(serializers.Serializer):
    code = serializers.CharField(source="store.code")
    name = serializers.CharField(source="store.name")
    address = serializers.CharField(source="store.address")
    district = serializers.CharField(source="store.district")
    city = serializers.CharField(source="store.city")
    lat = serializers.FloatField(source="store.lat")
    lon = serializers.FloatField(source="store.lon")
    services = serializers.ListField(source="store.services", child=serializers.CharField())
    delivery_radius_km = serializers.FloatField(source="store.delivery_radius_km")
    distance_km = serializers.FloatField()
    open_now = serializers.BooleanField()
    closes_at = serializers.DateTimeField(allow_null=True)
    next_opening = serializers.DateTimeField(allow_null=True)


class StoresNearOutput(serializers.Serializer):
    point = PlaceOutput()
    stores = StoreOutput(many=True)


class StoreAvailabilityOutput(serializers.Serializer):
    store = StoreOutput(source="nearby")
    serves_whole_cart = serializers.BooleanField()
    available = serializers.DictField(child=serializers.IntegerField(), help_text="SKU -> units sellable online")


class CartAvailabilityOutput(serializers.Serializer):
    point = PlaceOutput()
    lines = serializers.DictField(child=serializers.IntegerField(), help_text="SKU -> requested units")
    stores = StoreAvailabilityOutput(many=True)


class NetworkAtpInput(serializers.Serializer):
    sku = serializers.ListField(child=serializers.CharField(max_length=64), allow_empty=False, max_length=200)
    service = serializers.ChoiceField(required=False, choices=SERVICES)


class NetworkAtpEntry(serializers.Serializer):
    sku = serializers.CharField()
    atp = serializers.IntegerField(help_text="Units the whole network can sell online")
    stores = serializers.IntegerField(help_text="Stores holding at least one sellable unit")


class HoldInput(serializers.Serializer):
    store = serializers.CharField(max_length=32, help_text="Store code")
    lines = CartLineInput(many=True, allow_empty=False, max_length=settings.O2O_MAX_CART_LINES)
    ttl_seconds = serializers.IntegerField(
        required=False, min_value=10, max_value=int(settings.O2O_HOLD_TTL.total_seconds()),
        default=int(settings.O2O_HOLD_TTL.total_seconds()),
    )

    def validate_lines(self, lines):
        return CartAvailabilityInput.validate_lines(self, lines)


class HoldOutput(serializers.Serializer):
    reference = serializers.CharField()
    store = serializers.CharField()
    expires_at = serializers.DateTimeField()
    lines = CartLineInput(many=True)


# --- fast output for the hot read paths ----------------------------------------------------------------------------
# The availability answer is built as plain dicts in exactly the shape (and with exactly the field conversions) of
# CartAvailabilityOutput, which stays the schema. Running the nested serializers for 20 stores cost ~2-3.5 ms of a
# ~10 ms request; tests/inventory/test_availability_output.py checks the two give identical JSON.

_datetime = serializers.DateTimeField()


def _when(value):
    return None if value is None else _datetime.to_representation(value)


def _memo_when() -> Callable[[datetime | None], str | None]:
    """_when remembering its answers for one response: the 20 stores share a handful of opening and closing times
    (equal instants render the same, in the current time zone), and DRF's conversion was ~0.5 ms a request."""
    seen: dict = {None: None}

    def when(value):
        text = seen.get(value, seen)
        if text is seen:
            text = seen[value] = _datetime.to_representation(value)
        return text

    return when


def store_payload(nearby, when=_when) -> dict:
    """StoreOutput(nearby).data, without the serializer machinery."""
    store = nearby.store
    return {
        "code": store.code,
        "name": store.name,
        "address": store.address,
        "district": store.district,
        "city": store.city,
        "lat": float(store.lat),
        "lon": float(store.lon),
        "services": store.services,
        "delivery_radius_km": float(store.delivery_radius_km),
        "distance_km": float(nearby.distance_km),
        "open_now": bool(nearby.open_now),
        "closes_at": when(nearby.closes_at),
        "next_opening": when(nearby.next_opening),
    }


def cart_availability_payload(*, place, lines: dict[str, int], stores) -> dict:
    """CartAvailabilityOutput({"point": place, "lines": lines, "stores": stores}).data, as plain dicts."""
    when = _memo_when()
    return {
        "point": {"lat": float(place.lat), "lon": float(place.lon), "label": str(place.label), "source": str(place.source)},
        "lines": {str(sku): int(qty) for sku, qty in lines.items()},
        "stores": [
            {
                "store": store_payload(entry.nearby, when),
                "serves_whole_cart": bool(entry.serves_whole_cart),
                "available": {str(sku): int(units) for sku, units in entry.available.items()},
            }
            for entry in stores
        ],
    }


# --- fast input for the hot read path ------------------------------------------------------------------------------
# CartAvailabilityInput stays the contract (schema, error bodies). Its nested validation cost ~1.4 ms a request, so a
# body that is plainly valid (numbers as JSON numbers, a point and no address, printable SKUs without surrogate
# whitespace) is read here with the same bounds and the same result; anything else, and every bad body, goes through
# the serializer, so a client always gets exactly the serializer's 400.

_MAX_CART_LINES = settings.O2O_MAX_CART_LINES
_MAX_RADIUS_KM = settings.O2O_MAX_RADIUS_KM


def plain_json_number(value, low: float, high: float) -> float | None:
    if type(value) not in (int, float):  # bool, str, None and the rest: the serializer decides
        return None
    try:
        value = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return value if math.isfinite(value) and low <= value <= high else None


def plain_cart_availability_input(data) -> dict | None:
    """CartAvailabilityInput(data=data).validated_data for a plainly valid body, or None to let the serializer
    decide (it then accepts the body with the same result, or answers the 400)."""
    if type(data) is not dict or "address" in data:
        return None
    lat = plain_json_number(data.get("lat"), -90, 90)
    lon = plain_json_number(data.get("lon"), -180, 180)
    radius_km = plain_json_number(data["radius_km"], 0.1, _MAX_RADIUS_KM) if "radius_km" in data else 10.0
    if lat is None or lon is None or radius_km is None:
        return None
    q = {"lat": lat, "lon": lon, "radius_km": radius_km, "limit": 20, "only_whole_cart": False}
    if "limit" in data:
        limit = data["limit"]
        if type(limit) is not int or not 1 <= limit <= 100:
            return None
        q["limit"] = limit
    if "service" in data:
        service = data["service"]
        if type(service) is not str or service not in SERVICES:
            return None
        q["service"] = service
    if "only_whole_cart" in data:
        whole = data["only_whole_cart"]
        if type(whole) is not bool:
            return None
        q["only_whole_cart"] = whole
    lines = plain_cart_lines(data.get("lines"))
    if lines is None:
        return None
    q["lines"] = lines
    return q


def plain_cart_lines(lines) -> dict[str, int] | None:
    """CartLineInput(many=True, allow_empty=False, max_length=O2O_MAX_CART_LINES) merged by SKU ({sku: qty}), for
    a plainly valid list (printable SKUs with nothing to trim, quantities as JSON integers), or None to let the
    serializer decide. The cart reader of every fast path (availability, promises, orders)."""
    if type(lines) is not list or not 0 < len(lines) <= _MAX_CART_LINES:
        return None
    merged: dict[str, int] = {}
    for line in lines:
        if type(line) is not dict:
            return None
        sku, qty = line.get("sku"), line.get("qty")
        if (
            type(sku) is not str or not 0 < len(sku) <= 64 or not sku.isprintable() or sku.strip() != sku
            or type(qty) is not int or not 1 <= qty <= 10_000
        ):
            return None
        merged[sku] = merged.get(sku, 0) + qty
    return merged
