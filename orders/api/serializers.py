"""Input and output shapes of the promise and order API. No business rules here."""

import functools
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inventory.api.serializers import CartLineInput
from orders.models import Method, OrderStatus, PaymentState


def _merge_lines(lines):
    merged: dict[str, int] = {}
    for line in lines:
        merged[line["sku"]] = merged.get(line["sku"], 0) + line["qty"]
    return merged


class DestinationInput(serializers.Serializer):
    lat = serializers.FloatField(required=False, min_value=-90, max_value=90)
    lon = serializers.FloatField(required=False, min_value=-180, max_value=180)
    address = serializers.CharField(required=False, max_length=300, allow_blank=False)

    def validate(self, attrs):
        if ("lat" in attrs) != ("lon" in attrs):
            raise serializers.ValidationError("Give both lat and lon, or an address.")
        if "lat" not in attrs and not attrs.get("address"):
            raise serializers.ValidationError("Give lat and lon, or an address.")
        return attrs


class PromiseInput(serializers.Serializer):
    lines = CartLineInput(many=True, allow_empty=False, max_length=settings.O2O_MAX_CART_LINES)
    destination = DestinationInput(required=False)
    pickup_store = serializers.CharField(required=False, max_length=32, help_text="Store code: quote pickup there only")
    allow_split = serializers.BooleanField(required=False, default=True)

    def validate_lines(self, lines):
        return _merge_lines(lines)

    def validate(self, attrs):
        if not attrs.get("destination") and not attrs.get("pickup_store"):
            raise serializers.ValidationError("Give a destination or a pickup store.")
        return attrs


class ShipmentLineOutput(serializers.Serializer):
    sku = serializers.CharField()
    qty = serializers.IntegerField()


class PromiseShipmentOutput(serializers.Serializer):
    store = serializers.CharField(help_text="Store code")
    store_name = serializers.CharField()
    distance_km = serializers.FloatField(allow_null=True)
    ready_by = serializers.DateTimeField(help_text="When the store has it packed")
    lines = ShipmentLineOutput(many=True)


class PromiseOptionOutput(serializers.Serializer):
    id = serializers.CharField(help_text="Pass it as `option` when placing the order")
    kind = serializers.ChoiceField(choices=["express_1h", "express_2h", "scheduled", "pickup"])
    method = serializers.ChoiceField(choices=Method.choices)
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField(help_text="Delivered by / ready for pickup by")
    split = serializers.BooleanField(help_text="Served by more than one store (several parcels)")
    shipments = PromiseShipmentOutput(many=True)


class PromiseOutput(serializers.Serializer):
    id = serializers.UUIDField()
    expires_at = serializers.DateTimeField()
    cart = serializers.DictField(child=serializers.IntegerField(), help_text="SKU -> units")
    destination_lat = serializers.FloatField(allow_null=True)
    destination_lon = serializers.FloatField(allow_null=True)
    options = PromiseOptionOutput(many=True)


class CustomerInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    phone = serializers.CharField(max_length=32, help_text="Vietnamese number; stored as E.164")


class OrderLoyaltyInput(serializers.Serializer):
    """The member this order earns for, and points paid as a tender (a hold from POST /api/v1/loyalty/redemptions/)."""

    phone = serializers.CharField(
        required=False, max_length=40,
        help_text="The member's phone, any common format; default: the customer's phone.",
    )
    hold_id = serializers.IntegerField(
        required=False, min_value=1,
        help_text="A held redemption of this member and channel, captured with the order in one transaction "
        "(its points pay points × LOYALTY_POINT_VALUE_VND of the total; no more than the total). Voided, "
        "expired or captured: 409 redemption_not_held; another member's: 422 redemption_member_mismatch; worth "
        "more than the total: 422 points_exceed_total; unknown: 404 redemption_not_found.",
    )


class OrderInput(serializers.Serializer):
    lines = CartLineInput(many=True, allow_empty=False, max_length=settings.O2O_MAX_CART_LINES)
    customer = CustomerInput()
    method = serializers.ChoiceField(choices=Method.choices)
    destination = DestinationInput(required=False, help_text="Delivery: where to (or taken from the promise)")
    pickup_store = serializers.CharField(required=False, max_length=32, help_text="Pickup: store code")
    promise = serializers.UUIDField(required=False, help_text="A promise id from POST /promises/")
    option = serializers.CharField(required=False, max_length=64, help_text="The chosen option id of the promise")
    payment_state = serializers.ChoiceField(choices=PaymentState.choices, default=PaymentState.PENDING)
    allow_split = serializers.BooleanField(required=False, default=True)
    loyalty = OrderLoyaltyInput(
        required=False,
        help_text="Earn points on this order (when it completes) and/or pay part of it with held points. "
        'E.g. {"hold_id": 17} or {"phone": "0901234567"}.',
    )

    def validate_lines(self, lines):
        return _merge_lines(lines)

    def validate(self, attrs):
        if attrs.get("promise") and not attrs.get("option"):
            raise serializers.ValidationError({"option": "Choose one of the promise's options."})
        if attrs["method"] == Method.PICKUP and not attrs.get("pickup_store") and not attrs.get("promise"):
            raise serializers.ValidationError({"pickup_store": "A pickup order needs a pickup store."})
        if attrs["method"] == Method.DELIVERY and not attrs.get("destination") and not attrs.get("promise"):
            raise serializers.ValidationError({"destination": "A delivery order needs a destination or a promise."})
        return attrs


