"""Input and output shapes of head office's pricing-policy API (orders.pricing.api.policy_views).

The serializers refuse what a column cannot hold (a negative amount, a count past its integer type, a list of the
wrong shape): 400 `invalid`, per field. What the business forbids (dates reversed, a percent over 100, a discount
above the price, a bundle dearer than its parts, unknown channels, SKUs or tiers) is the services' to refuse
(orders.pricing.policy, services.check_promotion): 422 `invalid_promotion` / `invalid_price_list`, per field. No
business rules here."""

import re

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orders.pricing import engine
from orders.pricing.models import PriceList, Promotion, StoreGroup
from orders.pricing.policy import MAX_ROWS

MAX_VND = 10**15  # far above any price, far below a bigint
MAX_INT = 2**31 - 1  # an integer column
MAX_SMALL = 2**15 - 1  # a small integer column
CODE_LIST_MAX = 1000  # SKUs, categories, channels or tiers named by one promotion


class CodeListField(serializers.ListField):
    """A JSON list of codes (SKUs, categories, channels, tiers): each trimmed, each once, in the order given."""

    def __init__(self, **kwargs):
        kwargs.setdefault("child", serializers.CharField(max_length=64))
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", CODE_LIST_MAX)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        return list(dict.fromkeys(super().to_internal_value(data)))


@extend_schema_field({
    "type": "array", "minItems": 2, "maxItems": 2, "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    "example": ["AO-THUN-M", 1],
})
class BundleItemField(serializers.Field):
    """One part of a bundle: ["SKU", quantity]."""

    default_error_messages = {"invalid": 'Each part is a ["SKU", quantity] pair, e.g. ["AO-THUN-M", 1].'}

    def to_internal_value(self, data):
        if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], str) and data[0].strip()
                and isinstance(data[1], int) and not isinstance(data[1], bool) and abs(data[1]) <= MAX_SMALL):
            self.fail("invalid")
        return [data[0].strip(), data[1]]

    def to_representation(self, value):
        return [str(value[0]), int(value[1])]


def _money(help_text: str, **kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, max_value=MAX_VND, required=False, help_text=help_text, **kwargs)


def _count(help_text: str, *, maximum: int = MAX_INT, **kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, max_value=maximum, required=False, help_text=help_text, **kwargs)


class _CodeKeyed(serializers.ModelSerializer):
    """The code is the key (in the URL of a change): required to create, never changed."""

    code = serializers.SlugField(max_length=40, required=False, help_text="Unique; letters, digits, - and _.")
    store_group = serializers.SlugRelatedField(
        slug_field="code", queryset=StoreGroup.objects.all(), allow_null=True, required=False,
        help_text="A store group's code (a region, city or format); null for every store.",
    )
    channels = CodeListField(
        help_text='Sales channel codes, "store" for the tills; empty for every channel.'
    )
    starts_at = serializers.DateTimeField(allow_null=True, required=False, help_text="ISO 8601; null: no start.")
    ends_at = serializers.DateTimeField(allow_null=True, required=False,
                                        help_text="Exclusive; after starts_at. ISO 8601; null: no end.")
    priority = serializers.IntegerField(min_value=-MAX_INT - 1, max_value=MAX_INT, required=False)
    updated_at = serializers.DateTimeField(read_only=True)

    def validate(self, attrs):
        if self.instance is None and not attrs.get("code"):
            raise serializers.ValidationError({"code": ["This field is required."]})
        if self.instance is not None and attrs.get("code", self.instance.code) != self.instance.code:
            raise serializers.ValidationError({"code": ["The code cannot change: create another and delete this one."]})
        return attrs


