"""Reads of the loyalty ledger: member lookup, balances, tier progress, history, and the audit."""

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from loyalty import conf
from loyalty.exceptions import RedemptionNotFound, UnknownMember
from loyalty.models import MEMBER_ACCOUNTS, Account, Entry, Lot, Member, Posting, RedemptionHold
from loyalty.phones import normalize_phone


def member_by_phone(phone: str) -> Member:
    """The live member behind a phone number in any format (a merged member resolves to the one it was merged
    into). Raises InvalidPhone (400) or UnknownMember (404)."""
    e164 = normalize_phone(phone)
    member = Member.objects.select_related("merged_into").filter(phone=e164).first()
    if member is None:
        raise UnknownMember(details={"phone": e164})
    return member.merged_into or member


def member_ids_with_history(member: Member) -> list[int]:
    """The member and every member merged into it: their postings are its history."""
    return [member.pk, *Member.objects.filter(merged_into=member).values_list("pk", flat=True)]


@dataclass(frozen=True)
class Balance:
    available: int
    held: int
    pending: int
    shortfall: int
    expiring_soon: int
    expiring_soon_until: datetime
    available_value_vnd: int


def balance(*, member: Member, now: datetime | None = None) -> Balance:
    now = now or timezone.now()
    until = now + conf.expiring_soon()
    fresh = Member.objects.get(pk=member.pk)
    expiring = Lot.objects.filter(member=fresh, vested=True, remaining__gt=0, expires_at__lte=until).aggregate(
        n=Sum("remaining", default=0)
    )["n"]
    return Balance(
        available=fresh.available,
        held=fresh.held,
        pending=fresh.pending,
        shortfall=fresh.shortfall,
        expiring_soon=expiring,
        expiring_soon_until=until,
        available_value_vnd=fresh.available * conf.point_value_vnd(),
    )


def tier_progress(*, member: Member) -> dict:
    """The member's tier, its multiplier, and how much more spend reaches the next one (as of the last recompute)."""
    tier = conf.tier_by_code(member.tier)
    nxt = conf.next_tier(tier.code)
    return {
        "code": tier.code,
        "name": tier.name,
        "multiplier": str(tier.multiplier),
        "spend_12m_vnd": member.spend_12m_vnd,
        "computed_at": member.tier_computed_at,
        "next_tier": nxt.code if nxt else None,
        "next_tier_name": nxt.name if nxt else None,
        "next_tier_min_spend_vnd": nxt.min_spend_vnd if nxt else None,
        "spend_to_next_tier_vnd": max(0, nxt.min_spend_vnd - member.spend_12m_vnd) if nxt else 0,
    }


def history(*, member: Member) -> QuerySet[Posting]:
    """The member's postings across every channel (and those of members merged into it), newest first, each
    annotated with the net change to the member's available, pending and held points."""
    ids = member_ids_with_history(member)
    mine = Q(entries__member_id__in=ids)
    return (
        Posting.objects.filter(member_id__in=ids)
        .annotate(
            change_available=Sum("entries__amount", filter=mine & Q(entries__account=Account.AVAILABLE), default=0),
            change_pending=Sum("entries__amount", filter=mine & Q(entries__account=Account.PENDING), default=0),
            change_held=Sum("entries__amount", filter=mine & Q(entries__account=Account.HELD), default=0),
        )
        .order_by("-id")
    )


def hold_for_channel(*, hold_id: int, channel: str) -> RedemptionHold:
    """A channel only sees its own holds. Raises RedemptionNotFound."""
    hold = RedemptionHold.objects.select_related("member").filter(pk=hold_id, channel=channel).first()
    if hold is None:
        raise RedemptionNotFound(details={"id": hold_id})
    return hold


def lots(*, member: Member) -> QuerySet[Lot]:
    return Lot.objects.filter(member=member, remaining__gt=0).order_by("expires_at", "id")


# --- audit ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditDifference:
    member_id: int
    phone: str
    what: str
    stored: int
    computed: int


def unbalanced_postings() -> list[tuple[int, int]]:
    """(posting id, sum of its entries) for every posting whose entries do not sum to zero."""
    return list(
        Entry.objects.values("posting_id").annotate(total=Sum("amount")).exclude(total=0)
        .values_list("posting_id", "total")
    )


def ledger_differences() -> list[AuditDifference]:
    """Every member counter that differs from the sum of the member's entries on that account, every lot total
    that differs from its counter, and every held counter that differs from the member's open holds."""
    entry_sums: dict[tuple[int, str], int] = {}
    for member_id, account, total in (
        Entry.objects.filter(member__isnull=False).values("member_id", "account").annotate(total=Sum("amount"))
        .values_list("member_id", "account", "total")
    ):
        entry_sums[(member_id, account)] = total
    lot_sums: dict[tuple[int, bool], int] = {
        (member_id, vested): total
        for member_id, vested, total in Lot.objects.values("member_id", "vested").annotate(total=Sum("remaining"))
        .values_list("member_id", "vested", "total")
    }
    held_sums: dict[int, int] = dict(
        RedemptionHold.objects.filter(status=RedemptionHold.Status.HELD).values("member_id").annotate(total=Sum("points"))
        .values_list("member_id", "total")
    )
    diffs: list[AuditDifference] = []
    for m in Member.objects.only("pk", "phone", "available", "held", "pending", "shortfall").iterator(chunk_size=5000):
        for account in MEMBER_ACCOUNTS:
            stored = getattr(m, str(account))
            computed = entry_sums.get((m.pk, str(account)), 0)
            if account == Account.SHORTFALL:
                computed = -computed
            if stored != computed:
                diffs.append(AuditDifference(m.pk, m.phone, f"{account} vs entries", stored, computed))
        for vested, field in ((True, "available"), (False, "pending")):
            total = lot_sums.get((m.pk, vested), 0)
            if getattr(m, field) != total:
                diffs.append(AuditDifference(m.pk, m.phone, f"{field} vs lots", getattr(m, field), total))
        if m.held != held_sums.get(m.pk, 0):
            diffs.append(AuditDifference(m.pk, m.phone, "held vs open holds", m.held, held_sums.get(m.pk, 0)))
    return diffs


def negative_counters() -> int:
    return Member.objects.filter(Q(available__lt=0) | Q(held__lt=0) | Q(pending__lt=0) | Q(shortfall__lt=0)).count()


def system_totals() -> dict[str, int]:
    """The balance of each system account (issued is negative: points the chain owes its members)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT account, COALESCE(SUM(amount), 0) FROM {Entry._meta.db_table} WHERE member_id IS NULL GROUP BY account"
        )
        return {account: int(total) for account, total in cursor.fetchall()}
