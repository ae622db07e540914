"""Input and output shapes of the returns API. No business rules here."""

from rest_framework import serializers

from orders.returns.models import Condition, ReturnStatus

MAX_LINES = 100


class ReturnLineInput(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    qty = serializers.IntegerField(min_value=1, max_value=10_000)
    condition = serializers.ChoiceField(choices=Condition.choices, default=Condition.RESELLABLE)


class ReceiptRefInput(serializers.Serializer):
    store = serializers.CharField(max_length=32, help_text="Code of the store that sold it")
    receipt_id = serializers.CharField(max_length=64)


class CollectionInput(serializers.Serializer):
    lat = serializers.FloatField(min_value=-90, max_value=90, required=False)
    lon = serializers.FloatField(min_value=-180, max_value=180, required=False)
    address = serializers.CharField(max_length=300, required=False, allow_blank=False)

    def validate(self, attrs):
        if ("lat" in attrs) != ("lon" in attrs):
            raise serializers.ValidationError("Give both lat and lon, or an address.")
        if "lat" not in attrs and not attrs.get("address"):
            raise serializers.ValidationError("Give lat and lon, or an address.")
        return attrs


class TillReturnInput(serializers.Serializer):
    order = serializers.CharField(max_length=32, required=False, help_text="An online order number")
    receipt = ReceiptRefInput(required=False, help_text="A till receipt of any store")
    lines = ReturnLineInput(many=True, allow_empty=False, max_length=MAX_LINES)
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        if bool(attrs.get("order")) == bool(attrs.get("receipt")):
            raise serializers.ValidationError("Name either an order or a receipt.")
        return attrs


class CollectionReturnInput(serializers.Serializer):
    order = serializers.CharField(max_length=32)
    lines = ReturnLineInput(many=True, allow_empty=False, max_length=MAX_LINES)
    collection = CollectionInput(help_text="Where the courier collects the parcel")
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class ReceiveLineInput(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    condition = serializers.ChoiceField(choices=Condition.choices)


class ReceiveInput(serializers.Serializer):
    lines = ReceiveLineInput(many=True, required=False, max_length=MAX_LINES,
                             help_text="The condition found, where it differs from what the customer declared")


class ReturnLineOutput(serializers.Serializer):
    sku = serializers.CharField(source="product.sku")
    qty = serializers.IntegerField()
    condition = serializers.CharField()
    refund_vnd = serializers.IntegerField()
    disposition = serializers.CharField()


class RefundOutput(serializers.Serializer):
    tender = serializers.CharField()
    amount_vnd = serializers.IntegerField()
    points = serializers.IntegerField()


class RoutingCandidateOutput(serializers.Serializer):
    store = serializers.CharField()
    distance_km = serializers.FloatField()
    shortage = serializers.DictField(child=serializers.IntegerField(), help_text="SKU -> units short of target")
    fills = serializers.IntegerField(help_text="Returned units that would fill a gap there")
    score = serializers.FloatField(help_text="km, minus the shortage preference")
    chosen = serializers.BooleanField()
    note = serializers.CharField()


class RoutingOutput(serializers.Serializer):
    plan_status = serializers.CharField()
    reason = serializers.CharField()
    solve_ms = serializers.FloatField()
    candidates = RoutingCandidateOutput(many=True)


class ReturnOutput(serializers.Serializer):
    number = serializers.CharField()
    status = serializers.ChoiceField(choices=ReturnStatus.choices)
    opened_via = serializers.CharField()
    order = serializers.CharField(source="order.number", allow_null=True, default=None)
    receipt = serializers.SerializerMethodField()
    receiving_store = serializers.CharField(source="receiving_store.code")
    reason = serializers.CharField()
    refund_vnd = serializers.IntegerField()
    refund_money_vnd = serializers.IntegerField()
    points_given_back = serializers.IntegerField()
    points_reversed = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField(allow_null=True)
    refunded_at = serializers.DateTimeField(allow_null=True)
    lines = ReturnLineOutput(many=True)
    refunds = RefundOutput(many=True)
    routing = serializers.SerializerMethodField()

    def get_receipt(self, r) -> dict | None:
        if not r.receipt_id:
            return None
        return {"store": r.receipt.store.code, "receipt_id": r.receipt.receipt_id}

    def get_routing(self, r) -> dict | None:
        decision = getattr(r, "routing", None) if hasattr(r, "routing") else None
        return RoutingOutput(decision).data if decision else None
