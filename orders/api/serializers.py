"""Input and output shapes of the promise and order API. No business rules here."""

import functools
import uuid
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# plain_json_number: FloatField's rules for a JSON number, shared with the availability endpoint's fast reader.
from inventory.api.serializers import CartLineInput, plain_cart_lines
from inventory.api.serializers import plain_json_number as _float
from orders import selectors
from orders.models import ChangeOfferStatus, Method, OrderStatus, PaymentState
from orders.pricing.api.serializers import CODE_MAX_LENGTH, MAX_CODES, PricedOutput, codes_field


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
    member_phone = serializers.CharField(
        required=False, max_length=40,
        help_text="The loyalty member the order will earn for (its `loyalty.phone`, else the customer's phone), any "
        "common format: prices for the member's tier and per-member promotions. Quote with the member the order "
        "will carry, or placing it may answer 409 price_changed.",
    )
    codes = codes_field()

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
    delivery_fee_vnd = serializers.IntegerField(help_text="The delivery fee (0 for pickup); as in `pricing`.")
    total_vnd = serializers.IntegerField(
        help_text="What the customer pays with this option: goods after discounts plus the delivery fee "
        "(`pricing.grand_total_vnd`)."
    )
    pricing = PricedOutput(
        help_text="The price with this option: at its selling store (the pickup store, or the first shipment's), "
        "with the fee of its farthest shipment. An order placed with the option is charged this, or refused with "
        "409 price_changed."
    )


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
        'E.g. {"hold_id": 17} or {"phone": "0901234567"}. Its member (else the customer) gets their tier\'s '
        "prices and per-member promotions.",
    )
    codes = codes_field(
        help_text="Coupon or voucher codes, reserved with the order and released if it is cancelled. Default: the "
        "promise's. Refused: 422 code_unknown, code_expired, code_used_up (e.g. a single-use code another order "
        "or a till took), code_not_yours, code_out_of_scope."
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
    unit_price_vnd = serializers.IntegerField(help_text="The price that applied (a price list's or the base price).")
    discount_vnd = serializers.IntegerField(help_text="This line's share of every discount.")
    net_vnd = serializers.SerializerMethodField(help_text="What the line costs: qty × unit price - discount.")
    unfulfilled_qty = serializers.IntegerField()

    def get_net_vnd(self, line) -> int:
        return line.qty * line.unit_price_vnd - line.discount_vnd


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
    kind = serializers.CharField(help_text="initial, reroute, wave, manual, store_event")
    cause = serializers.CharField(help_text="store_event: the store event's ledger reference, e.g. "
                                  "'pos:HCM-Q1-001:R-0042' (a till receipt); empty otherwise")
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
    subtotal_vnd = serializers.IntegerField(help_text="The lines at their unit prices.")
    discount_vnd = serializers.IntegerField(help_text="Promotions and codes, over all lines.")
    delivery_fee_vnd = serializers.IntegerField()
    points_tender_vnd = serializers.IntegerField(help_text="Part of the total paid with loyalty points.")
    points_redeemed = serializers.IntegerField(help_text="Loyalty points spent on this order.")
    total_vnd = serializers.IntegerField(help_text="subtotal - discount + delivery fee.")
    pricing = serializers.SerializerMethodField(
        help_text="What was applied: each line's price and discounts, the promotions with their rules, the codes, "
        "the fee. Null for orders placed before prices had a policy."
    )
    created_at = serializers.DateTimeField()
    lines = OrderLineOutput(many=True)
    fulfillments = FulfillmentOutput(many=True)

    @extend_schema_field(PricedOutput(allow_null=True))
    def get_pricing(self, order):
        return order.pricing or None


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


def _nullable(convert):
    """A field's to_representation behind the serializer's own rule: None stays None, whatever the field."""
    return lambda value: None if value is None else convert(value)


_str, _int, _float_out = _nullable(str), _nullable(int), _nullable(float)  # CharField, IntegerField, FloatField


@functools.cache
def _order_output_fields() -> tuple:
    """The bound fields of represent(OrderOutput, ...) whose rendering is more than str/int/float (choices, time zone
    and format of datetimes, booleans), so the payload below renders them with DRF's own code and settings."""
    fields = _prototype(OrderOutput).fields
    fulfillment = fields["fulfillments"].child.fields
    pickup = _prototype(PickupOutput).fields
    return tuple(
        _nullable(field.to_representation)
        for field in (
            fields["status"], fields["method"], fields["payment_state"], fields["created_at"],
            fulfillment["promised_by"], pickup["is_live"],
        )
    )


def placed_order_payload(placed: Any) -> dict:
    """represent(OrderOutput, placed) for the PlacedOrder that placement attaches to the order (orders.services),
    key for key and value for value, without walking the serializers (their nested to_representation, a
    get_attribute and a method call per field, took about twice as long). The order's own fields are read from
    placed.order, where PlacedOrder's __getattr__ sends them; pickup is FulfillmentOutput.get_pickup's.
    tests/orders/test_order_output_fast.py holds it to the serializer's answer and to the order detail."""
    status, method, payment_state, created_at, promised_by, is_live = _order_output_fields()
    order = placed.order
    pickup_store = order.pickup_store
    fulfillments = []
    # DRF's DateTimeField costs ~10 us a value (the current time zone through asgiref's Local); a placement's
    # fulfillments share one promise time, rendered once here.
    promised: dict = {}
    for f in placed.fulfillments:
        code = f.pickup_code
        if f.promised_by not in promised:
            promised[f.promised_by] = promised_by(f.promised_by)
        fulfillments.append({
            "id": _int(f.id),
            "store": None if f.store is None else {"code": _str(f.store.code), "name": _str(f.store.name)},
            "status": _str(f.status),
            "round": _int(f.round),
            "promised_by": promised[f.promised_by],
            "distance_km": _float_out(f.distance_km),
            "lines": [
                {"sku": _str(line.product.sku), "qty": _int(line.qty), "picked_qty": _int(line.picked_qty)}
                for line in f.lines
            ],
            "pickup": {"code": _str(code.code), "qr_payload": _str(code.qr_payload), "is_live": is_live(code.is_live)}
            if code else None,
        })
    return {
        "number": _str(order.number),
        "status": status(order.status),
        "method": method(order.method),
        "payment_state": payment_state(order.payment_state),
        "customer_name": _str(order.customer_name),
        "customer_phone": _str(order.customer_phone),
        "destination_lat": _float_out(order.destination_lat),
        "destination_lon": _float_out(order.destination_lon),
        "destination_address": _str(order.destination_address),
        "pickup_store": None if pickup_store is None else _str(pickup_store.code),
        "promise_option": _str(order.promise_option),
        "subtotal_vnd": _int(order.subtotal_vnd),
        "discount_vnd": _int(order.discount_vnd),
        "delivery_fee_vnd": _int(order.delivery_fee_vnd),
        "points_tender_vnd": _int(order.points_tender_vnd),
        "points_redeemed": _int(order.points_redeemed),
        "total_vnd": _int(order.total_vnd),
        "pricing": order.pricing or None,  # OrderOutput.get_pricing
        "created_at": created_at(order.created_at),
        "lines": [
            {
                "sku": _str(line.product.sku),
                "name": _str(line.product.name),
                "qty": _int(line.qty),
                "unit_price_vnd": _int(line.unit_price_vnd),
                "discount_vnd": _int(line.discount_vnd),
                "net_vnd": line.qty * line.unit_price_vnd - line.discount_vnd,  # OrderLineOutput.get_net_vnd
                "unfulfilled_qty": _int(line.unfulfilled_qty),
            }
            for line in placed.lines
        ],
        "fulfillments": fulfillments,
    }


class ChangeOptionOutput(serializers.Serializer):
    id = serializers.CharField(help_text="Pass it as `option` to accept: move, keep or cancel")
    kind = serializers.ChoiceField(choices=["move", "keep", "cancel"])
    store = serializers.CharField(allow_null=True, help_text="Where the customer collects (move, keep)")
    store_name = serializers.CharField(allow_blank=True)
    distance_km = serializers.FloatField(allow_null=True, help_text="From the store the customer chose (move)")
    ready_by = serializers.DateTimeField(allow_null=True)
    lines = ShipmentLineOutput(many=True, help_text="What the customer collects")
    missing = ShipmentLineOutput(many=True, help_text="Units the order no longer gets (keep, cancel)")


class ChangeOfferOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ChangeOfferStatus.choices)
    cause = serializers.CharField(help_text="The store event, e.g. pos:HCM-Q1-001:R-0042")
    event = serializers.CharField(source="event_kind", help_text="sale, count, damage or transfer")
    missing = ShipmentLineOutput(many=True, help_text="The units the store event took from this pickup")
    options = ChangeOptionOutput(many=True)
    chosen = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(help_text="Unanswered by then: keep what is left")