class PromotionSerializer(_CodeKeyed):
    """A promotion, as posted and as answered. See orders/pricing/README.md for each kind and how they combine."""

    name = serializers.CharField(max_length=160)
    campaign = serializers.CharField(max_length=80, allow_blank=True, required=False)
    kind = serializers.ChoiceField(choices=list(engine.Kind.ALL))
    target = serializers.ChoiceField(choices=list(engine.Target.ALL), required=False,
                                     help_text="What it takes from: sku, category or cart (default).")
    skus = CodeListField(help_text="The SKUs of a `sku` target.")
    categories = CodeListField(help_text="The product categories of a `category` target.")
    percent = _count("Percent off (0 to 100); for buy X get Y, off the Y units (100 = free).", maximum=MAX_SMALL)
    amount_vnd = _money("Off each unit (SKU or category target) or once off the cart.")
    buy_qty = _count("Buy X.", maximum=MAX_SMALL)
    get_qty = _count("Get Y.", maximum=MAX_SMALL)
    bundle = serializers.ListField(
        child=BundleItemField(), required=False, max_length=CODE_LIST_MAX,
        help_text='A bundle\'s parts: [["SKU-1", 1], ["SKU-2", 2]], each SKU once.',
    )
    bundle_price_vnd = _money("The bundle's price, below its parts'.")
    min_spend_vnd = _money("The cart's spend it needs (cart promotions and spend thresholds).")
    tiers = CodeListField(help_text="Member tier codes; empty for everyone, members or not.")
    weekdays = serializers.ListField(
        child=serializers.IntegerField(), required=False, max_length=7,
        help_text="0 = Monday … 6 = Sunday, the store's local date; empty for every day.",
    )
    from_time = serializers.TimeField(allow_null=True, required=False, help_text='"HH:MM[:SS]", store time.')
    until_time = serializers.TimeField(allow_null=True, required=False, help_text='"HH:MM[:SS]", store time.')
    max_uses = _count("Budget: uses in all; null for no cap.", allow_null=True)
    max_uses_per_member = _count("Budget: uses per member; null for no cap.", allow_null=True)
    max_discount_vnd = _money("Budget: discount money in all; null for no cap.", allow_null=True)
    uses = serializers.IntegerField(read_only=True, help_text="Uses so far (orders and receipts).")
    discount_given_vnd = serializers.IntegerField(read_only=True, help_text="Discount given so far.")

    class Meta:
        model = Promotion
        fields = (
            "code", "name", "campaign", "is_active", "kind", "target", "skus", "categories", "percent", "amount_vnd",
            "buy_qty", "get_qty", "bundle", "bundle_price_vnd", "min_spend_vnd", "channels", "store_group", "tiers",
            "starts_at", "ends_at", "weekdays", "from_time", "until_time", "priority", "exclusive", "requires_code",
            "max_uses", "max_uses_per_member", "max_discount_vnd", "uses", "discount_given_vnd", "updated_at",
        )

    def validate_weekdays(self, days: list[int]) -> list[int]:
        return list(dict.fromkeys(days))


class PriceListSerializer(_CodeKeyed):
    """A price list's scope and period; its prices are its rows (…/rows/)."""

    name = serializers.CharField(max_length=120)
    rows = serializers.IntegerField(source="n_rows", read_only=True, help_text="How many SKUs it prices.")

    class Meta:
        model = PriceList
        fields = ("code", "name", "is_active", "priority", "channels", "store_group", "starts_at", "ends_at",
                  "updated_at", "rows")


# --- a price list's rows ----------------------------------------------------------------------------------------------


class PriceRowSerializer(serializers.Serializer):
    """One row: documentation of the items of PriceRowsField, and the answer of GET …/rows/."""

    sku = serializers.CharField(max_length=64)
    price_vnd = serializers.IntegerField(min_value=0, max_value=MAX_VND)


@extend_schema_field(PriceRowSerializer(many=True))
class PriceRowsField(serializers.Field):
    """[{sku, price_vnd}, …] read in one pass into {sku: price_vnd} (a nested serializer per row costs seconds at
    20,000 rows). Errors name the row: {"rows": {"12": "…"}}, at most 50 of them."""

    MAX_ERRORS = 50

    def to_internal_value(self, data) -> dict[str, int]:
        if not isinstance(data, list):
            raise serializers.ValidationError("A list of {sku, price_vnd}.")
        if len(data) > MAX_ROWS:
            raise serializers.ValidationError(f"At most {MAX_ROWS} rows at a time (split the list).")
        prices: dict[str, int] = {}
        errors: dict[str, str] = {}
        for i, row in enumerate(data):
            problem = self._problem(row, prices)
            if problem:
                errors[str(i)] = problem
                if len(errors) >= self.MAX_ERRORS:
                    break
            else:
                prices[row["sku"].strip()] = row["price_vnd"]
        if errors:
            raise serializers.ValidationError(errors)
        return prices

    @staticmethod
    def _problem(row, seen: dict[str, int]) -> str | None:
        if not isinstance(row, dict) or set(row) - {"sku", "price_vnd"}:
            return "A row is {\"sku\": …, \"price_vnd\": …}."
        sku, price = row.get("sku"), row.get("price_vnd")
        if not isinstance(sku, str) or not sku.strip() or len(sku.strip()) > 64:
            return "sku: a SKU of 1 to 64 characters."
        if isinstance(price, bool) or not isinstance(price, int):
            return "price_vnd: a whole number of VND."
        if price < 0:
            return "price_vnd: a price cannot be negative."
        if price > MAX_VND:
            return f"price_vnd: at most {MAX_VND}."
        if sku.strip() in seen:
            return f"sku: {sku.strip()} is given twice."
        return None


