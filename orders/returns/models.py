"""Returns of anything bought in any channel, received at any store (or collected by courier), and what they paid
back.

A return points at one original purchase: an online order or a till receipt of any store. Quantities can never
exceed what was bought across several partial returns, and the database enforces it on a counter per original line,
changed only under that purchase's row lock:
    * online orders: `ReturnedOrderLine.returned_qty <= handed_over_qty` (units delivered or collected);
    * till receipts: `TillReceiptLine.refunded_qty <= qty` (the POS's own counter, shared with refunds at the till,
      so both paths together never exceed the sale).
Every write goes through orders.returns.services; stock through inventory.services, points through
loyalty.services.
"""

from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from inventory.models import Product, Store
from o2o.models import SalesChannel
from orders.models import Order, OrderLine
from orders.pos.models import TillReceipt, TillReceiptLine


class ReturnStatus(models.TextChoices):
    OPENED = "opened", "Opened (awaiting the goods)"
    REFUNDED = "refunded", "Received and refunded"
    CANCELLED = "cancelled", "Cancelled"


class Condition(models.TextChoices):
    RESELLABLE = "resellable", "Resellable"
    DAMAGED = "damaged", "Damaged"
    MISSING_PARTS = "missing_parts", "Missing parts"


class Disposition(models.TextChoices):
    """Where the units of a line ended up at the receiving store."""

    PENDING = "pending", "Not received yet"
    ON_SALE = "on_sale", "Back on sale"
    QUARANTINED = "quarantined", "Quarantined (unavailable), awaiting inspection"
    WRITTEN_OFF = "written_off", "Written off after inspection"
    RELEASED = "released", "Back on sale after inspection"


class Return(models.Model):
    number = models.CharField(max_length=20, unique=True, help_text="Public number, e.g. RT-7F3A9C21.")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.PROTECT, related_name="returns")
    receipt = models.ForeignKey(TillReceipt, null=True, blank=True, on_delete=models.PROTECT, related_name="returns")
    channel = models.ForeignKey(
        SalesChannel, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The sales channel whose order this is (it sees the return and gets its events).",
    )
    opened_via = models.CharField(max_length=16, choices=[("website", "Website (courier collection)"), ("till", "Till")])
    receiving_store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="returns_received")
    status = models.CharField(max_length=16, choices=ReturnStatus.choices, default=ReturnStatus.OPENED, db_index=True)
    reason = models.CharField(max_length=300, blank=True)
    collection_lat = models.FloatField(null=True, blank=True)
    collection_lon = models.FloatField(null=True, blank=True)
    collection_address = models.CharField(max_length=300, blank=True)
    refund_vnd = models.BigIntegerField(default=0, help_text="Value refunded: money plus points at their value.")
    refund_money_vnd = models.BigIntegerField(default=0)
    points_given_back = models.BigIntegerField(default=0, help_text="Points spent on the goods, given back.")
    points_reversed = models.BigIntegerField(default=0, help_text="Points earned on the goods, taken back.")
    actor = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    received_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("return")
        verbose_name_plural = _("returns")
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(order__isnull=False, receipt__isnull=True) | Q(order__isnull=True, receipt__isnull=False),
                name="return_one_purchase",
            ),
            models.CheckConstraint(condition=Q(status__in=ReturnStatus.values), name="return_status_valid"),
            models.CheckConstraint(
                condition=Q(refund_vnd__gte=0, refund_money_vnd__gte=0, points_given_back__gte=0, points_reversed__gte=0),
                name="return_amounts_nonnegative",
            ),
            models.CheckConstraint(condition=Q(refund_money_vnd__lte=F("refund_vnd")), name="return_money_within_refund"),
        ]
        indexes = [models.Index(fields=["receiving_store", "-created_at"], name="return_store_created_idx")]

    def __str__(self) -> str:
        return self.number

    @property
    def aggregate(self) -> str:
        """The outbox aggregate of the original purchase (contract with the website)."""
        if self.order_id:
            return f"order:{self.order.number}"
        return f"receipt:{self.receipt.store.code}:{self.receipt.receipt_id}"


class ReturnLine(models.Model):
    ret = models.ForeignKey(Return, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    qty = models.PositiveIntegerField()
    condition = models.CharField(max_length=16, choices=Condition.choices)
    order_line = models.ForeignKey(OrderLine, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    refund_vnd = models.BigIntegerField(default=0, help_text="What was paid for these units after discounts.")
    disposition = models.CharField(max_length=16, choices=Disposition.choices, default=Disposition.PENDING)
    disposition_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("return line")
        verbose_name_plural = _("return lines")
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(qty__gt=0), name="return_line_qty_positive"),
            models.CheckConstraint(condition=Q(refund_vnd__gte=0), name="return_line_refund_nonnegative"),
            models.CheckConstraint(condition=Q(condition__in=Condition.values), name="return_line_condition_valid"),
            models.UniqueConstraint(fields=["ret", "product", "condition"], name="return_line_unique_condition"),
        ]

    def __str__(self) -> str:
        return f"{self.qty} × {self.product_id} ({self.condition})"


class ReturnedTillLine(models.Model):
    """How many units of one till receipt line this return took (the count itself is TillReceiptLine.refunded_qty)."""

    return_line = models.ForeignKey(ReturnLine, on_delete=models.CASCADE, related_name="till_lines")
    till_line = models.ForeignKey(TillReceiptLine, on_delete=models.PROTECT, related_name="+")
    qty = models.PositiveIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(qty__gt=0), name="returned_till_line_qty_positive")]

    def __str__(self) -> str:
        return f"{self.qty} of till line {self.till_line_id}"


class ReturnedOrderLine(models.Model):
    """Units of one order line handed to the customer and returned so far. Changed only under the order's row lock;
    the constraint makes returning more than was handed over impossible whatever the code above it does."""

    order_line = models.OneToOneField(OrderLine, on_delete=models.PROTECT, related_name="returned")
    handed_over_qty = models.PositiveIntegerField(default=0)
    returned_qty = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(returned_qty__lte=F("handed_over_qty")), name="returned_order_line_within_handed_over"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_line_id}: {self.returned_qty}/{self.handed_over_qty}"


class Refund(models.Model):
    """Money (or points) owed back on one original tender. Recorded here; paying it out is the payment provider's or
    the till's job."""

    ret = models.ForeignKey(Return, on_delete=models.CASCADE, related_name="refunds")
    tender = models.CharField(max_length=32, help_text="cash, card, ewallet, online, cod, points")
    amount_vnd = models.BigIntegerField(help_text="For points: their value.")
    points = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_vnd__gte=0, points__gte=0), name="refund_nonnegative"),
            models.UniqueConstraint(fields=["ret", "tender"], name="refund_one_per_tender"),
        ]

    def __str__(self) -> str:
        return f"{self.tender} {self.amount_vnd}"


class ReturnRoutingDecision(models.Model):
    """Why a collected return goes to its receiving store: the problem, the plan, the candidates and the reason."""

    ret = models.OneToOneField(Return, on_delete=models.CASCADE, related_name="routing")
    plan_status = models.CharField(max_length=16, blank=True)
    problem = models.JSONField()
    plan = models.JSONField()
    candidates = models.JSONField(default=list, help_text="[{store, distance_km, shortage, fills, score, chosen, note}]")
    reason = models.TextField(blank=True)
    solve_ms = models.FloatField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"routing of {self.ret_id}"
