"""The commercial policy (price lists, promotions, codes, delivery fees) and what was done with it (code uses,
promotion applications, price exceptions). orders.pricing.selectors turns the policy tables into the engine's
plain Policy; orders.pricing.services does every write.

Money is integer VND and never negative (CHECK constraints); a code's and a promotion's use counters never pass
their caps (CHECK constraints, kept by conditional updates in the services)."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from inventory.models import Product, Store

from .engine import Kind, Target

KIND_CHOICES = [
    (Kind.PERCENT_OFF, _("Percent off")),
    (Kind.AMOUNT_OFF, _("Amount off")),
    (Kind.BUY_X_GET_Y, _("Buy X get Y")),
    (Kind.BUNDLE, _("Bundle price")),
    (Kind.SPEND_THRESHOLD, _("Spend threshold")),
]
TARGET_CHOICES = [(Target.SKU, _("SKUs")), (Target.CATEGORY, _("Categories")), (Target.CART, _("Cart"))]
CHANNELS_HELP = _('Sales channel codes, "store" for the tills; empty for every channel.')


class StoreGroup(models.Model):
    """Stores that share prices or promotions: a region, a city, a store format, or any list."""

    class Basis(models.TextChoices):
        REGION = "region", _("Region")
        CITY = "city", _("City")
        FORMAT = "format", _("Store format")
        OTHER = "other", _("Other")

    code = models.SlugField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name"), max_length=120)
    basis = models.CharField(_("basis"), max_length=16, choices=Basis.choices, default=Basis.OTHER)
    stores = models.ManyToManyField(Store, related_name="price_groups", verbose_name=_("stores"), blank=True)

    class Meta:
        verbose_name = _("store group")
        verbose_name_plural = _("store groups")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class PolicyVersion(models.Model):
    """One row: the policy's version, raised by every change to it (orders.pricing.services.policy_changed), so
    that a till's snapshot (`?since=`) and the processes' cached policy know when to reload."""

    version = models.PositiveBigIntegerField(default=1)
    changed_at = models.DateTimeField(default=timezone.now)
    products_fingerprint = models.CharField(
        max_length=64, blank=True, help_text="A digest of the products' SKUs, base prices, categories and active flags "
        "when the version last moved: a product change (in the inventory app, which knows nothing of pricing) moves "
        "the version too, within PRICING_PRODUCTS_RECHECK_SECONDS.",
    )

    class Meta:
        verbose_name = _("pricing policy version")
        verbose_name_plural = _("pricing policy version")

    def __str__(self) -> str:
        return f"v{self.version}"


class _Scoped(models.Model):
    channels = models.JSONField(_("channels"), default=list, blank=True, help_text=CHANNELS_HELP)
    store_group = models.ForeignKey(
        StoreGroup, null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("store group"),
        help_text=_("Empty for every store."),
    )
    starts_at = models.DateTimeField(_("starts at"), null=True, blank=True)
    ends_at = models.DateTimeField(_("ends at"), null=True, blank=True, help_text=_("Exclusive."))
    priority = models.IntegerField(_("priority"), default=0)
    is_active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class Meta:
        abstract = True

    def clean(self) -> None:
        super().clean()
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": _("The end must be after the start.")})
        if not isinstance(self.channels, list) or not all(isinstance(c, str) and c for c in self.channels):
            raise ValidationError({"channels": _('A list of channel codes, e.g. ["website", "store"].')})


class PriceList(_Scoped):
    """Prices that replace the base price where the list is in force. Precedence when several hold a SKU: a list
    scoped to stores over a chain-wide one, to channels over every channel, then the higher priority, then the later
    start, then the code."""

    code = models.SlugField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name"), max_length=120)

    class Meta:
        verbose_name = _("price list")
        verbose_name_plural = _("price lists")
        ordering = ["-priority", "code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(starts_at__isnull=True) | Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")),
                name="price_list_dates_in_order",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class PriceListRow(models.Model):
    price_list = models.ForeignKey(PriceList, on_delete=models.CASCADE, related_name="rows",
                                   verbose_name=_("price list"))
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+", verbose_name=_("product"))
    price_vnd = models.BigIntegerField(_("price (VND)"), validators=[MinValueValidator(0)])

    class Meta:
        verbose_name = _("price list row")
        verbose_name_plural = _("price list rows")
        constraints = [
            models.UniqueConstraint(fields=["price_list", "product"], name="price_list_row_unique_product"),
            models.CheckConstraint(condition=Q(price_vnd__gte=0), name="price_list_row_price_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.price_vnd:,} ₫".replace(",", ".")


class Promotion(_Scoped):
    """A discount rule; see orders/pricing/README.md for each kind and how several combine."""

    code = models.SlugField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name"), max_length=160)
    campaign = models.CharField(_("campaign"), max_length=80, blank=True, db_index=True)
    kind = models.CharField(_("kind"), max_length=20, choices=KIND_CHOICES)
    target = models.CharField(pgettext_lazy("promotion", "target"), max_length=10, choices=TARGET_CHOICES,
                              default=Target.CART)
    skus = models.JSONField(_("SKUs"), default=list, blank=True)
    categories = models.JSONField(_("categories"), default=list, blank=True)
    percent = models.PositiveSmallIntegerField(
        _("percent"), default=0, validators=[MaxValueValidator(100)],
        help_text=_("Percent off; for buy X get Y, off the Y units (100 = free)."),
    )
    amount_vnd = models.BigIntegerField(
        _("amount (VND)"), default=0, validators=[MinValueValidator(0)],
        help_text=_("Off each unit (SKU or category target) or once off the cart."),
    )
    buy_qty = models.PositiveSmallIntegerField(_("buy X"), default=0)
    get_qty = models.PositiveSmallIntegerField(_("get Y"), default=0)
    bundle = models.JSONField(_("bundle"), default=list, blank=True, help_text=_('[["SKU-1", 1], ["SKU-2", 2]]'))
    bundle_price_vnd = models.BigIntegerField(_("bundle price (VND)"), default=0, validators=[MinValueValidator(0)])
    min_spend_vnd = models.BigIntegerField(_("minimum spend (VND)"), default=0, validators=[MinValueValidator(0)])
    tiers = models.JSONField(_("member tiers"), default=list, blank=True, help_text=_("Empty for everyone."))
    weekdays = models.JSONField(_("weekdays"), default=list, blank=True, help_text=_("0 = Monday; empty for every day."))
    from_time = models.TimeField(_("from (store time)"), null=True, blank=True)
    until_time = models.TimeField(_("until (store time)"), null=True, blank=True)
    exclusive = models.BooleanField(_("exclusive"), default=False, help_text=_("Never combined with another promotion."))
    requires_code = models.BooleanField(_("requires a code"), default=False)
    max_uses = models.PositiveIntegerField(_("budget: uses"), null=True, blank=True)
    max_uses_per_member = models.PositiveIntegerField(_("budget: uses per member"), null=True, blank=True)
    max_discount_vnd = models.BigIntegerField(_("budget: discount (VND)"), null=True, blank=True)
    uses = models.PositiveIntegerField(_("uses"), default=0, editable=False)
    discount_given_vnd = models.BigIntegerField(_("discount given (VND)"), default=0, editable=False)

    class Meta:
        verbose_name = _("promotion")
        verbose_name_plural = _("promotions")
        ordering = ["-priority", "code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(starts_at__isnull=True) | Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")),
                name="promotion_dates_in_order",
            ),
            models.CheckConstraint(condition=Q(percent__gte=0, percent__lte=100), name="promotion_percent_range"),
            models.CheckConstraint(
                condition=Q(amount_vnd__gte=0, bundle_price_vnd__gte=0, min_spend_vnd__gte=0, discount_given_vnd__gte=0),
                name="promotion_money_nonnegative",
            ),
            models.CheckConstraint(condition=Q(max_uses__isnull=True) | Q(uses__lte=F("max_uses")),
                                   name="promotion_uses_within_budget"),
            models.CheckConstraint(
                condition=Q(max_discount_vnd__isnull=True) | Q(discount_given_vnd__lte=F("max_discount_vnd")),
                name="promotion_discount_within_budget",
            ),
            models.CheckConstraint(condition=Q(kind__in=Kind.ALL), name="promotion_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.code}: {self.name}"


class PromotionMemberUse(models.Model):
    """How often a member used a promotion with a per-member cap (kept by a conditional update)."""

    promotion = models.ForeignKey(Promotion, on_delete=models.CASCADE, related_name="member_uses")
    member_phone = models.CharField(max_length=20)
    uses = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["promotion", "member_phone"], name="promotion_member_use_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.member_phone}: {self.uses}"


class Code(models.Model):
    """A coupon or voucher code. Single-use: max_uses 1. A voucher bought with points carries its value and its
    member; its points are in the loyalty ledger (posting `voucher_posting_id`)."""

    code = models.CharField(_("code"), max_length=40, unique=True)
    promotion = models.ForeignKey(Promotion, on_delete=models.PROTECT, related_name="codes",
                                  verbose_name=_("promotion"))
    campaign = models.CharField(_("campaign"), max_length=80, blank=True, db_index=True)
    member_phone = models.CharField(_("member"), max_length=20, blank=True, db_index=True,
                                    help_text=_("Only this member may use it; empty for anyone."))
    max_uses = models.PositiveIntegerField(_("uses allowed"), null=True, blank=True, default=1,
                                           help_text=_("1 for single-use; empty for unlimited."))
    uses = models.PositiveIntegerField(_("uses"), default=0)
    value_vnd = models.BigIntegerField(_("voucher value (VND)"), null=True, blank=True,
                                       help_text=_("A voucher's own value, replacing the promotion's amount."))
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    voucher_posting_id = models.BigIntegerField(_("loyalty posting"), null=True, blank=True, editable=False)
    points_spent = models.PositiveBigIntegerField(_("points spent"), default=0, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("coupon or voucher code")
        verbose_name_plural = _("coupon and voucher codes")
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(max_uses__isnull=True) | Q(uses__lte=F("max_uses")),
                                   name="code_uses_within_max"),
            models.CheckConstraint(condition=Q(value_vnd__isnull=True) | Q(value_vnd__gt=0), name="code_value_positive"),
            models.UniqueConstraint(fields=["voucher_posting_id"], name="code_one_voucher_per_posting"),
        ]

    def __str__(self) -> str:
        return self.code


class CodeUse(models.Model):
    """A code taken by an order (reserved at checkout, released on cancel) or a till receipt (consumed)."""

    class Status(models.TextChoices):
        RESERVED = "reserved", _("Reserved by an order")
        CONSUMED = "consumed", _("Consumed")
        RELEASED = "released", _("Released (order cancelled)")

    code = models.ForeignKey(Code, on_delete=models.PROTECT, related_name="code_uses", verbose_name=_("code"))
    reference = models.CharField(_("reference"), max_length=120,
                                 help_text=_("'order:<number>' or 'pos:<store>:<receipt>'."))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices)
    channel = models.CharField(_("channel"), max_length=64)
    store = models.CharField(_("store"), max_length=32, blank=True)
    member_phone = models.CharField(_("member"), max_length=20, blank=True)
    discount_vnd = models.BigIntegerField(_("discount (VND)"), default=0)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("code use")
        verbose_name_plural = _("code uses")
        constraints = [
            models.UniqueConstraint(fields=["code", "reference"], name="code_use_once_per_reference"),
            models.CheckConstraint(condition=Q(discount_vnd__gte=0), name="code_use_discount_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} ({self.status})"


class PromotionApplication(models.Model):
    """One promotion applied to one order or receipt: the results per promotion read these."""

    promotion = models.ForeignKey(Promotion, on_delete=models.PROTECT, related_name="applications",
                                  verbose_name=_("promotion"))
    reference = models.CharField(_("reference"), max_length=120, db_index=True)
    channel = models.CharField(_("channel"), max_length=64)
    store = models.CharField(_("store"), max_length=32, blank=True, db_index=True)
    member_phone = models.CharField(_("member"), max_length=20, blank=True)
    code = models.CharField(_("code"), max_length=40, blank=True)
    discount_vnd = models.BigIntegerField(_("discount (VND)"))
    revenue_vnd = models.BigIntegerField(_("revenue (VND)"),
                                         help_text=_("The goods total of the cart it applied to, after discounts."))
    cancelled = models.BooleanField(_("cancelled"), default=False)
    at = models.DateTimeField(_("at"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("promotion application")
        verbose_name_plural = _("promotion applications")
        constraints = [
            models.CheckConstraint(condition=Q(discount_vnd__gte=0, revenue_vnd__gte=0),
                                   name="promotion_application_money_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.promotion_id} on {self.reference}"


class DeliveryFeeRule(models.Model):
    """A delivery fee band from the serving store: up to `max_km` (in `city`, when set) costs `fee_vnd`."""

    code = models.SlugField(_("code"), max_length=40, unique=True)
    city = models.CharField(_("city (zone)"), max_length=100, blank=True, help_text=_("Empty for anywhere."))
    max_km = models.FloatField(_("up to km"), validators=[MinValueValidator(0)])
    fee_vnd = models.BigIntegerField(_("fee (VND)"), validators=[MinValueValidator(0)])
    channels = models.JSONField(_("channels"), default=list, blank=True, help_text=CHANNELS_HELP)
    free_over_vnd = models.BigIntegerField(_("free over (VND)"), null=True, blank=True)
    free_tiers = models.JSONField(_("free for tiers"), default=list, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("delivery fee")
        verbose_name_plural = _("delivery fees")
        ordering = ["city", "max_km"]
        constraints = [
            models.CheckConstraint(condition=Q(fee_vnd__gte=0), name="delivery_fee_nonnegative"),
            models.CheckConstraint(condition=Q(free_over_vnd__isnull=True) | Q(free_over_vnd__gte=0),
                                   name="delivery_fee_free_over_nonnegative"),
        ]

    def __str__(self) -> str:
        return self.code


class PriceException(models.Model):
    """A till receipt line sold at another price than the policy's at the receipt's time. The sale stands (the goods
    have left); operations review it here."""

    class Kind(models.TextChoices):
        BELOW_POLICY = "below_policy", _("Below the policy price")
        ABOVE_POLICY = "above_policy", _("Above the policy price")
        OVERRIDE = "override", _("Manager override")
        CODE_REFUSED = "code_refused", _("Code not valid")
        OVER_BUDGET = "over_budget", _("Promotion over its budget")

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        ACCEPTED = "accepted", _("Accepted")
        FOLLOWED_UP = "followed_up", _("Followed up with the store")

    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="+", verbose_name=_("store"))
    receipt_id = models.CharField(_("receipt"), max_length=64)
    sold_at = models.DateTimeField(_("sold at"))
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    sku = models.CharField(_("SKU"), max_length=64, blank=True)
    qty = models.PositiveIntegerField(_("quantity"), default=0)
    expected_vnd = models.BigIntegerField(_("policy (VND)"), default=0)
    charged_vnd = models.BigIntegerField(_("charged (VND)"), default=0)
    difference_vnd = models.BigIntegerField(_("difference (VND)"), default=0,
                                            help_text=_("Charged minus the policy: negative when sold below it."))
    detail = models.CharField(_("detail"), max_length=300, blank=True)
    override_reason = models.CharField(_("override reason"), max_length=300, blank=True)
    override_staff = models.CharField(_("override staff id"), max_length=64, blank=True)
    policy_version = models.PositiveBigIntegerField(_("policy version"), default=0)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True)
    reviewed_by = models.CharField(_("reviewed by"), max_length=150, blank=True)
    reviewed_at = models.DateTimeField(_("reviewed at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("price exception")
        verbose_name_plural = _("price exceptions")
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(expected_vnd__gte=0, charged_vnd__gte=0),
                                   name="price_exception_money_nonnegative"),
        ]
        indexes = [models.Index(fields=["store", "receipt_id"], name="price_exception_receipt_idx")]

    def __str__(self) -> str:
        return f"{self.store_id} {self.receipt_id} {self.sku}"
