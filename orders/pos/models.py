"""POS data: store-bound API keys, till receipts (sales) with their voids and refunds, stock counts, goods receipts
and transfers between stores.

Every row belongs to one store; POS reads and writes filter by the caller's store (request.auth.store). The ids a
till sends (receipt, refund, count and goods-receipt ids, transfer ids) are unique per store and are the idempotency
keys of those writes: each row keeps a hash of the content it was created from and the first answer given.

The tills are a sales channel beside the website, so their records live in orders (the `pos` app). They were
created by the inventory app and keep its table names: pos/migrations/0001 took them over without copying a row.
"""

from django.db import models
from django.db.models import F, Q, Value
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager

from inventory.models import Product, Store

__all__ = [
    "StoreApiKey",
    "TillReceipt",
    "TillReceiptLine",
    "TillRefund",
    "StockCount",
    "StockCountLine",
    "GoodsReceipt",
    "StockTransfer",
    "StockTransferLine",
]


class StoreApiKeyManager(BaseAPIKeyManager):
    def get_usable_keys(self) -> models.QuerySet:
        return super().get_usable_keys().select_related("store")


class StoreApiKey(AbstractAPIKey):
    """An API key of one store's till (several per store, one per till; hashed at rest; revocable)."""

    objects = StoreApiKeyManager()
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="api_keys")

    class Meta(AbstractAPIKey.Meta):
        db_table = "inventory_storeapikey"  # the table it had in the inventory app (migrated in place)
        verbose_name = _("store (POS) API key")
        verbose_name_plural = _("store (POS) API keys")


class TillReceipt(models.Model):
    """A sale at a till, applied once. `receipt_id` is the till's own id (the idempotency key); `content_hash`
    tells a replay (same content) from a reused id (other content)."""

    class Status(models.TextChoices):
        APPLIED = "applied", "Applied"
        VOIDED = "voided", "Voided"

    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="till_receipts")
    receipt_id = models.CharField(max_length=64)
    content_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.APPLIED)
    sold_at = models.DateTimeField(help_text="Time of sale at the till (counts use it to place the sale in time).")
    received_at = models.DateTimeField(default=timezone.now)
    till = models.CharField(max_length=150, blank=True, help_text="The name of the key that sent it.")
    total_vnd = models.BigIntegerField(default=0)
    money_vnd = models.BigIntegerField(default=0, help_text="Paid with cash, card and e-wallets.")
    points_redeemed = models.BigIntegerField(default=0)
    member_phone = models.CharField(max_length=20, blank=True)
    earn_posting_id = models.BigIntegerField(null=True, blank=True)
    redeem_posting_id = models.BigIntegerField(null=True, blank=True)
    tenders = models.JSONField(default=list)
    result = models.JSONField(default=dict, help_text="The first answer, given again to replays.")
    # What the till said it applied (codes, promotions, a manager's override), kept as sent for the record; the sync
    # prices the receipt against the policy and queues what differs (orders.pricing.tills). The database default
    # keeps the previous release's processes (whose COPY does not name this column) inserting during a deploy.
    pricing = models.JSONField(
        default=dict, db_default=Value({}, output_field=models.JSONField()), blank=True,
        help_text="{codes, promotions: [{promotion, code, discount_vnd}], override: {reason, staff_id}} as the till "
        "sent them; empty when it sent none.",
    )

    class Meta:
        verbose_name = _("till receipt")
        verbose_name_plural = _("till receipts")
        db_table = "inventory_tillreceipt"  # the table it had in the inventory app (migrated in place)
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["store", "receipt_id"], name="till_receipt_unique_per_store"),
            models.CheckConstraint(condition=Q(total_vnd__gte=0), name="till_receipt_total_nonnegative"),
            models.CheckConstraint(condition=Q(money_vnd__gte=0), name="till_receipt_money_nonnegative"),
            models.CheckConstraint(condition=Q(points_redeemed__gte=0), name="till_receipt_points_nonnegative"),
        ]
        indexes = [models.Index(fields=["store", "sold_at"], name="till_receipt_store_sold_at")]

    def __str__(self) -> str:
        return f"{self.store_id}/{self.receipt_id}"

    @property
    def reference(self) -> str:
        return f"pos:{self.store_id}:{self.receipt_id}"


