"""Stores, products and per-store stock kept as an append-only ledger.

Stock states per store and SKU (design notes): on_hand = available + reserved + safety + unavailable.
`reserved` and `unavailable` are physical units set aside, so together they never exceed `on_hand`; `safety` is a
buffer the website may not sell (the tills may), so it may exceed what is left. Online ATP is
max(0, on_hand - reserved - safety - unavailable). The database refuses any row that breaks these rules.
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

WEEKDAYS = [(0, "Monday"), (1, "Tuesday"), (2, "Wednesday"), (3, "Thursday"), (4, "Friday"), (5, "Saturday"), (6, "Sunday")]


class Store(models.Model):
    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    address = models.CharField(max_length=300, blank=True)
    district = models.CharField(max_length=100, blank=True)
    city = models.CharField(max_length=100, db_index=True)
    lat = models.FloatField(validators=[MinValueValidator(-90), MaxValueValidator(90)])
    lon = models.FloatField(validators=[MinValueValidator(-180), MaxValueValidator(180)])
    timezone = models.CharField(max_length=64, default="Asia/Ho_Chi_Minh")
    offers_delivery = models.BooleanField("ship-from-store delivery", default=True)
    offers_pickup = models.BooleanField("pickup in store", default=True)
    offers_returns = models.BooleanField("accepts returns", default=True)
    delivery_radius_km = models.FloatField(default=8.0, validators=[MinValueValidator(0)])
    picking_capacity_per_hour = models.PositiveIntegerField(default=30, help_text="Order lines the staff can pick per hour.")
    is_active = models.BooleanField(default=True, db_index=True)

    class Meta:
        verbose_name = _("store")
        verbose_name_plural = _("stores")
        ordering = ["code"]
        indexes = [models.Index(fields=["lat", "lon"], name="store_lat_lon_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(lat__gte=-90, lat__lte=90), name="store_lat_range"),
            models.CheckConstraint(condition=Q(lon__gte=-180, lon__lte=180), name="store_lon_range"),
            models.CheckConstraint(condition=Q(delivery_radius_km__gte=0), name="store_radius_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    @property
    def services(self) -> list[str]:
        offered = [("delivery", self.offers_delivery), ("pickup", self.offers_pickup), ("returns", self.offers_returns)]
        return [name for name, on in offered if on]


class OpeningHours(models.Model):
    """One opening interval on one weekday, in the store's own time zone. Several per day are allowed (lunch breaks)."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="opening_hours")
    weekday = models.PositiveSmallIntegerField(choices=WEEKDAYS)
    opens = models.TimeField()
    closes = models.TimeField()

    class Meta:
        ordering = ["store", "weekday", "opens"]
        verbose_name_plural = "opening hours"
        constraints = [
            models.CheckConstraint(condition=Q(opens__lt=F("closes")), name="opening_hours_opens_before_closes"),
            models.CheckConstraint(condition=Q(weekday__lte=6), name="opening_hours_weekday_range"),
            models.UniqueConstraint(fields=["store", "weekday", "opens"], name="opening_hours_unique_start"),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.opens:%H:%M}–{self.closes:%H:%M}"


