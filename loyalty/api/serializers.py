"""Input and output shapes of the loyalty API. No business rules here: views call loyalty.services."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from loyalty import conf
from loyalty.exceptions import InvalidAmount
from loyalty.models import PostingKind, RedemptionHold


@extend_schema_field({"type": "string", "enum": list(RedemptionHold.Status.values)}, component_name="LoyaltyRedemptionStatus")
class HoldStatusField(serializers.CharField):
    """The hold's status, documented inline (no shared enum component that could collide with other apps')."""


@extend_schema_field({"type": "string", "enum": list(PostingKind.values)}, component_name="LoyaltyPostingKind")
class PostingKindField(serializers.CharField):
    """earn, vest, hold, capture, void, redeem, reverse, refund, expire, adjust, merge."""


class PhoneQuery(serializers.Serializer):
    phone = serializers.CharField(max_length=40, help_text="Any common format: 0901234567, +84 90 123 4567, 84901234567.")


class SignUpInput(serializers.Serializer):
    phone = serializers.CharField(max_length=40)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)


class BalanceOutput(serializers.Serializer):
    available = serializers.IntegerField(help_text="Points the member can spend now.")
    available_value_vnd = serializers.IntegerField(help_text="What the available points pay, in VND.")
    pending = serializers.IntegerField(help_text="Earned online; vest when the return window closes.")
    held = serializers.IntegerField(help_text="Set aside by open checkout holds.")
    shortfall = serializers.IntegerField(help_text="Points owed after a return; settled from future earnings.")
    expiring_soon = serializers.IntegerField(help_text="Available points that expire before `expiring_soon_until`.")
    expiring_soon_until = serializers.DateTimeField()
    point_value_vnd = serializers.SerializerMethodField()

    def get_point_value_vnd(self, obj) -> int:
        return conf.point_value_vnd()


class TierOutput(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    multiplier = serializers.CharField(help_text="Earn multiplier, a decimal string.")
    spend_12m_vnd = serializers.IntegerField(help_text="Rolling spend as of the last recompute.")
    computed_at = serializers.DateTimeField(allow_null=True)
    next_tier = serializers.CharField(allow_null=True)
    next_tier_name = serializers.CharField(allow_null=True)
    next_tier_min_spend_vnd = serializers.IntegerField(allow_null=True)
    spend_to_next_tier_vnd = serializers.IntegerField()


class MemberOutput(serializers.Serializer):
    phone = serializers.CharField(help_text="E.164.")
    name = serializers.CharField()
    email = serializers.CharField()
    created_at = serializers.DateTimeField()
    tier = TierOutput()
    balance = BalanceOutput()


class PostingOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = PostingKindField()
    created_at = serializers.DateTimeField()
    points = serializers.IntegerField()
    amount_vnd = serializers.IntegerField()
    change_available = serializers.IntegerField(help_text="Net change to the member's available points.")
    change_pending = serializers.IntegerField()
    change_held = serializers.IntegerField()
    channel = serializers.CharField()
    store = serializers.CharField()
    reference = serializers.CharField()
    reason = serializers.CharField()


class RedemptionInput(serializers.Serializer):
    phone = serializers.CharField(max_length=40)
    points = serializers.IntegerField(help_text="Points to hold; each pays LOYALTY_POINT_VALUE_VND.")
    reference = serializers.CharField(max_length=120, required=False, allow_blank=True, help_text="Cart or order.")
    ttl_seconds = serializers.IntegerField(required=False, min_value=1, help_text="Default LOYALTY_HOLD_TTL_SECONDS.")

    def validate_points(self, value: int) -> int:
        if value <= 0:
            raise InvalidAmount(details={"points": value})
        return value

    def validate_ttl_seconds(self, value: int) -> int:
        return min(value, int(conf.max_hold_ttl().total_seconds()))


class CaptureInput(serializers.Serializer):
    reference = serializers.CharField(max_length=120, required=False, allow_blank=True, help_text="The placed order.")


class VoidInput(serializers.Serializer):
    reason = serializers.CharField(max_length=32, required=False, default="cancelled")


class RedemptionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    phone = serializers.CharField(source="member.phone")
    points = serializers.IntegerField()
    value_vnd = serializers.SerializerMethodField()
    status = HoldStatusField()
    expires_at = serializers.DateTimeField()
    reference = serializers.CharField()
    created_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)

    def get_value_vnd(self, obj: RedemptionHold) -> int:
        return obj.points * conf.point_value_vnd()