class TillReceiptLine(models.Model):
    """One SKU of a receipt. `taken` is what the sale took off the ledger's on-hand; `shortfall` = qty - taken are
    units the till sold beyond what the ledger could give (negative availability, flagged for a count)."""

    receipt = models.ForeignKey(TillReceipt, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    qty = models.PositiveIntegerField()
    unit_price_vnd = models.PositiveBigIntegerField()
    discount_vnd = models.PositiveBigIntegerField(default=0)
    taken = models.PositiveIntegerField(default=0)
    shortfall = models.PositiveIntegerField(default=0)
    refunded_qty = models.PositiveIntegerField(default=0)
    late_for_count = models.ForeignKey(
        "StockCount", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="A count that already saw this sale (it arrived after the count, with an earlier time of sale).",
    )

    class Meta:
        db_table = "inventory_tillreceiptline"  # the table it had in the inventory app (migrated in place)
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(qty__gt=0), name="till_line_qty_positive"),
            models.CheckConstraint(condition=Q(taken__lte=F("qty")), name="till_line_taken_within_qty"),
            models.CheckConstraint(condition=Q(refunded_qty__lte=F("qty")), name="till_line_refunded_within_qty"),
        ]

    def __str__(self) -> str:
        return f"{self.qty} × {self.product_id}"

    @property
    def net_vnd(self) -> int:
        return self.qty * self.unit_price_vnd - self.discount_vnd


class TillRefund(models.Model):
    """A void (the whole receipt, entered in error) or a refund (goods brought back) of a receipt of the same store."""

    class Kind(models.TextChoices):
        VOID = "void", "Void"
        REFUND = "refund", "Refund"

    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="till_refunds")
    receipt = models.ForeignKey(TillReceipt, on_delete=models.PROTECT, related_name="refunds")
    refund_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    content_hash = models.CharField(max_length=64)
    lines = models.JSONField(default=list, help_text="[{sku, qty, resellable}]")
    amount_vnd = models.BigIntegerField(default=0, help_text="The value of the goods voided or refunded.")
    created_at = models.DateTimeField(default=timezone.now)
    result = models.JSONField(default=dict)

    class Meta:
        db_table = "inventory_tillrefund"  # the table it had in the inventory app (migrated in place)
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["store", "refund_id"], name="till_refund_unique_per_store")]

    def __str__(self) -> str:
        return f"{self.kind} {self.refund_id}"


class StockCount(models.Model):
    """A cycle count: counted quantities of some SKUs at `counted_at`."""

    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="stock_counts")
    count_id = models.CharField(max_length=64)
    content_hash = models.CharField(max_length=64)
    counted_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    result = models.JSONField(default=dict)

    class Meta:
        verbose_name = _("stock count")
        verbose_name_plural = _("stock counts")
        db_table = "inventory_stockcount"  # the table it had in the inventory app (migrated in place)
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["store", "count_id"], name="stock_count_unique_per_store")]

    def __str__(self) -> str:
        return f"{self.store_id}/{self.count_id}"


class StockCountLine(models.Model):
    count = models.ForeignKey(StockCount, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    counted = models.PositiveIntegerField()
    ledger_as_of = models.BigIntegerField(help_text="Ledger on-hand as of counted_at (till sales by time of sale).")
    adjustment = models.BigIntegerField(help_text="counted - ledger_as_of, applied as a count movement.")

    class Meta:
        db_table = "inventory_stockcountline"  # the table it had in the inventory app (migrated in place)
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["count", "product"], name="stock_count_line_unique_product")]

    def __str__(self) -> str:
        return f"{self.product_id}: {self.counted}"


