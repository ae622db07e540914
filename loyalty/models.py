"""Members and a double-entry, append-only points ledger shared by every channel.

Accounts. Each member has four accounts, each mirrored by a counter on the Member row that loyalty.services keeps in
step with the entries in the same transaction:

    available  vested points the member may spend                      (counter `available`  = sum of entries)
    held       points set aside by open checkout holds                 (counter `held`       = sum of entries)
    pending    earned points that vest when the return window closes   (counter `pending`    = sum of entries)
    shortfall  points reversed after the member had already spent them (counter `shortfall` = -(sum of entries))

and the chain has four system accounts (no member): issued, redeemed, expired, adjustments. Every Posting has
entries that sum to zero. A member's balance (available + held + pending - shortfall) equals the sum of all their
entries. Entries are never updated or deleted (a PostgreSQL trigger refuses it); corrections are new postings.

Lots track where available and pending points came from, so that the oldest are spent first and each month's
earnings expire together. The vested lots' `remaining` sum to `available`, the unvested ones' to `pending`.
`loyalty_audit` proves all of this for every member.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Member(models.Model):
    """One person, identified by a phone number in E.164. A merged member points at the one that kept its history."""

    phone = models.CharField(max_length=20, unique=True, help_text="E.164, e.g. +84901234567.")
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    tier = models.CharField(max_length=32, default="member")
    spend_12m_vnd = models.BigIntegerField(default=0, help_text="Rolling spend used for the tier (periodic task).")
    tier_computed_at = models.DateTimeField(null=True, blank=True)
    available = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    pending = models.BigIntegerField(default=0)
    shortfall = models.BigIntegerField(default=0, help_text="Points owed, settled from future earnings.")
    created_channel = models.CharField(max_length=64, blank=True)
    created_store = models.CharField(max_length=64, blank=True)
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_members")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("member")
        verbose_name_plural = _("members")
        ordering = ["phone"]
        # Changing a member's contact fields is not the same trust as moving their points: adjustments and merges
        # need this permission (head office), checked by the admin.
        permissions = [("adjust_points", "Can adjust or merge a member's points by hand")]
        constraints = [
            models.CheckConstraint(condition=Q(available__gte=0), name="loyalty_member_available_nonnegative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="loyalty_member_held_nonnegative"),
            models.CheckConstraint(condition=Q(pending__gte=0), name="loyalty_member_pending_nonnegative"),
            models.CheckConstraint(condition=Q(shortfall__gte=0), name="loyalty_member_shortfall_nonnegative"),
            models.CheckConstraint(condition=~Q(merged_into=models.F("id")), name="loyalty_member_not_merged_into_self"),
        ]

    def __str__(self) -> str:
        return f"{self.phone} {self.name}".strip()

    @property
    def balance(self) -> int:
        """The sum of all this member's entries."""
        return self.available + self.held + self.pending - self.shortfall


class Account(models.TextChoices):
    AVAILABLE = "available", "Member: available"
    HELD = "held", "Member: held for checkout"
    PENDING = "pending", "Member: pending (return window)"
    SHORTFALL = "shortfall", "Member: shortfall (owed)"
    ISSUED = "issued", "System: issued points"
    REDEEMED = "redeemed", "System: redeemed points"
    EXPIRED = "expired", "System: expired points"
    ADJUSTMENTS = "adjustments", "System: adjustments"


MEMBER_ACCOUNTS = (Account.AVAILABLE, Account.HELD, Account.PENDING, Account.SHORTFALL)
SYSTEM_ACCOUNTS = (Account.ISSUED, Account.REDEEMED, Account.EXPIRED, Account.ADJUSTMENTS)


class PostingKind(models.TextChoices):
    EARN = "earn", "Earned"
    VEST = "vest", "Pending points vested"
    HOLD = "hold", "Redemption held at checkout"
    CAPTURE = "capture", "Redemption captured"
    VOID = "void", "Redemption voided"
    REDEEM = "redeem", "Redeemed at the till"
    VOUCHER = "voucher", "Points spent on a voucher"
    REVERSE = "reverse", "Earning reversed (return/cancel)"
    REFUND = "refund", "Redeemed points given back"
    EXPIRE = "expire", "Points expired"
    ADJUST = "adjust", "Manual adjustment"
    MERGE = "merge", "Members merged"


