"""Input and output shapes of the website's pricing API (quote, vouchers) and the priced breakdown that quotes,
promise options and orders all carry (orders.pricing.services.priced_json). No business rules here."""

from django.conf import settings
from rest_framework import serializers

from inventory.api.serializers import CartLineInput
from loyalty.api.serializers import BalanceOutput

MAX_CODES = 10  # coupon and voucher codes in one cart
CODE_MAX_LENGTH = 40  # Code.code


CODES_HELP = (
    "Coupon or voucher codes (case does not matter). Unknown, expired, used up, another member's or unusable here and "
    "now: 422 code_unknown, code_expired, code_used_up, code_not_yours, code_out_of_scope."
)


def codes_field(help_text: str = CODES_HELP) -> serializers.ListField:
    """The `codes` of a quote, a promise or an order: coupon or voucher codes as the customer typed them."""
    return serializers.ListField(
        child=serializers.CharField(max_length=CODE_MAX_LENGTH), required=False, max_length=MAX_CODES,
        help_text=help_text,
    )


# --- the breakdown --------------------------------------------------------------------------------------------------


class LineDiscountOutput(serializers.Serializer):
    promotion = serializers.CharField(
        help_text="The promotion's code; `<promotion>#<code>` when a coupon or voucher code unlocked it."
    )
    amount_vnd = serializers.IntegerField()


class PricedLineOutput(serializers.Serializer):
    sku = serializers.CharField()
    qty = serializers.IntegerField()
    base_price_vnd = serializers.IntegerField(help_text="The product's own price.")
    unit_price_vnd = serializers.IntegerField(help_text="The price that applies here and now (a price list's or base).")
    price_source = serializers.CharField(help_text='"base", or the code of the price list whose price won.')
    gross_vnd = serializers.IntegerField(help_text="qty × unit price.")
    discount_vnd = serializers.IntegerField(help_text="This line's share of every discount.")
    net_vnd = serializers.IntegerField(help_text="What the line really costs: gross - discount.")
    discounts = LineDiscountOutput(many=True)


class PromotionLineOutput(serializers.Serializer):
    sku = serializers.CharField()
    discount_vnd = serializers.IntegerField()


class AppliedPromotionOutput(serializers.Serializer):
    promotion = serializers.CharField(help_text="The promotion's code.")
    name = serializers.CharField()
    kind = serializers.CharField(help_text="percent_off, amount_off, buy_x_get_y, bundle or spend_threshold.")
    code = serializers.CharField(allow_null=True, help_text="The coupon or voucher code that unlocked it, if any.")
    discount_vnd = serializers.IntegerField()
    rule = serializers.CharField(help_text='Its rule in words, e.g. "10% off" or "buy 2 get 1 free".')
    lines = PromotionLineOutput(many=True)


class CodeOutcomeOutput(serializers.Serializer):
    code = serializers.CharField()
    promotion = serializers.CharField()
    applied = serializers.BooleanField()
    reason = serializers.CharField(
        allow_blank=True,
        help_text="Why not applied: conditions_not_met (e.g. the spend), not_best (another choice of promotions "
        "gives more), budget_exhausted, duplicate (a second code of the same promotion), out_of_scope; empty when "
        "applied.",
    )


class PricedOutput(serializers.Serializer):
    """A priced cart: the same engine prices it for a quote, a promise option, an order and a till."""

    policy_version = serializers.IntegerField(help_text="The version of the price policy it was priced with.")
    lines = PricedLineOutput(many=True)
    promotions = AppliedPromotionOutput(many=True, help_text="The promotions applied, each with its rule in words.")
    codes = CodeOutcomeOutput(many=True, help_text="Each code given: applied or why not.")
    subtotal_vnd = serializers.IntegerField(help_text="The lines at their unit prices.")
    discount_vnd = serializers.IntegerField(help_text="Every promotion and code, over all lines.")
    total_vnd = serializers.IntegerField(help_text="The goods: subtotal - discount.")
    delivery_fee_vnd = serializers.IntegerField()
    delivery_fee_rule = serializers.CharField(allow_null=True, help_text="The fee band's code; null without one.")
    delivery_fee_reason = serializers.CharField(
        help_text='Why this fee: the band ("up to 3 km"), "free over 500000 VND", "free for gold members", or '
        '"pickup" when no delivery is priced (pickup, a quote).'
    )
    grand_total_vnd = serializers.IntegerField(help_text="What the customer pays: total + delivery fee.")