class OrderLineOutput(serializers.Serializer):
    sku = serializers.CharField(source="product.sku")
    name = serializers.CharField(source="product.name")
    qty = serializers.IntegerField()
    unit_price_vnd = serializers.IntegerField()
    unfulfilled_qty = serializers.IntegerField()


class FulfillmentLineOutput(serializers.Serializer):
    sku = serializers.CharField(source="product.sku")
    qty = serializers.IntegerField()
    picked_qty = serializers.IntegerField(allow_null=True)


class PickupOutput(serializers.Serializer):
    code = serializers.CharField(help_text="Show it at the store")
    qr_payload = serializers.CharField()
    is_live = serializers.BooleanField()


class StoreRefOutput(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class FulfillmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    store = StoreRefOutput()
    status = serializers.CharField()
    round = serializers.IntegerField()
    promised_by = serializers.DateTimeField()
    distance_km = serializers.FloatField(allow_null=True)
    lines = FulfillmentLineOutput(many=True)
    pickup = serializers.SerializerMethodField()

    @extend_schema_field(PickupOutput(allow_null=True))
    def get_pickup(self, f):
        code = getattr(f, "pickup_code", None) if hasattr(f, "pickup_code") else None
        return represent(PickupOutput, code) if code else None


class CandidateOutput(serializers.Serializer):
    store = serializers.CharField()
    name = serializers.CharField(required=False)
    distance_km = serializers.FloatField()
    stock = serializers.DictField(child=serializers.IntegerField(), help_text="SKU -> units sellable online")
    whole_cart = serializers.BooleanField()
    capacity = serializers.IntegerField(help_text="Free picking capacity in the slot (order lines)")
    score = serializers.FloatField(help_text="Delivery cost (km)")
    chosen = serializers.BooleanField()
    note = serializers.CharField()


class RoutingDecisionOutput(serializers.Serializer):
    kind = serializers.CharField()
    created_at = serializers.DateTimeField()
    plan_status = serializers.CharField()
    reason = serializers.CharField()
    solve_ms = serializers.FloatField()
    candidates = CandidateOutput(many=True)


class OrderOutput(serializers.Serializer):
    number = serializers.CharField()
    status = serializers.ChoiceField(choices=OrderStatus.choices)
    method = serializers.ChoiceField(choices=Method.choices)
    payment_state = serializers.ChoiceField(choices=PaymentState.choices)
    customer_name = serializers.CharField()
    customer_phone = serializers.CharField()
    destination_lat = serializers.FloatField(allow_null=True)
    destination_lon = serializers.FloatField(allow_null=True)
    destination_address = serializers.CharField()
    pickup_store = serializers.CharField(source="pickup_store.code", allow_null=True, default=None)
    promise_option = serializers.CharField()
    subtotal_vnd = serializers.IntegerField()
    points_tender_vnd = serializers.IntegerField(help_text="Part of the total paid with loyalty points.")
    points_redeemed = serializers.IntegerField(help_text="Loyalty points spent on this order.")
    total_vnd = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    lines = OrderLineOutput(many=True)
    fulfillments = FulfillmentOutput(many=True)


@functools.cache
def _prototype(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    prototype = serializer_class()
    prototype.fields  # noqa: B018 - binds (deep-copies) the declared fields once, nested serializers included
    return prototype


def represent(serializer_class: type[serializers.Serializer], instance: Any) -> dict:
    """serializer_class(instance).data, without building the serializer again. A DRF serializer deep-copies its
    declared fields (and those of every nested serializer) each time one is made, which was about a tenth of an
    order placement's CPU; the fields' to_representation hold no per-call state, so one bound prototype per
    class (no context) gives the same answer."""
    return _prototype(serializer_class).to_representation(instance)


class OrderDetailOutput(OrderOutput):
    routing = RoutingDecisionOutput(many=True, source="routing_decisions.all")


class CancelInput(serializers.Serializer):
    reason = serializers.CharField(required=False, max_length=200, allow_blank=True, default="")
