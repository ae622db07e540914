"""Input and output shapes of the POS API (I/O only: no business rules here)."""

from datetime import datetime, timedelta

from django.conf import settings
from django.core.validators import RegexValidator
from django.utils import timezone
from rest_framework import serializers

from orders.pos.services import TENDER_TYPES

ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,64}$"
id_validator = RegexValidator(ID_PATTERN, "1–64 characters: letters, digits, '.', '_', ':' or '-'.")
MAX_QTY = 100_000
MAX_VND = 10**12
FUTURE_SLACK = timedelta(minutes=10)


def client_id(help_text: str) -> serializers.CharField:
    return serializers.CharField(max_length=64, validators=[id_validator], help_text=help_text)


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with a UTC offset (a till's local time without one is ambiguous), not in the future (unless
    `allow_future`)."""

    default_error_messages = {
        "naive": "Give a UTC offset, e.g. 2025-06-01T10:15:00+07:00.",
        "future": "This time is in the future.",
    }

    def __init__(self, *args, allow_future: bool = False, **kwargs):
        self.allow_future = allow_future
        super().__init__(*args, **kwargs)

    def to_internal_value(self, value):
        if isinstance(value, str):
            try:
                naive = datetime.fromisoformat(value).tzinfo is None
            except ValueError:
                naive = False  # not a date and time at all: DRF's own "wrong format" message below
            if naive:
                self.fail("naive")
        parsed = super().to_internal_value(value)
        if not self.allow_future and parsed > timezone.now() + FUTURE_SLACK:
            self.fail("future")
        return parsed


# --- sales ------------------------------------------------------------------------------------------------------------


class ReceiptLineInput(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    qty = serializers.IntegerField(min_value=1, max_value=MAX_QTY)
    unit_price_vnd = serializers.IntegerField(min_value=0, max_value=MAX_VND)
    discount_vnd = serializers.IntegerField(min_value=0, max_value=MAX_VND, default=0, help_text="For the whole line")

    def validate(self, attrs):
        if attrs["discount_vnd"] > attrs["qty"] * attrs["unit_price_vnd"]:
            raise serializers.ValidationError({"discount_vnd": "The discount is larger than the line."})
        return attrs


class TenderInput(serializers.Serializer):
    type = serializers.ChoiceField(choices=list(TENDER_TYPES))
    amount_vnd = serializers.IntegerField(min_value=0, max_value=MAX_VND, required=False, help_text="Money tenders")
    points = serializers.IntegerField(min_value=1, max_value=MAX_VND, required=False, help_text="Points tender")

    def validate(self, attrs):
        if attrs["type"] == "points":
            if "points" not in attrs or attrs.get("amount_vnd"):
                raise serializers.ValidationError("A points tender gives `points` (and no amount_vnd).")
        elif "amount_vnd" not in attrs or "points" in attrs:
            raise serializers.ValidationError("A money tender gives `amount_vnd` (and no points).")
        return attrs


def code_field() -> serializers.CharField:
    return serializers.CharField(max_length=40, help_text="A coupon or voucher code as the customer gave it")


MAX_CODES = 10


class AppliedPromotionInput(serializers.Serializer):
    promotion = serializers.CharField(max_length=40, help_text="The promotion's code (the snapshot's promotions[].code)")
    code = serializers.CharField(max_length=40, required=False, allow_blank=True,
                                 help_text="The coupon or voucher code that unlocked it, if any")
    discount_vnd = serializers.IntegerField(min_value=0, max_value=MAX_VND, help_text="What it took off the receipt")


class PriceOverrideInput(serializers.Serializer):
    reason = serializers.CharField(max_length=300, help_text="Why the manager changed the price")
    staff_id = serializers.CharField(max_length=64, help_text="The manager's staff id")


class ReceiptInput(serializers.Serializer):
    receipt_id = client_id("The till's id of the receipt: unique per store, the idempotency key")
    sold_at = AwareDateTimeField(help_text="Time of sale at the till, with a UTC offset")
    lines = ReceiptLineInput(many=True, allow_empty=False, max_length=settings.POS_MAX_LINES_PER_RECEIPT)
    tenders = TenderInput(many=True, allow_empty=False, max_length=20)
    member_phone = serializers.CharField(max_length=25, required=False, allow_null=True, allow_blank=True)
    codes = serializers.ListField(
        child=code_field(), required=False, max_length=MAX_CODES,
        help_text="Coupon and voucher codes the customer gave. A single-use code is consumed by the first receipt "
        "that applies it, whatever the channel; on a later receipt it is a price exception (`code_refused`).",
    )
    promotions = AppliedPromotionInput(
        many=True, required=False, max_length=50,
        help_text="The promotions the till applied, for the record (the server prices the receipt itself).",
    )
    price_override = PriceOverrideInput(
        required=False,
        help_text="A manager's price override: the lines charged otherwise than the policy are queued as `override` "
        "price exceptions with this reason and staff id.",
    )


class SalesSyncInput(serializers.Serializer):
    receipts = ReceiptInput(
        many=True, help_text=f"Up to {settings.POS_MAX_RECEIPTS_PER_BATCH} receipts, in any order, resent freely"
    )


class ReceiptLineResult(serializers.Serializer):
    sku = serializers.CharField()
    qty = serializers.IntegerField()
    shortfall = serializers.IntegerField(help_text="Units sold beyond the ledger (negative availability)")
    late_for_count = serializers.BooleanField(help_text="A count recorded earlier already saw this sale")


class PointsResult(serializers.Serializer):
    member = serializers.CharField()
    earned = serializers.IntegerField()
    redeemed = serializers.IntegerField()
    available = serializers.IntegerField()


class QtyLineOutput(serializers.Serializer):
    sku = serializers.CharField()
    qty = serializers.IntegerField()


class ReceiptResult(serializers.Serializer):
    receipt_id = serializers.CharField()
    sold_at = serializers.DateTimeField()
    total_vnd = serializers.IntegerField()
    policy_total_vnd = serializers.IntegerField(
        required=False, allow_null=True,
        help_text="What the pricing policy in force at the time of sale would have charged for these goods (null: "
        "it could not price them). Absent on receipts recorded before prices were checked.",
    )
    price_exceptions = serializers.IntegerField(
        required=False,
        help_text="Price exceptions the receipt queued for operations (lines charged otherwise than the policy, codes "
        "refused, promotions over budget). The sale stands. Absent on receipts recorded before prices were checked.",
    )
    lines = ReceiptLineResult(many=True)
    needs_count = serializers.BooleanField(help_text="A line sold beyond what the ledger had: the row waits for a count")
    taken_from_online = QtyLineOutput(
        many=True, required=False,
        help_text="Units the sale took from online checkouts and orders at this store (they were re-routed at once, "
        "the websites told). Absent on receipts recorded before this existed.",
    )
    points = PointsResult(allow_null=True)


class ReceiptOutcome(serializers.Serializer):
    receipt_id = serializers.CharField(allow_null=True)
    status = serializers.CharField(help_text="applied | duplicate | rejected")
    result = ReceiptResult(required=False, help_text="applied / duplicate: the first answer")
    reason = serializers.CharField(
        required=False,
        help_text="rejected (invalid as data, never for stock): invalid, unknown_sku, receipt_id_reused, "
        "tender_mismatch, member_required, invalid_phone, insufficient_points",
    )
    message = serializers.CharField(required=False)
    details = serializers.DictField(required=False)


class SyncSummary(serializers.Serializer):
    applied = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    rejected = serializers.IntegerField()


class SalesSyncOutput(serializers.Serializer):
    results = ReceiptOutcome(many=True)
    summary = SyncSummary()


class ReceiptDetailOutput(serializers.Serializer):
    receipt_id = serializers.CharField()
    status = serializers.CharField()
    sold_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    total_vnd = serializers.IntegerField()
    member_phone = serializers.CharField()
    result = ReceiptResult()
    refunds = serializers.ListField(child=serializers.DictField())


class RefundLineInput(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    qty = serializers.IntegerField(min_value=1, max_value=MAX_QTY)
    resellable = serializers.BooleanField(default=True, help_text="False: the units go to quarantine")


class RefundInput(serializers.Serializer):
    refund_id = client_id("The till's id of the refund: unique per store, the idempotency key")
    lines = RefundLineInput(many=True, allow_empty=False, max_length=200)

    def validate_lines(self, lines):
        skus = [line["sku"] for line in lines]
        if len(set(skus)) != len(skus):
            raise serializers.ValidationError("List each SKU once.")
        return lines


class TillRefundOutput(serializers.Serializer):
    receipt_id = serializers.CharField()
    refund_id = serializers.CharField(required=False)
    kind = serializers.CharField(help_text="void | refund")
    amount_vnd = serializers.IntegerField()
    lines = serializers.ListField(child=serializers.DictField())
    points = serializers.DictField(child=serializers.IntegerField(), help_text="{reversed, given_back}")


# --- counts, goods receipts, transfers -------------------------------------------------------------------------------


class CountLineInput(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    counted = serializers.IntegerField(min_value=0, max_value=10**9)
    expected_on_hand = serializers.IntegerField(
        min_value=0, required=False, help_text="The ledger on-hand the till showed; refused (409) if it moved since"
    )


def _unique_skus(lines):
    skus = [line["sku"] for line in lines]
    if len(set(skus)) != len(skus):
        raise serializers.ValidationError("List each SKU once.")
    return lines


class CountInput(serializers.Serializer):
    count_id = client_id("The till's id of the count: unique per store, the idempotency key")
    counted_at = AwareDateTimeField(help_text="When the shelf was counted")
    lines = CountLineInput(many=True, allow_empty=False, max_length=1000)

    def validate_lines(self, lines):
        return _unique_skus(lines)


class CountLineOutput(serializers.Serializer):
    sku = serializers.CharField()
    counted = serializers.IntegerField()
    ledger_as_of = serializers.IntegerField(help_text="Ledger on-hand at counted_at (till sales by time of sale)")
    on_hand_before = serializers.IntegerField()
    adjustment = serializers.IntegerField()
    on_hand_after = serializers.IntegerField()
    taken_from_online = serializers.IntegerField(help_text="Units the count did not find that were reserved for "
                                                 "online checkouts and orders: taken from them (re-routed, told)")
    from_quarantine = serializers.IntegerField(help_text="Units the count did not find taken out of quarantine")
    kept_for_packed = serializers.IntegerField(help_text="Units reserved for packed orders (in their bags, not on "
                                               "the shelf): they stay on hand for them")
    shortfall_before = serializers.IntegerField(help_text="Units sold beyond the ledger before this count")
    shortfall_after = serializers.IntegerField(help_text="Still beyond the ledger after it (sales made after "
                                               "counted_at that the count could not have seen): the row waits "
                                               "for another count while it is above 0")


class CountOutput(serializers.Serializer):
    count_id = serializers.CharField()
    counted_at = serializers.DateTimeField()
    lines = CountLineOutput(many=True)


class QtyLineInput(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    qty = serializers.IntegerField(min_value=1, max_value=10**9)


class GoodsReceiptInput(serializers.Serializer):
    receipt_id = client_id("The delivery note id: unique per store, the idempotency key")
    source = serializers.CharField(max_length=120, required=False, default="", help_text="Supplier or DC")
    lines = QtyLineInput(many=True, allow_empty=False, max_length=1000)

    def validate_lines(self, lines):
        return _unique_skus(lines)


class GoodsReceiptOutput(serializers.Serializer):
    receipt_id = serializers.CharField()
    source = serializers.CharField()
    received_at = serializers.DateTimeField()
    lines = QtyLineInput(many=True)


class DamageReportInput(serializers.Serializer):
    report_id = client_id("The till's id for this report: unique per store, the idempotency key")
    lines = QtyLineInput(many=True, allow_empty=False, max_length=1000)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="",
                                 help_text="What was found, e.g. 'crushed boxes'")

    def validate_lines(self, lines):
        return _unique_skus(lines)


class DamageLineOutput(serializers.Serializer):
    sku = serializers.CharField()
    qty = serializers.IntegerField()
    quarantined = serializers.IntegerField(help_text="Units moved to quarantine (unavailable)")
    taken_from_online = serializers.IntegerField(help_text="Of those, units taken from online reservations: their "
                                                 "orders were re-routed and the websites told")
    shortfall = serializers.IntegerField(help_text="Units the ledger did not have at all: the row waits for a count")


class DamageReportOutput(serializers.Serializer):
    report_id = serializers.CharField()
    reported_at = serializers.DateTimeField()
    note = serializers.CharField()
    lines = DamageLineOutput(many=True)
    needs_count = serializers.BooleanField()


class TransferInput(serializers.Serializer):
    transfer_id = client_id("The sending till's id: unique per store, the idempotency key")
    to_store = serializers.CharField(max_length=32, help_text="Destination store code")
    lines = QtyLineInput(many=True, allow_empty=False, max_length=1000)
    note = serializers.CharField(max_length=300, required=False, default="")

    def validate_lines(self, lines):
        return _unique_skus(lines)


class ReceivedLineInput(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    qty = serializers.IntegerField(min_value=0, max_value=10**9)


class TransferReceiveInput(serializers.Serializer):
    lines = ReceivedLineInput(many=True, allow_empty=True, max_length=1000, help_text="SKUs not listed: 0 arrived")

    def validate_lines(self, lines):
        return _unique_skus(lines)


class TransferLineOutput(serializers.Serializer):
    sku = serializers.CharField()
    shipped_qty = serializers.IntegerField()
    received_qty = serializers.IntegerField(allow_null=True)
    discrepancy = serializers.IntegerField(allow_null=True, help_text="shipped - received")


class TransferOutput(serializers.Serializer):
    id = serializers.IntegerField()
    transfer_id = serializers.CharField()
    from_store = serializers.CharField()
    to_store = serializers.CharField()
    status = serializers.CharField(help_text="in_transit | received")
    shipped_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField(allow_null=True)
    lines = TransferLineOutput(many=True)


# --- pickups and look-ups ----------------------------------------------------------------------------------------------


class PosPickupLineOutput(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    qty = serializers.IntegerField()


class PosPickupOutput(serializers.Serializer):
    code = serializers.CharField()
    order = serializers.CharField()
    customer_name = serializers.CharField()
    customer_phone = serializers.CharField()
    status = serializers.CharField(help_text="The fulfillment's status; only ready_for_pickup can be handed over")
    payment_state = serializers.CharField()
    total_vnd = serializers.IntegerField()
    lines = PosPickupLineOutput(many=True)


class NearbyStockOutput(serializers.Serializer):
    store = serializers.CharField()
    name = serializers.CharField()
    address = serializers.CharField()
    distance_km = serializers.FloatField()
    open_now = serializers.BooleanField()
    available = serializers.IntegerField(help_text="Units that store can sell at its till")


class TillStockOutput(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    on_hand = serializers.IntegerField()
    reserved = serializers.IntegerField()
    safety = serializers.IntegerField()
    unavailable = serializers.IntegerField()
    shortfall = serializers.IntegerField(help_text="Units sold or shipped beyond what the ledger had: a count settles "
                                         "them (needs_count)")
    sellable_at_till = serializers.IntegerField(help_text="on_hand - reserved - unavailable")
    available_online = serializers.IntegerField(help_text="on_hand - reserved - safety - unavailable; 0 while there "
                                                "is a shortfall")
    needs_count = serializers.BooleanField()
    nearby = NearbyStockOutput(many=True)


class MemberBalanceOutput(serializers.Serializer):
    phone = serializers.CharField()
    name = serializers.CharField()
    tier = serializers.CharField()
    available = serializers.IntegerField()
    available_value_vnd = serializers.IntegerField()
    pending = serializers.IntegerField()
    expiring_soon = serializers.IntegerField()
    expiring_soon_until = serializers.DateTimeField()


# --- prices: the price call (online tills) and the policy snapshot (offline tills) ------------------------------------


class PriceLineInput(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    qty = serializers.IntegerField(min_value=1, max_value=MAX_QTY)


class PriceInput(serializers.Serializer):
    lines = PriceLineInput(many=True, allow_empty=False, max_length=settings.POS_MAX_LINES_PER_RECEIPT,
                           help_text="The cart; a SKU on several lines is priced once for their sum")
    member_phone = serializers.CharField(max_length=25, required=False, allow_null=True, allow_blank=True,
                                         help_text="The member's phone: tier promotions, per-member caps, own vouchers")
    codes = serializers.ListField(child=code_field(), required=False, max_length=MAX_CODES)
    at = AwareDateTimeField(required=False, allow_future=True,
                            help_text="Price as at this time (default now), e.g. a sale made while offline")


class SnapshotPriceListOutput(serializers.Serializer):
    code = serializers.CharField()
    priority = serializers.IntegerField()
    channels = serializers.ListField(child=serializers.CharField(), help_text="Empty: every channel")
    stores = serializers.ListField(child=serializers.CharField(), allow_null=True,
                                   help_text="null: every store; else [this store]")
    starts_at = serializers.DateTimeField(allow_null=True)
    ends_at = serializers.DateTimeField(allow_null=True, help_text="Exclusive")
    prices = serializers.DictField(child=serializers.IntegerField(), help_text="SKU → unit price (VND)")


class SnapshotPromotionOutput(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField(help_text="percent_off | amount_off | buy_x_get_y | bundle | spend_threshold")
    target = serializers.CharField(help_text="sku | category | cart")
    skus = serializers.ListField(child=serializers.CharField())
    categories = serializers.ListField(child=serializers.CharField())
    percent = serializers.IntegerField()
    amount_vnd = serializers.IntegerField()
    buy_qty = serializers.IntegerField()
    get_qty = serializers.IntegerField()
    bundle = serializers.ListField(child=serializers.ListField(), help_text='[["SKU", qty], ...]')
    bundle_price_vnd = serializers.IntegerField()
    min_spend_vnd = serializers.IntegerField()
    channels = serializers.ListField(child=serializers.CharField())
    stores = serializers.ListField(child=serializers.CharField(), allow_null=True)
    tiers = serializers.ListField(child=serializers.CharField(), help_text="Empty: everyone")
    starts_at = serializers.DateTimeField(allow_null=True)
    ends_at = serializers.DateTimeField(allow_null=True)
    weekdays = serializers.ListField(child=serializers.IntegerField(), help_text="0 = Monday; empty: every day")
    from_time = serializers.CharField(allow_null=True, help_text='"HH:MM" store time, inclusive')
    until_time = serializers.CharField(allow_null=True, help_text='"HH:MM" store time, exclusive')
    exclusive = serializers.BooleanField()
    priority = serializers.IntegerField()
    requires_code = serializers.BooleanField()
    max_uses = serializers.IntegerField(allow_null=True)
    max_uses_per_member = serializers.IntegerField(allow_null=True)
    max_discount_vnd = serializers.IntegerField(allow_null=True)


class SnapshotPolicyOutput(serializers.Serializer):
    """orders.pricing.engine.policy_to_json of the store's part of the policy."""

    version = serializers.IntegerField()
    base_prices = serializers.DictField(child=serializers.IntegerField(), help_text="SKU → the product's price (VND)")
    categories = serializers.DictField(child=serializers.CharField(), help_text="SKU → category")
    price_lists = SnapshotPriceListOutput(many=True)
    promotions = SnapshotPromotionOutput(many=True)
    fee_rules = serializers.ListField(child=serializers.DictField(), help_text="Empty: tills charge no delivery")


class SnapshotOutput(serializers.Serializer):
    version = serializers.IntegerField(help_text="The policy's version (also the ETag); send it back as `since`")
    changed = serializers.BooleanField(help_text="false: `since` is the current version, keep the snapshot you have "
                                       "(no other field is sent)")
    store = serializers.CharField(required=False)
    channel = serializers.CharField(required=False, help_text="The tills' channel code in price lists and promotions")
    timezone = serializers.CharField(required=False, help_text="The store's time zone: weekdays and times of day of "
                                     "promotions are in it")
    generated_at = serializers.DateTimeField(required=False)
    policy = SnapshotPolicyOutput(required=False)
    signature = serializers.CharField(required=False, help_text="v1=<hex HMAC-SHA256>: see the operation's "
                                      "description")