class Product(models.Model):
    """A sellable SKU."""

    sku = models.CharField("SKU", max_length=64, unique=True)
    name = models.CharField(max_length=255)
    barcode = models.CharField(max_length=32, unique=True, null=True, blank=True)
    price_vnd = models.PositiveBigIntegerField("price (VND)")
    category = models.CharField(max_length=64, blank=True, db_index=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class Stock(models.Model):
    """The current quantities of one SKU at one store, kept in step with StockMovement by inventory.services."""

    # No single-column indexes: stock_store_product_idx and stock_product_store_unique lead with each column.
    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="stock", db_index=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="stock", db_index=False)
    on_hand = models.BigIntegerField(default=0)
    reserved = models.BigIntegerField(default=0)
    safety = models.BigIntegerField(default=0)
    unavailable = models.BigIntegerField(default=0)
    target = models.BigIntegerField(default=0, help_text="The level the store wants to hold (replenishment, returns routing).")
    shortfall = models.BigIntegerField(
        default=0, db_default=0,
        help_text="Units the shop floor sold or sent away beyond what the ledger had on hand: the event is recorded in "
        "full, the row waits for a count (needs_count), and online ATP is zero until the count reconciles it.",
    )
    needs_count = models.BooleanField(default=False, help_text="The ledger lost track of the shelf: count this SKU.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("stock")
        verbose_name_plural = _("stock")
        constraints = [
            # (product, store) order: serves both "this cart at these stores" and "this SKU across the network".
            models.UniqueConstraint(fields=["product", "store"], name="stock_product_store_unique"),
            models.CheckConstraint(condition=Q(on_hand__gte=0), name="stock_on_hand_nonnegative"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="stock_reserved_nonnegative"),
            models.CheckConstraint(condition=Q(safety__gte=0), name="stock_safety_nonnegative"),
            models.CheckConstraint(condition=Q(unavailable__gte=0), name="stock_unavailable_nonnegative"),
            models.CheckConstraint(condition=Q(target__gte=0), name="stock_target_nonnegative"),
            models.CheckConstraint(
                condition=Q(on_hand__gte=F("reserved") + F("unavailable")), name="stock_set_aside_within_on_hand"
            ),
            models.CheckConstraint(condition=Q(shortfall__gte=0), name="stock_shortfall_nonnegative"),
            # Below zero is a fact that waits for a count, never a silent state.
            models.CheckConstraint(condition=Q(shortfall=0) | Q(needs_count=True), name="stock_shortfall_needs_count"),
        ]
        indexes = [
            models.Index(fields=["store", "product"], name="stock_store_product_idx"),
            # Few rows need a count at any time; a partial index finds them without scanning millions.
            models.Index(fields=["store"], condition=Q(needs_count=True), name="stock_needs_count_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.store.code} / {self.product.sku}"

    @property
    def available(self) -> int:
        """Online ATP, not counting holds that expired but were not yet cleaned up (selectors do that); zero while
        a shortfall waits for its count."""
        if self.shortfall:
            return 0
        return max(0, self.on_hand - self.reserved - self.safety - self.unavailable)


class MovementReason(models.TextChoices):
    OPENING_BALANCE = "opening_balance", "Opening balance"
    GOODS_RECEIPT = "goods_receipt", "Goods receipt"
    ADJUSTMENT = "adjustment", "Adjustment"
    COUNT = "count", "Stock count"
    SAFETY_CHANGE = "safety_change", "Safety stock changed"
    DAMAGE = "damage", "Damaged / quarantined"
    RELEASE_FROM_QUARANTINE = "quarantine_release", "Back on sale from quarantine"
    WRITE_OFF = "write_off", "Write-off"
    RESERVE = "reserve", "Reserved"
    RELEASE = "release", "Reservation released"
    HOLD_EXPIRED = "hold_expired", "Checkout hold expired"
    COMMIT = "commit", "Shipped / handed over"
    SALE = "sale", "Till sale"
    SALE_VOID = "sale_void", "Till sale voided"
    RETURN = "return", "Customer return"
    TRANSFER_OUT = "transfer_out", "Transfer out"
    TRANSFER_IN = "transfer_in", "Transfer in"
    DELIVERY_RETURNED = "delivery_returned", "Failed delivery back in store"


class StockMovement(models.Model):
    """An append-only line of the stock ledger: the change of each state, why, and on whose behalf."""

    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="movements", db_index=False)  # see Meta
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="movements")
    reason = models.CharField(max_length=32, choices=MovementReason.choices)
    delta_on_hand = models.BigIntegerField(default=0)
    delta_reserved = models.BigIntegerField(default=0)
    delta_safety = models.BigIntegerField(default=0)
    delta_unavailable = models.BigIntegerField(default=0)
    delta_shortfall = models.BigIntegerField(default=0, db_default=0)
    reference = models.CharField(max_length=120, blank=True, help_text="Order, receipt, count, ...")  # see Meta
    # NULL, not "", for "no key": the unique constraint in Meta must not treat every keyless movement as one key.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    actor = models.CharField(max_length=150, blank=True, help_text="Who asked: staff user, sales channel, POS key, task.")
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("stock movement")
        verbose_name_plural = _("stock movements")
        ordering = ["-id"]
        # Every index costs each of the ~10 M opening-balance rows of a generated chain, and every movement after:
        # exact-match lookups only (no LIKE), so no varchar_pattern_ops twins of reference and idempotency_key, and
        # no store_id index beside the composite that leads with it.
        indexes = [
            models.Index(fields=["store", "product", "created_at"], name="movement_store_product_time"),
            models.Index(fields=["reference"], name="movement_reference_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="movement_idempotency_key_unique"),
            models.CheckConstraint(
                condition=~Q(delta_on_hand=0, delta_reserved=0, delta_safety=0, delta_unavailable=0, delta_shortfall=0),
                name="movement_changes_something",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reason} {self.store_id}/{self.product_id}"


class Reservation(models.Model):
    """Units set aside at one store for a checkout hold (with an expiry) or a placed order (without).

    A hold stops counting the moment `expires_at` passes: readers subtract only live holds, and the next writer on
    the same stock row (or the periodic task) releases it into the ledger. Released reservations are deleted; the
    ledger keeps their history.
    """

    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="reservations")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="reservations")
    quantity = models.PositiveIntegerField()
    reference = models.CharField(max_length=120, db_index=True, help_text="What holds it: 'hold:<id>', 'fulfillment:<id>'.")
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The website whose checkout hold this is: told when a store event takes the hold's units.
    channel = models.ForeignKey("o2o.SalesChannel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("reservation")
        verbose_name_plural = _("reservations")
        indexes = [models.Index(fields=["product", "store", "expires_at"], name="reservation_stock_expiry")]
        constraints = [models.CheckConstraint(condition=Q(quantity__gt=0), name="reservation_quantity_positive")]

    def __str__(self) -> str:
        return f"{self.reference}: {self.quantity} × {self.product_id} @ {self.store_id}"

    def is_live(self, now=None) -> bool:
        return self.expires_at is None or self.expires_at > (now or timezone.now())


class EventKind(models.TextChoices):
    """The physical events at a store that may take units the ledger had set aside for someone."""

    SALE = "sale", _("Till sale")
    COUNT = "count", _("Stock count")
    DAMAGE = "damage", _("Goods found damaged")
    TRANSFER = "transfer", _("Transfer shipped")


class TakenReservation(models.Model):
    """Units a physical event at a store (a till sale, a count, goods found damaged, a transfer shipped) took from a
    reservation, because the shop floor had no other units to give.

    The reservation shrinks in the same transaction as the event's movement (inventory.services.ShopFloor); its holder
    (a checkout hold's website, a placed order's fulfilment) is reconciled from this row right after, in the same
    request (orders.services.store_events), and `reconciled_at` says when and `outcome` how. A row without
    `reconciled_at` is a re-route still pending: the periodic task takes it up if the flow that wrote it could not
    finish. Append-only but for those two columns."""

    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="+")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    reference = models.CharField(max_length=120, db_index=True, help_text="The reservation's: 'hold:<id>', 'fulfillment:<id>'.")
    units = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    cause = models.CharField(max_length=120, help_text="The event: its ledger reference, e.g. 'pos:HCM-Q1-001:R-0042'.")
    channel = models.ForeignKey("o2o.SalesChannel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    reconciled_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = _("reservation taken by a store event")
        verbose_name_plural = _("reservations taken by store events")
        constraints = [models.CheckConstraint(condition=Q(units__gt=0), name="taken_reservation_units_positive")]
        indexes = [
            # The periodic task's look for pending re-routes: few rows, never a scan of the history.
            models.Index(fields=["created_at"], condition=Q(reconciled_at__isnull=True), name="taken_pending_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.cause} took {self.units} × {self.product_id} of {self.reference}"


class StockImport(models.Model):
    """One upload of goods receipts or counts in the admin: the rows as checked at the preview, then the progress
    and the outcome of each group (one receipt or count) as it is applied through the POS services.

    The rows are kept here, not in a temporary file, so that the confirm step (and the Celery task that applies a
    large file) re-reads exactly what the preview showed. Stores are a many-to-many set because one file may cover
    several stores; the admin shows an import only to staff whose scope holds every one of them."""

    class Kind(models.TextChoices):
        GOODS_RECEIPTS = "goods_receipts", _("Goods receipts")
        COUNTS = "counts", _("Counts")

    class Status(models.TextChoices):
        PREVIEWED = "previewed", _("Previewed (not applied)")
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Applying")
        DONE = "done", _("Done")
        DONE_WITH_ERRORS = "done_with_errors", _("Done, some groups refused")
        FAILED = "failed", _("Failed")

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.PREVIEWED)
    file_name = models.CharField(_("file"), max_length=255, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("uploaded by")
    )
    actor = models.CharField(_("actor"), max_length=150, help_text=_("Recorded on every ledger movement."))
    stores = models.ManyToManyField(Store, related_name="+", blank=True, verbose_name=_("stores"))
    rows = models.JSONField(default=list, help_text=_("The file's rows as checked at the preview."))
    total_groups = models.PositiveIntegerField(_("groups"), default=0)
    done_groups = models.PositiveIntegerField(_("groups done"), default=0)
    failed_groups = models.PositiveIntegerField(_("groups refused"), default=0)
    replayed_groups = models.PositiveIntegerField(_("groups already imported"), default=0)
    results = models.JSONField(_("results"), default=list, help_text=_("The outcome of each group, in file order."))
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("stock import")
        verbose_name_plural = _("stock imports")
        permissions = [("import_stock", _("Can import goods receipts and counts"))]
        constraints = [
            models.CheckConstraint(
                condition=Q(done_groups__lte=F("total_groups")) & Q(failed_groups__lte=F("done_groups"))
                & Q(replayed_groups__lte=F("done_groups")),
                name="stock_import_progress_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def percent(self) -> int:
        if not self.total_groups:
            return 100 if self.status in (self.Status.DONE, self.Status.DONE_WITH_ERRORS) else 0
        return self.done_groups * 100 // self.total_groups
