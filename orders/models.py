"""Orders, their fulfillments (one pick list per serving store), pickup codes, routing decisions and checkout promises.

Every write goes through orders.services; stock moves only through inventory.services (reservation reference
`fulfillment:<id>`). The database refuses impossible rows: non-positive quantities, two live pickups with the same
code, two fulfillments of one order at one store in the same routing round, unknown states.
"""

import uuid

from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from inventory.models import Product, Store
from o2o.models import SalesChannel


class Method(models.TextChoices):
    DELIVERY = "delivery", _("Delivery")
    PICKUP = "pickup", _("Pickup in store")


class PaymentState(models.TextChoices):
    PENDING = "pending", _("Pending")
    AUTHORIZED = "authorized", _("Authorized")
    PAID = "paid", _("Paid")
    COD = "cod", _("Cash on delivery / at pickup")


class OrderStatus(models.TextChoices):
    OPEN = "open", _("Open")
    COMPLETED = "completed", _("Completed")
    CANCELLED = "cancelled", _("Cancelled")
    FAILED = "failed", _("Failed (not collected / not delivered)")


class FulfillmentStatus(models.TextChoices):
    ASSIGNED = "assigned", _("Assigned")
    PICKING = "picking", _("Picking")
    PACKED = "packed", _("Packed")
    READY_FOR_PICKUP = "ready_for_pickup", _("Ready for pickup")
    COLLECTED = "collected", _("Collected")
    NOT_COLLECTED = "not_collected", _("Not collected")
    HANDED_TO_COURIER = "handed_to_courier", _("Handed to courier")
    DELIVERED = "delivered", _("Delivered")
    DELIVERY_FAILED = "delivery_failed", _("Delivery failed")
    RETURNED_TO_STORE = "returned_to_store", _("Returned to the store")
    CANCELLED = "cancelled", _("Cancelled")


S = FulfillmentStatus
# The state machine. Method-specific edges (ready_for_pickup for pickup, handed_to_courier for delivery) are checked
# by the service.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.ASSIGNED: frozenset({S.PICKING, S.CANCELLED}),
    S.PICKING: frozenset({S.PACKED, S.CANCELLED}),
    S.PACKED: frozenset({S.READY_FOR_PICKUP, S.HANDED_TO_COURIER, S.CANCELLED}),
    S.READY_FOR_PICKUP: frozenset({S.COLLECTED, S.NOT_COLLECTED, S.CANCELLED}),
    S.HANDED_TO_COURIER: frozenset({S.DELIVERED, S.DELIVERY_FAILED}),
    S.COLLECTED: frozenset(),
    S.NOT_COLLECTED: frozenset(),
    S.DELIVERED: frozenset(),
    S.DELIVERY_FAILED: frozenset({S.RETURNED_TO_STORE}),
    S.RETURNED_TO_STORE: frozenset(),
    S.CANCELLED: frozenset(),
}
OPEN_STATUSES = frozenset({S.ASSIGNED, S.PICKING, S.PACKED, S.READY_FOR_PICKUP, S.HANDED_TO_COURIER})
NOT_STARTED = frozenset({S.ASSIGNED})
# Goods have left the store: the order can no longer be cancelled as a whole.
LEFT_STORE = frozenset({S.HANDED_TO_COURIER, S.DELIVERED, S.DELIVERY_FAILED, S.RETURNED_TO_STORE, S.COLLECTED})
SUCCESS = frozenset({S.DELIVERED, S.COLLECTED})