class GoodsReceipt(models.Model):
    """A delivery received at the store (distribution centre or supplier)."""

    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="goods_receipts")
    receipt_id = models.CharField(max_length=64)
    content_hash = models.CharField(max_length=64)
    source = models.CharField(max_length=120, blank=True, help_text="Supplier or distribution centre.")
    received_at = models.DateTimeField(default=timezone.now)
    lines = models.JSONField(default=list, help_text="[{sku, qty}]")
    result = models.JSONField(default=dict)

    class Meta:
        verbose_name = _("goods receipt")
        verbose_name_plural = _("goods receipts")
        db_table = "inventory_goodsreceipt"  # the table it had in the inventory app (migrated in place)
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["store", "receipt_id"], name="goods_receipt_unique_per_store")]

    def __str__(self) -> str:
        return f"{self.store_id}/{self.receipt_id}"


class DamageReport(models.Model):
    """Goods a store found damaged on its shelf, booked at the till: the units go to quarantine (unavailable), taken
    from reserved units when the shelf had no others (inventory.services.ShopFloor), and the online orders that held
    them are re-routed at once (orders.services.store_events)."""

    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="damage_reports")
    report_id = models.CharField(max_length=64)
    content_hash = models.CharField(max_length=64)
    note = models.CharField(max_length=300, blank=True)
    reported_at = models.DateTimeField(default=timezone.now)
    lines = models.JSONField(default=list, help_text="[{sku, qty}]")
    result = models.JSONField(default=dict)

    class Meta:
        verbose_name = _("damage report")
        verbose_name_plural = _("damage reports")
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["store", "report_id"], name="damage_report_unique_per_store")]

    def __str__(self) -> str:
        return f"{self.store_id}/{self.report_id}"


class StockTransfer(models.Model):
    """Goods shipped from one store to another. Shipped units are off the sender's on-hand and in transit until the
    receiver books what arrived; a difference is recorded per line as a discrepancy."""

    class Status(models.TextChoices):
        IN_TRANSIT = "in_transit", "In transit"
        RECEIVED = "received", "Received"

    from_store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="transfers_out")
    to_store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="transfers_in")
    transfer_id = models.CharField(max_length=64, help_text="The sending till's id, unique per sending store.")
    content_hash = models.CharField(max_length=64)
    receive_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_TRANSIT)
    shipped_at = models.DateTimeField(default=timezone.now)
    received_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = _("stock transfer")
        verbose_name_plural = _("stock transfers")
        db_table = "inventory_stocktransfer"  # the table it had in the inventory app (migrated in place)
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["from_store", "transfer_id"], name="stock_transfer_unique_per_sender"),
            models.CheckConstraint(condition=~Q(from_store=F("to_store")), name="stock_transfer_between_stores"),
        ]
        indexes = [models.Index(fields=["to_store", "status"], name="stock_transfer_inbound")]

    def __str__(self) -> str:
        return f"{self.from_store_id}->{self.to_store_id} {self.transfer_id}"

    @property
    def reference(self) -> str:
        return f"transfer:{self.pk}"


class StockTransferLine(models.Model):
    transfer = models.ForeignKey(StockTransfer, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    shipped_qty = models.PositiveIntegerField()
    received_qty = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        db_table = "inventory_stocktransferline"  # the table it had in the inventory app (migrated in place)
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(shipped_qty__gt=0), name="stock_transfer_line_qty_positive"),
            models.UniqueConstraint(fields=["transfer", "product"], name="stock_transfer_line_unique_product"),
        ]

    def __str__(self) -> str:
        return f"{self.shipped_qty} × {self.product_id}"

    @property
    def discrepancy(self) -> int | None:
        """Shipped minus received (positive: units lost in transit; negative: more arrived than was shipped)."""
        return None if self.received_qty is None else self.shipped_qty - self.received_qty
