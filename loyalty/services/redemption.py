"""Spending points: checkout holds (hold, capture, void, expiry of holds), redemption at the till, and refunds of
redeemed points for returned goods."""

import math
from datetime import datetime

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from loyalty import conf
from loyalty.exceptions import (
    InsufficientPoints,
    InvalidAmount,
    NothingToReverse,
    PostingNotFound,
    RedemptionMemberMismatch,
    RedemptionNotHeld,
)
from loyalty.fast_paths import lock_hold as _lock_hold
from loyalty.models import Member, Posting, PostingKind, RedemptionHold
from loyalty.services.ledger import (
    A,
    HoldClose,
    NewHold,
    NewLot,
    PostingSource,
    _first_or,
    _fraction,
    _lock_member,
    _lock_member_to_spend,
    _pick_lots,
    _positive_int,
    _post,
    _replay,
    _root_id,
    _spent,
)
from o2o.domain_errors import InvalidInput


def hold_redemption(
    *,
    member: Member,
    points: int,
    source: PostingSource,
    idempotency_key: str,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> RedemptionHold:
    """Set points aside at checkout (oldest lots first) until `expires_at` (default LOYALTY_HOLD_TTL_SECONDS).
    Capture it when the order is placed, void it on cancel; an expired hold is voided by the periodic task and
    can no longer be captured. Raises InsufficientPoints (409)."""
    now = now or timezone.now()
    points = _positive_int(points, "points")
    expires_at = expires_at or now + conf.hold_ttl()
    if expires_at <= now:
        raise InvalidInput("A hold must expire in the future.", details={"expires_at": expires_at.isoformat()})
    with transaction.atomic():
        m, page = _lock_member_to_spend(member)
        if m.available < points:
            refusal = InsufficientPoints(details={"available": m.available, "requested": points})
            return _first_or(idempotency_key, kind=PostingKind.HOLD, member=m, refusal=refusal).hold
        taken = _pick_lots(m, points, page=page)
        new_hold = NewHold(points=points, expires_at=expires_at, channel=source.channel, store=source.store,
                           reference=source.reference, allocations=taken)
        posting = _post(
            member=m, kind=PostingKind.HOLD, source=source, now=now, points=points,
            amount_vnd=points * conf.point_value_vnd(), idempotency_key=idempotency_key, spend=points,
            entries=[(A.AVAILABLE, -points, m), (A.HELD, points, m)], lot_changes=_spent(taken), new_hold=new_hold,
        )
        if posting is None:
            return _first_or(idempotency_key, kind=PostingKind.HOLD, member=m).hold
        return RedemptionHold(  # what was written, without reading it back
            pk=new_hold.pk, member=m, points=points, status=RedemptionHold.Status.HELD, expires_at=expires_at,
            channel=source.channel[:64], store=source.store[:64], reference=source.reference[:120], created_at=now,
        )


def _hold_posting(hold: RedemptionHold | int, kind: str) -> Posting | None:
    hold_id = hold.pk if isinstance(hold, RedemptionHold) else hold
    return Posting.objects.filter(hold_id=hold_id, kind=kind).order_by("id").first()



def capture_redemption(
    *, hold: RedemptionHold | int, reference: str = "", source: PostingSource | None = None,
    member: Member | None = None, now: datetime | None = None,
) -> Posting:
    """Spend held points (the order was placed). Capturing a captured hold again with the same reference (or none)
    returns the first capture posting; with another reference it is refused: those points already paid for
    something else. Raises RedemptionNotHeld (409) for a voided or expired hold, RedemptionMemberMismatch (422)
    when `member` is given and the hold is someone else's."""
    now = now or timezone.now()
    hold_id = hold.pk if isinstance(hold, RedemptionHold) else hold
    with transaction.atomic():
        m, h, _ = _lock_hold(hold_id)
        for fresh in (False, True):
            if fresh:
                m, h, _ = _lock_hold(hold_id, fresh=True)
            if member is not None and m.pk != member.pk and _root_id(member.pk) != m.pk:
                raise RedemptionMemberMismatch(details={"id": h.pk})
            if h.status == RedemptionHold.Status.CAPTURED:
                first = _hold_posting(h, PostingKind.CAPTURE)
                if reference and first.reference != reference[:120]:
                    raise RedemptionNotHeld(
                        "This redemption was already captured for another reference.",
                        details={"id": h.pk, "status": h.status, "reference": first.reference},
                    )
                return first
            if h.status != RedemptionHold.Status.HELD or h.expires_at <= now:
                raise RedemptionNotHeld(
                    details={"id": h.pk, "status": "expired" if h.status == RedemptionHold.Status.HELD else h.status}
                )
            src = source or PostingSource(channel=h.channel, store=h.store)
            ref = reference or src.reference or h.reference
            src = PostingSource(channel=src.channel or h.channel, store=src.store or h.store, reference=ref,
                                actor=src.actor)
            posting = _post(
                member=m, kind=PostingKind.CAPTURE, source=src, now=now, points=h.points,
                amount_vnd=h.points * conf.point_value_vnd(), hold=h.pk,
                entries=[(A.HELD, -h.points, m), (A.REDEEMED, h.points, None)],
                close_hold=HoldClose(hold_id=h.pk, status=RedemptionHold.Status.CAPTURED, reference=ref),
            )
            if posting is not None:
                return posting
        raise AssertionError(f"hold {hold_id} changed under its member's lock")


def _void_locked(m: Member, h: RedemptionHold, allocations: list[tuple[int, int]], *, reason: str, actor: str,
                 now: datetime) -> bool:
    """Give a held hold's points back to the lots they came from. False if the hold was no longer held."""
    posting = _post(
        member=m, kind=PostingKind.VOID, now=now, points=h.points, amount_vnd=h.points * conf.point_value_vnd(),
        hold=h.pk, source=PostingSource(channel=h.channel, store=h.store, reference=h.reference, actor=actor),
        reason=reason, entries=[(A.HELD, -h.points, m), (A.AVAILABLE, h.points, m)], lot_changes=allocations,
        close_hold=HoldClose(hold_id=h.pk, status=RedemptionHold.Status.VOIDED, void_reason=reason),
    )
    if posting is None:
        return False
    h.status, h.closed_at, h.void_reason = RedemptionHold.Status.VOIDED, now, reason[:32]
    return True


def void_redemption(
    *, hold: RedemptionHold | int, reason: str = "cancelled", actor: str = "", now: datetime | None = None
) -> RedemptionHold:
    """Give held points back to the lots they came from (cancel). Voiding a voided hold changes nothing.
    Raises RedemptionNotHeld for a captured hold (use refund_redemption)."""
    now = now or timezone.now()
    hold_id = hold.pk if isinstance(hold, RedemptionHold) else hold
    with transaction.atomic():
        for fresh in (False, True):
            m, h, allocations = _lock_hold(hold_id, fresh=fresh)
            if h.status == RedemptionHold.Status.CAPTURED:
                raise RedemptionNotHeld("A captured redemption cannot be voided; refund it.",
                                        details={"id": h.pk, "status": h.status})
            if h.status != RedemptionHold.Status.HELD or _void_locked(m, h, allocations, reason=reason, actor=actor,
                                                                       now=now):
                return h
        raise AssertionError(f"hold {hold_id} changed under its member's lock")


def void_expired_holds(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Void holds whose time ran out (periodic task). Returns how many were voided."""
    now = now or timezone.now()
    ids = list(
        RedemptionHold.objects.filter(status=RedemptionHold.Status.HELD, expires_at__lte=now)
        .order_by("expires_at").values_list("pk", flat=True)[:limit]
    )
    count = 0
    for hold_id in ids:
        with transaction.atomic():
            m, h, allocations = _lock_hold(hold_id, fresh=True)
            if h.status == RedemptionHold.Status.HELD and h.expires_at <= now:
                count += _void_locked(m, h, allocations, reason="expired", actor="system", now=now)
    return count


def redeem_points(
    *, member: Member, points: int, source: PostingSource, idempotency_key: str, now: datetime | None = None
) -> Posting:
    """Spend points at once (a till sale paid partly with points). Raises InsufficientPoints (409)."""
    return _spend_now(member=member, points=points, source=source, idempotency_key=idempotency_key, now=now,
                      kind=PostingKind.REDEEM)


def buy_voucher(
    *, member: Member, points: int, source: PostingSource, idempotency_key: str, now: datetime | None = None
) -> Posting:
    """Spend points on a voucher (orders.pricing issues its code, `source.reference` names it): available →
    redeemed at once, a kind of its own so that the ledger tells vouchers from till redemptions. Raises
    InsufficientPoints (409); a replayed key returns the first posting."""
    return _spend_now(member=member, points=points, source=source, idempotency_key=idempotency_key, now=now,
                      kind=PostingKind.VOUCHER)


def _spend_now(
    *, member: Member, points: int, source: PostingSource, idempotency_key: str, now: datetime | None, kind: str
) -> Posting:
    now = now or timezone.now()
    points = _positive_int(points, "points")
    with transaction.atomic():
        m, page = _lock_member_to_spend(member)
        if m.available < points:
            refusal = InsufficientPoints(details={"available": m.available, "requested": points})
            return _first_or(idempotency_key, kind=kind, member=m, refusal=refusal)
        posting = _post(
            member=m, kind=kind, source=source, now=now, points=points,
            amount_vnd=points * conf.point_value_vnd(), idempotency_key=idempotency_key, spend=points,
            entries=[(A.AVAILABLE, -points, m), (A.REDEEMED, points, None)],
            lot_changes=_spent(_pick_lots(m, points, page=page)),
        )
        return posting or _first_or(idempotency_key, kind=kind, member=m)


def refund_redemption(
    *,
    redemption: Posting | RedemptionHold | int,
    source: PostingSource,
    idempotency_key: str,
    fraction=None,
    points: int | None = None,
    now: datetime | None = None,
) -> Posting:
    """Give back points spent on returned goods, as a new lot with a fresh expiry. `redemption` is a capture or
    till-redeem posting (or its id), or a captured hold. `fraction` of it (rounded up) or `points`, never more than
    is left to give back. Raises NothingToReverse when it has been given back in full."""
    now = now or timezone.now()
    if (fraction is None) == (points is None):
        raise InvalidAmount("Give either a fraction or points.")
    if points is not None:
        _positive_int(points, "points")
    frac = _fraction(fraction) if fraction is not None else None
    with transaction.atomic():
        if isinstance(redemption, RedemptionHold):
            original = Posting.objects.filter(hold_id=redemption.pk, kind=PostingKind.CAPTURE).first()
        else:
            posting_id = redemption.pk if isinstance(redemption, Posting) else redemption
            original = Posting.objects.filter(pk=posting_id, kind__in=[PostingKind.CAPTURE, PostingKind.REDEEM]).first()
        if original is None:
            raise PostingNotFound("No captured redemption to refund.", details={"redemption": str(redemption)})
        m = _lock_member(original.member_id)
        first = _replay(idempotency_key, kind=PostingKind.REFUND, member=m)
        if first is not None:
            return first
        given = original.corrections.filter(kind=PostingKind.REFUND).aggregate(n=Sum("points", default=0))["n"]
        left = original.points - given
        if left <= 0:
            raise NothingToReverse(details={"redemption": original.pk})
        wanted = math.ceil(original.points * frac) if frac is not None else points
        n = min(wanted, left)
        return _post(
            member=m, kind=PostingKind.REFUND, source=source, now=now, points=n,
            amount_vnd=n * conf.point_value_vnd(), idempotency_key=idempotency_key, original=original,
            entries=[(A.REDEEMED, -n, None), (A.AVAILABLE, n, m)], new_lot=NewLot(points=n, earned_at=now),
        )