class Order(models.Model):
    number = models.CharField(max_length=32, unique=True, help_text="Public number, e.g. WEB-000123.")
    channel = models.ForeignKey(SalesChannel, on_delete=models.PROTECT, related_name="orders")
    customer_name = models.CharField(max_length=200)
    customer_phone = models.CharField(max_length=20, db_index=True, help_text="E.164, e.g. +84901234567.")
    method = models.CharField(max_length=16, choices=Method.choices)
    destination_lat = models.FloatField(null=True, blank=True)
    destination_lon = models.FloatField(null=True, blank=True)
    destination_address = models.CharField(max_length=300, blank=True)
    pickup_store = models.ForeignKey(Store, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    promise = models.ForeignKey("Promise", null=True, blank=True, on_delete=models.SET_NULL, related_name="orders")
    promise_option = models.CharField(max_length=64, blank=True)
    allow_split = models.BooleanField(default=True)
    payment_state = models.CharField(max_length=16, choices=PaymentState.choices, default=PaymentState.PENDING)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.OPEN, db_index=True)
    subtotal_vnd = models.PositiveBigIntegerField(default=0, help_text="The lines at their unit prices.")
    discount_vnd = models.PositiveBigIntegerField(default=0, help_text="Promotions and codes, over all lines.")
    delivery_fee_vnd = models.PositiveBigIntegerField(default=0)
    pricing = models.JSONField(
        default=dict, blank=True, help_text="What the pricing engine applied: lines, promotions, codes, fee, version."
    )
    points_tender_vnd = models.PositiveBigIntegerField(
        default=0, help_text="VND of the total paid with loyalty points; money paid = total_vnd - points_tender_vnd."
    )
    total_vnd = models.PositiveBigIntegerField(default=0)
    # Loyalty (written by orders.loyalty_tender through loyalty.services; mirrors orders.pos TillReceipt).
    member = models.ForeignKey(
        "loyalty.Member", null=True, blank=True, on_delete=models.PROTECT, related_name="orders",
        help_text="The loyalty member who earns on this order (and whose points paid part of it).",
    )
    points_redeemed = models.PositiveBigIntegerField(default=0, help_text="Points spent as a tender on this order.")
    redeem_posting_id = models.BigIntegerField(null=True, blank=True, help_text="The capture posting of the points hold.")
    earn_posting_id = models.BigIntegerField(null=True, blank=True, help_text="The earn posting made at completion.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        ordering = ["-id"]
        # Moving an order to other stores before picking (orders.services.reroute_order) is its own right, apart
        # from changing or cancelling orders.
        permissions = [("reroute_order", "Can re-route an order that has not started picking")]
        indexes = [models.Index(fields=["channel", "-created_at"], name="order_channel_created_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(method__in=Method.values), name="order_method_valid"),
            models.CheckConstraint(condition=Q(status__in=OrderStatus.values), name="order_status_valid"),
            models.CheckConstraint(
                condition=Q(method="pickup", pickup_store__isnull=False)
                | Q(method="delivery", destination_lat__isnull=False, destination_lon__isnull=False),
                name="order_destination_for_method",
            ),
            models.CheckConstraint(condition=Q(discount_vnd__lte=F("subtotal_vnd")), name="order_discount_within_subtotal"),
            models.CheckConstraint(
                condition=Q(total_vnd=F("subtotal_vnd") - F("discount_vnd") + F("delivery_fee_vnd")),
                name="order_total_is_goods_plus_fee",
            ),
            models.CheckConstraint(
                condition=Q(points_tender_vnd__lte=F("total_vnd")), name="order_points_tender_within_total"
            ),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def aggregate(self) -> str:
        return f"order:{self.number}"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    qty = models.PositiveIntegerField()
    unit_price_vnd = models.PositiveBigIntegerField()
    discount_vnd = models.PositiveBigIntegerField(default=0, help_text="This line's share of every discount.")
    unfulfilled_qty = models.PositiveIntegerField(default=0, help_text="Units no store could serve (after a short pick).")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(qty__gt=0), name="order_line_qty_positive"),
            models.CheckConstraint(
                condition=Q(discount_vnd__lte=F("qty") * F("unit_price_vnd")), name="order_line_discount_within_line"
            ),
            models.CheckConstraint(condition=Q(unfulfilled_qty__lte=F("qty")), name="order_line_unfulfilled_within_qty"),
            models.UniqueConstraint(fields=["order", "product"], name="order_line_unique_product"),
        ]

    def __str__(self) -> str:
        return f"{self.qty} × {self.product_id}"


class Fulfillment(models.Model):
    """What one store does for one order: its pick list, its state, its promise time."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="fulfillments")
    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="fulfillments")
    round = models.PositiveSmallIntegerField(default=1, help_text="Routing round: 1 at placement, +1 per re-route/wave.")
    method = models.CharField(max_length=16, choices=Method.choices)
    status = models.CharField(max_length=20, choices=FulfillmentStatus.choices, default=S.ASSIGNED)
    promised_by = models.DateTimeField()
    distance_km = models.FloatField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True, help_text="When it became ready for pickup.")
    courier_name = models.CharField(max_length=100, blank=True)
    courier_tracking = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    status_changed_at = models.DateTimeField(default=timezone.now)
    # The size of its pick list, fixed when it is created (its lines never change): a store's slot load is the sum
    # over its open fulfillments, read from the queue index without visiting every line.
    # A database default too: during a rolling deploy, processes still running the code from before this column
    # insert without it.
    line_count = models.PositiveSmallIntegerField(default=0, db_default=0, editable=False)

    class Meta:
        verbose_name = _("fulfillment")
        verbose_name_plural = _("fulfillments")
        ordering = ["promised_by", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=FulfillmentStatus.values), name="fulfillment_status_valid"),
            models.UniqueConstraint(fields=["order", "store", "round"], name="fulfillment_one_per_store_per_round"),
        ]
        indexes = [
            models.Index(
                fields=["store", "status", "promised_by"], include=["line_count"], name="fulfillment_store_queue_idx"
            ),
            models.Index(
                fields=["status", "ready_at"], condition=Q(status="ready_for_pickup"), name="fulfillment_ready_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}@{self.store_id} ({self.status})"

    @property
    def reference(self) -> str:
        return f"fulfillment:{self.pk}"


class FulfillmentLine(models.Model):
    fulfillment = models.ForeignKey(Fulfillment, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    qty = models.PositiveIntegerField()
    picked_qty = models.PositiveIntegerField(null=True, blank=True, help_text="Units found when picking (after a short pick).")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(qty__gt=0), name="fulfillment_line_qty_positive"),
            models.CheckConstraint(
                condition=Q(picked_qty__isnull=True) | Q(picked_qty__lte=F("qty")), name="fulfillment_line_picked_within_qty"
            ),
            models.UniqueConstraint(fields=["fulfillment", "product"], name="fulfillment_line_unique_product"),
        ]

    def __str__(self) -> str:
        return f"{self.qty} × {self.product_id}"

    @property
    def units(self) -> int:
        """Units this store will hand over."""
        return self.qty if self.picked_qty is None else self.picked_qty


class PickupCode(models.Model):
    """The code a customer shows at the store. Unique among live pickups; retired when the pickup ends."""

    ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I

    fulfillment = models.OneToOneField(Fulfillment, on_delete=models.CASCADE, related_name="pickup_code")
    code = models.CharField(max_length=12)
    qr_payload = models.CharField(max_length=120)
    is_live = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["code"], condition=Q(is_live=True), name="pickup_code_unique_live"),
        ]

    def __str__(self) -> str:
        return self.code


class RoutingKind(models.TextChoices):
    INITIAL = "initial", _("At placement")
    REROUTE = "reroute", _("Re-route after a short pick")
    WAVE = "wave", _("Wave re-optimisation")
    MANUAL = "manual", _("Re-routed by staff")
    STORE_EVENT = "store_event", _("Re-routed after a store event")


class RoutingDecision(models.Model):
    """Why an order went where it went: the problem (bounded), the plan, the candidates and the reason."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="routing_decisions")
    kind = models.CharField(max_length=16, choices=RoutingKind.choices)
    plan_status = models.CharField(max_length=16, blank=True)
    problem = models.JSONField(help_text="The routing problem, cut to this order's candidates.")
    plan = models.JSONField()
    candidates = models.JSONField(default=list, help_text="[{store, distance_km, stock, capacity, score, chosen, note}]")
    reason = models.TextField(blank=True)
    solve_ms = models.FloatField(default=0)
    applied = models.BooleanField(default=True)
    # The physical event that made this decision necessary (a store_event decision): its ledger reference, e.g.
    # 'pos:HCM-Q1-001:R-0042', as on inventory's TakenReservation. A database default too: during a deploy,
    # processes still running the code from before this column insert without it.
    cause = models.CharField(max_length=120, blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.order_id}"


class ChangeOfferStatus(models.TextChoices):
    OPEN = "open", _("Open")
    ACCEPTED = "accepted", _("Accepted")
    EXPIRED = "expired", _("Expired unanswered (kept what is left)")
    SUPERSEDED = "superseded", _("Superseded by a later offer")
    WITHDRAWN = "withdrawn", _("Withdrawn: the order was cancelled")


class ChangeOffer(models.Model):
    """A pickup order lost units to a store event (a till sale, a count, damage, a transfer) at its store: pickup
    orders stay where the customer chose, so the customer is offered a change instead of a silent re-route.

    `options` ([{id, kind, ...}]): `move` (the whole order to the nearest other pickup store that can serve it now,
    with its ready-by time), `keep` (what is left; the missing units unfulfilled), `cancel`. The customer's answer
    (orders.services.accept_change_offer), or `keep` at `expires_at` (expire_change_offers), is applied once."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="change_offers")
    fulfillment = models.ForeignKey(Fulfillment, on_delete=models.CASCADE, related_name="change_offers")
    cause = models.CharField(max_length=120, help_text="The store event's ledger reference, e.g. 'pos:HCM-Q1-001:R-0042'.")
    event_kind = models.CharField(max_length=16, blank=True, help_text="sale, count, damage or transfer.")
    missing = models.JSONField(default=list, help_text="[{sku, qty}]: the units the event took from this pickup.")
    options = models.JSONField(help_text="[{id, kind, store, store_name, distance_km, ready_by, lines, missing}]")
    status = models.CharField(max_length=16, choices=ChangeOfferStatus.choices, default=ChangeOfferStatus.OPEN)
    chosen = models.CharField(max_length=16, blank=True, help_text="The option applied: move, keep or cancel.")
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("change offer")
        verbose_name_plural = _("change offers")
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=ChangeOfferStatus.values), name="change_offer_status_valid"),
            # One open offer per fulfilment: a later event supersedes the earlier offer, carrying its missing units.
            models.UniqueConstraint(
                fields=["fulfillment"], condition=Q(status="open"), name="change_offer_one_open_per_fulfillment"
            ),
        ]
        indexes = [
            # The expiry task's look: open offers by expiry, never a scan of the history.
            models.Index(fields=["expires_at"], condition=Q(status="open"), name="change_offer_open_idx"),
        ]

    def __str__(self) -> str:
        return f"offer {self.pk} of {self.order_id} ({self.status})"


class Promise(models.Model):
    """The options shown at checkout. Placing an order with this id and one option id gets what the option said."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    channel = models.ForeignKey(SalesChannel, on_delete=models.CASCADE, related_name="+")
    cart = models.JSONField(help_text="{sku: qty}")
    destination_lat = models.FloatField(null=True, blank=True)
    destination_lon = models.FloatField(null=True, blank=True)
    destination_address = models.CharField(max_length=300, blank=True)
    pickup_store = models.ForeignKey(Store, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    options = models.JSONField()
    pricing_input = models.JSONField(
        default=dict, blank=True, help_text="The member and codes the prices were quoted for (placement re-prices)."
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return str(self.id)


from orders.couriers.models import *  # noqa: E402,F401,F403
