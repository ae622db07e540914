"""What time and staff do to balances: expiry of lots, manual adjustments, the rolling spend and the tiers it sets,
and the periodic run of everything time-driven."""

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from loyalty import conf
from loyalty.exceptions import InsufficientPoints, InvalidAmount
from loyalty.models import Lot, Member, Posting, PostingKind
from loyalty.services.earning import vest_pending
from loyalty.services.ledger import SYSTEM, A, NewLot, PostingSource, _lock_member, _pick_lots, _post, _replay, _spent
from loyalty.services.redemption import void_expired_holds
from o2o.domain_errors import InvalidInput


def expire_lots(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Post the expiry of vested lots whose time has come (periodic task). Returns the number of postings."""
    now = now or timezone.now()
    member_ids = list(
        Lot.objects.filter(vested=True, remaining__gt=0, expires_at__lte=now).order_by("member_id")
        .values_list("member_id", flat=True).distinct()[:limit]
    )
    done = 0
    for member_id in member_ids:
        with transaction.atomic():
            m = _lock_member(member_id)
            lots = list(Lot.objects.filter(member=m, vested=True, remaining__gt=0, expires_at__lte=now))
            total = sum(lot.remaining for lot in lots)
            if not total:
                continue
            Lot.objects.filter(pk__in=[lot.pk for lot in lots]).update(remaining=0)
            _post(
                member=m, kind=PostingKind.EXPIRE, source=SYSTEM, now=now, points=total, spend=total,
                entries=[(A.AVAILABLE, -total, m), (A.EXPIRED, total, None)],
                reason=f"{len(lots)} lot(s) expired",
            )
            done += 1
    return done


def adjust_points(
    *, member: Member, points: int, reason: str, staff: str, idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Posting:
    """A manual correction by staff: `points` > 0 credits a new lot, < 0 debits the oldest lots (never below zero:
    InsufficientPoints). `reason` and the staff member's name are recorded on the posting."""
    now = now or timezone.now()
    if isinstance(points, bool) or not isinstance(points, int) or points == 0:
        raise InvalidAmount(details={"points": points})
    if not (reason or "").strip():
        raise InvalidInput("An adjustment needs a reason.", details={"reason": reason})
    if not (staff or "").strip():
        raise InvalidInput("An adjustment needs the staff member's name.", details={"staff": staff})
    with transaction.atomic():
        m = _lock_member(member)
        first = _replay(idempotency_key, kind=PostingKind.ADJUST, member=m)
        if first is not None:
            return first
        source = PostingSource(channel="admin", actor=staff)
        if points > 0:
            return _post(
                member=m, kind=PostingKind.ADJUST, source=source, now=now, points=points, reason=reason,
                idempotency_key=idempotency_key, entries=[(A.ADJUSTMENTS, -points, None), (A.AVAILABLE, points, m)],
                new_lot=NewLot(points=points, earned_at=now),
            )
        debit = -points
        if m.available < debit:
            raise InsufficientPoints(details={"available": m.available, "requested": debit})
        return _post(
            lot_changes=_spent(_pick_lots(m, debit)),
            member=m, kind=PostingKind.ADJUST, source=source, now=now, points=points, reason=reason, spend=debit,
            idempotency_key=idempotency_key, entries=[(A.AVAILABLE, -debit, m), (A.ADJUSTMENTS, debit, None)],
        )


def rolling_spend(*, now: datetime, member_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Money paid over the tier window per live member (earnings minus refunds), merged members folded in."""
    since = now - conf.tier_window()
    rows = Posting.objects.filter(created_at__gt=since, created_at__lte=now, kind__in=[PostingKind.EARN, PostingKind.REVERSE])
    if member_ids is not None:
        ids = list(member_ids)
        rows = rows.filter(Q(member_id__in=ids) | Q(member__merged_into_id__in=ids))
    spend: dict[int, int] = defaultdict(int)
    for member_id, merged_into_id, kind, amount in rows.values_list("member_id", "member__merged_into_id", "kind", "amount_vnd"):
        root = merged_into_id or member_id
        spend[root] += amount if kind == PostingKind.EARN else -amount
    return dict(spend)


def recompute_tiers(*, now: datetime | None = None, member_ids: Iterable[int] | None = None) -> int:
    """Set each live member's tier from their rolling spend (periodic task). Returns how many members changed."""
    now = now or timezone.now()
    ids = list(member_ids) if member_ids is not None else None
    spend = rolling_spend(now=now, member_ids=ids)
    members = Member.objects.filter(merged_into__isnull=True)
    if ids is not None:
        members = members.filter(pk__in=ids)
    changed = 0
    for pk, tier, old_spend in members.values_list("pk", "tier", "spend_12m_vnd").iterator(chunk_size=2000):
        amount = max(0, spend.get(pk, 0))
        new_tier = conf.tier_for_spend(amount).code
        if new_tier != tier or amount != old_spend:
            Member.objects.filter(pk=pk).update(tier=new_tier, spend_12m_vnd=amount, tier_computed_at=now)
            changed += new_tier != tier
    return changed


def expire_and_vest(*, now: datetime | None = None) -> dict[str, int]:
    """Everything time-driven, in a safe order (for the demo and tests)."""
    now = now or timezone.now()
    return {
        "holds_voided": void_expired_holds(now=now),
        "vested": vest_pending(now=now),
        "expired": expire_lots(now=now),
    }
