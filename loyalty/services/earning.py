"""Earning points and taking them back: the points an amount paid earns, earnings (pending until their return
window closes for online orders), vesting, and reversals for returned or cancelled goods."""

import math
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from django.db import transaction
from django.utils import timezone

from loyalty import conf, fast_paths
from loyalty.exceptions import InvalidAmount, NothingToReverse
from loyalty.models import Lot, Member, Posting, PostingKind
from loyalty.services.ledger import (
    SYSTEM,
    A,
    NewLot,
    PostingSource,
    _first_or,
    _fraction,
    _lock_member,
    _non_negative_int,
    _pick_lots,
    _positive_int,
    _post,
    _replay,
    _settle,
    _spent,
)


def points_for(*, amount_paid_vnd: int, tier_code: str) -> int:
    """Points earned on an amount paid with money, at a tier's multiplier (rounded down)."""
    multiplier = conf.tier_by_code(tier_code).multiplier
    return int((Decimal(amount_paid_vnd) * multiplier / conf.earn_vnd_per_point()).to_integral_value(ROUND_FLOOR))



def earn_points(
    *,
    member: Member,
    amount_paid_vnd: int,
    source: PostingSource,
    idempotency_key: str,
    vest_at: datetime | None = None,
    now: datetime | None = None,
) -> Posting:
    """Grant points for a completed order or sale. `amount_paid_vnd` is the part paid with money (not points).

    With `vest_at` in the future the points are pending until then. Points that become available first settle any
    shortfall. An amount too small for a point still records a posting (without entries): it counts as spend for
    the tier. Replays return the first posting."""
    now = now or timezone.now()
    amount = _non_negative_int(amount_paid_vnd, "amount_paid_vnd")
    with transaction.atomic():
        m = _lock_member(member)
        points = points_for(amount_paid_vnd=amount, tier_code=m.tier)
        pending = vest_at is not None and vest_at > now
        if pending:
            entries = [(A.ISSUED, -points, None), (A.PENDING, points, m)]
            settle = 0
        else:
            settle = _settle(m, points)
            entries = [(A.ISSUED, -points, None), (A.AVAILABLE, points - settle, m), (A.SHORTFALL, settle, m)]
        posting = _post(
            member=m, kind=PostingKind.EARN, entries=entries, source=source, now=now, points=points,
            amount_vnd=amount, idempotency_key=idempotency_key,
            reason=f"settled shortfall {settle}" if settle else "",
            new_lot=NewLot(points=points - settle, earned_at=now, vest_at=vest_at if pending else None),
        )
        return posting or _first_or(idempotency_key, kind=PostingKind.EARN, member=m)


def vest_pending(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Vest pending lots whose return window has closed (periodic task). Returns the number of postings."""
    now = now or timezone.now()
    member_ids = list(
        Lot.objects.filter(vested=False, vest_at__lte=now).order_by("member_id").values_list("member_id", flat=True)
        .distinct()[:limit]
    )
    done = 0
    for member_id in member_ids:
        with transaction.atomic():
            m = _lock_member(member_id)
            lots = list(Lot.objects.filter(member=m, vested=False, vest_at__lte=now).order_by("expires_at", "id"))
            total = sum(lot.remaining for lot in lots)
            settle = _settle(m, total)
            left = settle
            for lot in lots:
                n = min(left, lot.remaining)
                lot.remaining -= n
                left -= n
                lot.vested = True
            Lot.objects.bulk_update(lots, ["remaining", "vested"])
            if total:
                _post(
                    member=m, kind=PostingKind.VEST, source=SYSTEM, now=now, points=total,
                    entries=[(A.PENDING, -total, m), (A.AVAILABLE, total - settle, m), (A.SHORTFALL, settle, m)],
                    reason=f"settled shortfall {settle}" if settle else "",
                )
                done += 1
    return done


def reverse_earning(
    *,
    earning: Posting | int,
    source: PostingSource,
    idempotency_key: str,
    fraction=None,
    points: int | None = None,
    amount_vnd: int | None = None,
    now: datetime | None = None,
) -> Posting:
    """Take back points earned on returned or cancelled goods: `fraction` of the earning (rounded down) or
    `points`, never more than is left to reverse. `amount_vnd` is the money refunded (it comes off the tier spend;
    by default the same fraction of the earning's amount).

    Points come back from the earning's own pending or vested lot first, then the member's other lots (oldest
    first); what the member has already spent is recorded as a shortfall, settled from future earnings, so the
    balance never goes below zero. Raises NothingToReverse when the earning has been reversed in full."""
    now = now or timezone.now()
    if (fraction is None) == (points is None):
        raise InvalidAmount("Give either a fraction or points.")
    if points is not None:
        _positive_int(points, "points")
    if amount_vnd is not None:
        _non_negative_int(amount_vnd, "amount_vnd")
    frac = _fraction(fraction) if fraction is not None else None
    earning_id = earning.pk if isinstance(earning, Posting) else earning
    with transaction.atomic():
        m, original, state = fast_paths.lock_earning(earning_id, idempotency_key)
        if state.replayed:
            first = _replay(idempotency_key, kind=PostingKind.REVERSE, member=m)
            if first is not None:
                return first
        points_left = original.points - state.reversed_points
        amount_left = original.amount_vnd - state.reversed_amount
        if points_left <= 0 and amount_left <= 0:
            raise NothingToReverse(details={"earning": original.pk})
        wanted = math.floor(original.points * frac) if frac is not None else points
        n = max(0, min(wanted, points_left))
        money = amount_vnd if amount_vnd is not None else (math.floor(original.amount_vnd * frac) if frac else 0)
        money = max(0, min(money, amount_left))

        own_lot = state.own_lot
        from_pending = 0
        lot_changes = []
        if own_lot is not None and not own_lot.vested:
            from_pending = min(n, own_lot.remaining)
            lot_changes.append((own_lot.pk, -from_pending))
        from_available = min(n - from_pending, m.available)
        if from_available:
            vested_own = own_lot if own_lot is not None and own_lot.vested else None
            lot_changes += _spent(_pick_lots(m, from_available, first=vested_own, page=state.lots_page))
        shortfall = n - from_pending - from_available
        posting = _post(
            lot_changes=lot_changes,
            member=m, kind=PostingKind.REVERSE, source=source, now=now, points=n, amount_vnd=money,
            idempotency_key=idempotency_key, original=original,
            entries=[(A.ISSUED, n, None), (A.PENDING, -from_pending, m), (A.AVAILABLE, -from_available, m),
                     (A.SHORTFALL, -shortfall, m)],
            reason=f"shortfall {shortfall}" if shortfall else "",
        )
        return posting or _first_or(idempotency_key, kind=PostingKind.REVERSE, member=m)