class OrderDetailOutput(OrderOutput):
    routing = RoutingDecisionOutput(many=True, source="routing_decisions.all")
    change_offers = serializers.SerializerMethodField(
        help_text="Open offers to the customer after a store event took units of a pickup: answer one with "
        "POST /api/v1/orders/{number}/change-offers/{id}/accept/."
    )

    @extend_schema_field(ChangeOfferOutput(many=True))
    def get_change_offers(self, order):
        offers = getattr(order, "open_change_offers", None)
        if offers is None:
            offers = selectors.open_change_offers().filter(order=order).order_by("pk")
        return [represent(ChangeOfferOutput, offer) for offer in offers]


class ChangeOfferAcceptInput(serializers.Serializer):
    option = serializers.CharField(max_length=16, help_text="One of the offer's option ids: move, keep or cancel")


class ChangeOfferAcceptOutput(serializers.Serializer):
    offer = ChangeOfferOutput()
    order = OrderDetailOutput()


class CancelInput(serializers.Serializer):
    reason = serializers.CharField(required=False, max_length=200, allow_blank=True, default="")


# --- fast input for the hot write paths ----------------------------------------------------------------------------
# OrderInput and PromiseInput stay the contract (schema, error bodies). Their nested validation cost ~1.3 ms of an
# order placement, so a body that is plainly valid (JSON numbers and booleans where those go, printable strings,
# a canonical choice) is read here with the same bounds, trimming and defaults, and gives exactly the serializer's
# validated data; anything else, and every body the serializer would refuse, goes through the serializer, so a client
# always gets exactly its 400. Keys the serializer does not declare are ignored, as it ignores them.
# tests/orders/test_order_fast_parse.py holds the two to the same answers.