# --- quote ------------------------------------------------------------------------------------------------------------


class QuoteInput(serializers.Serializer):
    lines = CartLineInput(many=True, allow_empty=False, max_length=settings.O2O_MAX_CART_LINES)
    store = serializers.CharField(
        required=False, max_length=32,
        help_text="The store code whose prices and promotions apply; without it, the chain-wide ones only.",
    )
    member_phone = serializers.CharField(
        required=False, max_length=40, help_text="The loyalty member's phone, any common format: gives the tier."
    )
    codes = codes_field()
    at = serializers.DateTimeField(
        required=False, help_text="Price as of this time (a preview); default now. ISO 8601, with an offset."
    )

    def validate_lines(self, lines):
        merged: dict[str, int] = {}
        for line in lines:
            merged[line["sku"]] = merged.get(line["sku"], 0) + line["qty"]
        return merged


QUOTE_REQUEST = {
    "lines": [{"sku": "AO-THUN-M", "qty": 3}, {"sku": "NON-LA", "qty": 1}],
    "store": "HCM-Q1-001",
    "member_phone": "0901234567",
    "codes": ["TET2025"],
}
QUOTE_RESPONSE = {
    "policy_version": 42,
    "lines": [
        {"sku": "AO-THUN-M", "qty": 3, "base_price_vnd": 199000, "unit_price_vnd": 179000, "price_source": "q1-prices",
         "gross_vnd": 537000, "discount_vnd": 214236, "net_vnd": 322764,
         "discounts": [{"promotion": "shirts-3-for-2", "amount_vnd": 179000},
                       {"promotion": "tet-coupon#TET2025", "amount_vnd": 35236}]},
        {"sku": "NON-LA", "qty": 1, "base_price_vnd": 150000, "unit_price_vnd": 150000, "price_source": "base",
         "gross_vnd": 150000, "discount_vnd": 14764, "net_vnd": 135236,
         "discounts": [{"promotion": "tet-coupon#TET2025", "amount_vnd": 14764}]},
    ],
    "promotions": [
        {"promotion": "shirts-3-for-2", "name": "Shirts: 3 for 2", "kind": "buy_x_get_y", "code": None,
         "discount_vnd": 179000, "rule": "buy 2 get 1 free", "lines": [{"sku": "AO-THUN-M", "discount_vnd": 179000}]},
        {"promotion": "tet-coupon", "name": "Tết coupon", "kind": "amount_off", "code": "TET2025",
         "discount_vnd": 50000, "rule": "50000 VND off the cart on a cart of 300000 VND or more",
         "lines": [{"sku": "AO-THUN-M", "discount_vnd": 35236}, {"sku": "NON-LA", "discount_vnd": 14764}]},
    ],
    "codes": [{"code": "TET2025", "promotion": "tet-coupon", "applied": True, "reason": ""}],
    "subtotal_vnd": 687000,
    "discount_vnd": 229000,
    "total_vnd": 458000,
    "delivery_fee_vnd": 0,
    "delivery_fee_rule": None,
    "delivery_fee_reason": "pickup",
    "grand_total_vnd": 458000,
}


# --- vouchers bought with points --------------------------------------------------------------------------------------


class VoucherInput(serializers.Serializer):
    phone = serializers.CharField(max_length=40, help_text="The member's phone, any common format.")
    points = serializers.IntegerField(min_value=1, max_value=10_000_000, help_text="Points to spend on the voucher.")


class VoucherOutput(serializers.Serializer):
    code = serializers.CharField(help_text="Single-use, this member's only: give it at checkout or at any till.")
    value_vnd = serializers.IntegerField(help_text="points × LOYALTY_POINT_VALUE_VND, off the goods.")
    points = serializers.IntegerField(source="points_spent")
    expires_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()


class VoucherBoughtOutput(VoucherOutput):
    balance = BalanceOutput(help_text="The member's points after the purchase.")


class VoucherQuery(serializers.Serializer):
    phone = serializers.CharField(max_length=40, help_text="The member's phone, any common format.")