class PriceRowsInput(serializers.Serializer):
    rows = PriceRowsField(help_text=f"Up to {MAX_ROWS} rows; each SKU once.")
    replace = serializers.BooleanField(
        required=False, default=False,
        help_text="true: the list holds exactly these rows afterwards (the rows of SKUs not given are deleted).",
    )


class PriceRowsOutput(serializers.Serializer):
    price_list = serializers.CharField()
    created = serializers.IntegerField(help_text="Rows added.")
    updated = serializers.IntegerField(help_text="Rows whose price changed.")
    unchanged = serializers.IntegerField(help_text="Rows given at the price they had.")
    deleted = serializers.IntegerField(help_text="Rows deleted (replace: true).")
    rows = serializers.IntegerField(help_text="The list's rows afterwards.")
    version = serializers.IntegerField(help_text="The policy's version afterwards (it moves only if a row changed).")


# --- codes ------------------------------------------------------------------------------------------------------------


class GenerateCodesInput(serializers.Serializer):
    count = serializers.IntegerField(min_value=1, max_value=100_000, help_text="How many codes.")
    prefix = serializers.CharField(
        max_length=12, required=False, allow_blank=True, default="",
        help_text="Put before the random part, e.g. TET25-: letters, digits, - and _ (made upper case).",
    )
    max_uses = serializers.IntegerField(
        min_value=1, max_value=MAX_INT, allow_null=True, required=False, default=1,
        help_text="Uses allowed per code: 1 (default) for single-use; null for unlimited.",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None,
                                           help_text="ISO 8601; null: never.")
    campaign = serializers.CharField(max_length=80, required=False, allow_blank=True, default="",
                                     help_text="Empty: the promotion's own campaign.")

    def validate_prefix(self, prefix: str) -> str:
        prefix = prefix.strip().upper()
        if not re.fullmatch(r"[A-Z0-9_-]*", prefix):
            raise serializers.ValidationError("Letters, digits, - and _ only.")
        return prefix


class GeneratedCodesOutput(serializers.Serializer):
    promotion = serializers.CharField()
    campaign = serializers.CharField(allow_blank=True)
    max_uses = serializers.IntegerField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    count = serializers.IntegerField()
    codes = serializers.ListField(child=serializers.CharField(), help_text="The new codes, in alphabetical order.")


class PolicyVersionOutput(serializers.Serializer):
    version = serializers.IntegerField(help_text="Raised by every change to the policy; 0 before the first.")
    changed_at = serializers.DateTimeField(allow_null=True)


# --- examples ---------------------------------------------------------------------------------------------------------

PROMOTION_EXAMPLE = {
    "code": "shirts-3-for-2", "name": "Shirts: 3 for 2", "campaign": "tet-2025", "is_active": True,
    "kind": "buy_x_get_y", "target": "sku", "skus": ["AO-THUN-M", "AO-THUN-L"], "categories": [], "percent": 100,
    "amount_vnd": 0, "buy_qty": 2, "get_qty": 1, "bundle": [], "bundle_price_vnd": 0, "min_spend_vnd": 0,
    "channels": ["website", "store"], "store_group": None, "tiers": [], "starts_at": "2025-01-20T00:00:00+07:00",
    "ends_at": "2025-02-10T00:00:00+07:00", "weekdays": [], "from_time": None, "until_time": None, "priority": 10,
    "exclusive": False, "requires_code": False, "max_uses": 5000, "max_uses_per_member": 2, "max_discount_vnd": None,
}
PRICE_LIST_EXAMPLE = {
    "code": "hanoi-prices", "name": "Hà Nội prices", "is_active": True, "priority": 0, "channels": [],
    "store_group": "hanoi", "starts_at": None, "ends_at": None,
}
ROWS_EXAMPLE = {"rows": [{"sku": "AO-THUN-M", "price_vnd": 189000}, {"sku": "NON-LA", "price_vnd": 140000}],
                "replace": False}