class Posting(models.Model):
    """One business event on the ledger. Its entries sum to zero. Never updated or deleted."""

    kind = models.CharField(max_length=16, choices=PostingKind.choices)
    # Indexed by loyalty_posting_member_id (member, -id), which serves every lookup by member.
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="postings", db_index=False)
    points = models.BigIntegerField(default=0, help_text="The headline number of points of this event.")
    amount_vnd = models.BigIntegerField(
        default=0, help_text="Earn: VND paid with money; reverse: the VND returned; redemptions: the points' value."
    )
    channel = models.CharField(max_length=64, blank=True)
    store = models.CharField(max_length=64, blank=True)
    reference = models.CharField(max_length=120, blank=True, help_text="Order or receipt reference.")
    actor = models.CharField(max_length=150, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    # NULL, not "": postings without a key must not collide on the unique constraint below.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    original = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="corrections",
        help_text="The earning a reversal reverses, or the redemption a refund gives back.",
    )
    hold = models.ForeignKey("RedemptionHold", null=True, blank=True, on_delete=models.PROTECT, related_name="postings")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("posting")
        verbose_name_plural = _("postings")
        ordering = ["-id"]
        # Every posting writes every index of this table: as constraints and Meta indexes rather than unique=True
        # and db_index=True, which on PostgreSQL also build a second (varchar_pattern_ops) index for LIKE 'x%' that
        # nothing here uses.
        indexes = [
            models.Index(fields=["member", "-id"], name="loyalty_posting_member_id"),
            models.Index(fields=["kind", "created_at"], name="loyalty_posting_kind_time"),
            models.Index(fields=["reference"], name="loyalty_posting_reference"),
        ]
        constraints = [  # the posting statement's ON CONFLICT (idempotency_key) relies on it
            models.UniqueConstraint(fields=["idempotency_key"], name="loyalty_posting_idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.points} ({self.member_id})"


class Entry(models.Model):
    """One side of a posting: a signed number of points on one account. Append-only."""

    posting = models.ForeignKey(Posting, on_delete=models.PROTECT, related_name="entries")
    # Indexed by loyalty_entry_member_account (member, account).
    member = models.ForeignKey(Member, null=True, blank=True, on_delete=models.PROTECT, related_name="entries",
                               db_index=False)
    account = models.CharField(max_length=16, choices=Account.choices)
    amount = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "entries"
        ordering = ["id"]
        indexes = [models.Index(fields=["member", "account"], name="loyalty_entry_member_account")]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="loyalty_entry_nonzero"),
            models.CheckConstraint(
                condition=(Q(account__in=[a.value for a in MEMBER_ACCOUNTS], member__isnull=False))
                | (Q(account__in=[a.value for a in SYSTEM_ACCOUNTS], member__isnull=True)),
                name="loyalty_entry_member_iff_member_account",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.amount:+d}"


class Lot(models.Model):
    """Points credited together (an earning, a refund, a positive adjustment). `remaining` goes down as they are
    spent (oldest expiry first) or expire; it is tracking state, not the ledger."""

    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="lots")
    posting = models.ForeignKey(Posting, on_delete=models.PROTECT, related_name="lots")
    points = models.BigIntegerField()
    remaining = models.BigIntegerField()
    earned_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    vested = models.BooleanField(default=True)
    vest_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["expires_at", "id"]
        indexes = [
            models.Index(fields=["member", "expires_at", "id"], name="loyalty_lot_member_expiry",
                         condition=Q(remaining__gt=0)),
            models.Index(fields=["vest_at"], name="loyalty_lot_to_vest", condition=Q(vested=False)),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(points__gt=0), name="loyalty_lot_points_positive"),
            models.CheckConstraint(condition=Q(remaining__gte=0, remaining__lte=models.F("points")),
                                   name="loyalty_lot_remaining_range"),
        ]

    def __str__(self) -> str:
        return f"lot {self.pk}: {self.remaining}/{self.points} until {self.expires_at:%Y-%m-%d}"


class RedemptionHold(models.Model):
    """Points set aside at checkout. Captured when the order is placed, voided on cancel or when it expires."""

    class Status(models.TextChoices):
        HELD = "held", "Held"
        CAPTURED = "captured", "Captured"
        VOIDED = "voided", "Voided"

    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="holds")
    points = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.HELD)
    expires_at = models.DateTimeField()
    channel = models.CharField(max_length=64, blank=True)
    store = models.CharField(max_length=64, blank=True)
    reference = models.CharField(max_length=120, blank=True, help_text="Cart or order reference.")
    void_reason = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["expires_at"], name="loyalty_hold_live_expiry", condition=Q(status="held"))]
        constraints = [models.CheckConstraint(condition=Q(points__gt=0), name="loyalty_hold_points_positive")]

    def __str__(self) -> str:
        return f"hold {self.pk}: {self.points} ({self.status})"


class HoldAllocation(models.Model):
    """Which lots a hold took its points from, so a void puts them back where they were."""

    hold = models.ForeignKey(RedemptionHold, on_delete=models.PROTECT, related_name="allocations")
    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, related_name="allocations")
    points = models.BigIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(points__gt=0), name="loyalty_allocation_points_positive")]

    def __str__(self) -> str:
        return f"hold {self.hold_id} took {self.points} from lot {self.lot_id}"