_METHODS = {str(value): value for value, _ in Method.choices}
_PAYMENT_STATES = {str(value): value for value, _ in PaymentState.choices}
_MAX_ID = 2**63  # well inside what IntegerField reads back unchanged through str()


def _text(value, max_length: int) -> str | None:
    """CharField(max_length=max_length) of a plain string: trimmed as DRF trims, not blank. Characters that are not
    printable (NUL, surrogates, control and format characters, odd spaces) are left to the serializer."""
    if type(value) is not str:
        return None
    value = value.strip()
    return value if 0 < len(value) <= max_length and value.isprintable() else None


def _plain_destination(value) -> dict | None:
    """DestinationInput, its validate() included: both lat and lon, and/or a non-blank address."""
    if type(value) is not dict:
        return None
    destination: dict = {}
    if "lat" in value or "lon" in value:
        lat, lon = _float(value.get("lat"), -90, 90), _float(value.get("lon"), -180, 180)
        if lat is None or lon is None:
            return None
        destination = {"lat": lat, "lon": lon}
    if "address" in value:
        address = _text(value["address"], 300)
        if address is None:
            return None
        destination["address"] = address
    return destination or None


def _plain_loyalty(value) -> dict | None:
    if type(value) is not dict:
        return None
    loyalty: dict = {}
    if "phone" in value:
        phone = _text(value["phone"], 40)
        if phone is None:
            return None
        loyalty["phone"] = phone
    if "hold_id" in value:
        hold_id = value["hold_id"]
        if type(hold_id) is not int or not 1 <= hold_id < _MAX_ID:
            return None
        loyalty["hold_id"] = hold_id
    return loyalty


def _plain_codes(data: dict, q: dict) -> bool:
    """codes_field(): a list of plain strings (trimmed, not blank), at most MAX_CODES; absent stays absent."""
    if "codes" not in data:
        return True
    codes = data["codes"]
    if type(codes) is not list or len(codes) > MAX_CODES:
        return False
    texts = [_text(code, CODE_MAX_LENGTH) for code in codes]
    if any(text is None for text in texts):
        return False
    q["codes"] = texts
    return True


def _plain_place(data: dict, q: dict) -> bool:
    """destination and pickup_store, common to both inputs, into q; False when the serializer must decide."""
    if "destination" in data:
        destination = _plain_destination(data["destination"])
        if destination is None:
            return False
        q["destination"] = destination
    if "pickup_store" in data:
        pickup_store = _text(data["pickup_store"], 32)
        if pickup_store is None:
            return False
        q["pickup_store"] = pickup_store
    return True


def _plain_allow_split(data: dict, q: dict) -> bool:
    allow_split = data.get("allow_split", True)
    if type(allow_split) is not bool:
        return False
    q["allow_split"] = allow_split
    return True


def plain_promise_input(data) -> dict | None:
    """dict(PromiseInput(data=data).validated_data) for a plainly valid body, or None to let the serializer decide
    (it then accepts the body with the same result, or answers the 400)."""
    if type(data) is not dict:
        return None
    lines = plain_cart_lines(data.get("lines"))
    if lines is None:
        return None
    q: dict = {"lines": lines}
    if not _plain_place(data, q) or not _plain_allow_split(data, q):
        return None
    if "member_phone" in data:
        member_phone = _text(data["member_phone"], 40)
        if member_phone is None:
            return None
        q["member_phone"] = member_phone
    if not _plain_codes(data, q):
        return None
    if "destination" not in q and "pickup_store" not in q:  # PromiseInput.validate
        return None
    return q


def plain_order_input(data) -> dict | None:
    """dict(OrderInput(data=data).validated_data) for a plainly valid body, or None to let the serializer decide
    (it then accepts the body with the same result, or answers the 400)."""
    if type(data) is not dict:
        return None
    lines = plain_cart_lines(data.get("lines"))
    customer, method = data.get("customer"), data.get("method")
    if lines is None or type(customer) is not dict or type(method) is not str or method not in _METHODS:
        return None
    name, phone = _text(customer.get("name"), 200), _text(customer.get("phone"), 32)
    if name is None or phone is None:
        return None
    q: dict = {"lines": lines, "customer": {"name": name, "phone": phone}, "method": _METHODS[method]}
    if not _plain_place(data, q):
        return None
    if "promise" in data:
        promise = data["promise"]
        if type(promise) is not str:
            return None
        try:
            q["promise"] = uuid.UUID(hex=promise)  # what UUIDField does with a string
        except ValueError:
            return None
    if "option" in data:
        option = _text(data["option"], 64)
        if option is None:
            return None
        q["option"] = option
    if "payment_state" in data:
        payment_state = data["payment_state"]
        if type(payment_state) is not str or payment_state not in _PAYMENT_STATES:
            return None
        q["payment_state"] = _PAYMENT_STATES[payment_state]
    else:
        q["payment_state"] = PaymentState.PENDING  # the field's default itself, an enum member, as DRF gives it
    if not _plain_allow_split(data, q):
        return None
    if "loyalty" in data:
        loyalty = _plain_loyalty(data["loyalty"])
        if loyalty is None:
            return None
        q["loyalty"] = loyalty
    if not _plain_codes(data, q):
        return None
    # OrderInput.validate: a body its cross-field rules refuse gets the serializer's 400.
    if "promise" in q and "option" not in q:
        return None
    if q["method"] == Method.PICKUP and "pickup_store" not in q and "promise" not in q:
        return None
    if q["method"] == Method.DELIVERY and "destination" not in q and "promise" not in q:
        return None
    return q
