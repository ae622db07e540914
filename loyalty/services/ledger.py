"""The posting machinery every loyalty action shares: where a posting comes from (PostingSource), the member's row
lock, idempotent replays, the one function that writes a balanced posting (_post), and which lots a spend takes.

The PostgreSQL statements behind the lock and the posting live beside their ORM twins in loyalty/fast_paths.py.
"""

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from django.utils import timezone

from loyalty import conf, fast_paths
from loyalty.exceptions import IdempotencyKeyConflict, InvalidAmount
from loyalty.fast_paths import LOTS_PAGE, POINTS_CHANGED, HoldClose, NewHold, NewLot
from loyalty.models import Account, Lot, Member, Posting, RedemptionHold

A = Account
_LOTS_PAGE = LOTS_PAGE  # the tests size their data by it


@dataclass(frozen=True)
class PostingSource:
    """Where a posting comes from. Plain strings so that loyalty depends on no other app."""

    channel: str = ""  # sales channel code ("website", "app") or "pos"
    store: str = ""  # store code, for till sales and returns in store
    reference: str = ""  # order or receipt reference
    actor: str = ""  # who asked: "channel:website", "pos:HCM-0001", a staff username, "system"


SYSTEM = PostingSource(actor="system")


# --- small helpers --------------------------------------------------------------------------------------------------


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidAmount(details={name: value})
    return value


def _non_negative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidAmount(details={name: value})
    return value


def _fraction(value) -> Fraction:
    try:
        frac = Fraction(str(value)) if not isinstance(value, Fraction) else value
    except (ValueError, ZeroDivisionError) as exc:
        raise InvalidAmount(details={"fraction": str(value)}) from exc
    if not 0 < frac <= 1:
        raise InvalidAmount("A fraction must be more than 0 and at most 1.", details={"fraction": str(value)})
    return frac


def lot_expiry(earned_at: datetime) -> datetime:
    """Points earned in a month expire together: at the start of the month after LOYALTY_EXPIRY_MONTHS months."""
    local = timezone.localtime(earned_at)
    month_index = local.year * 12 + (local.month - 1) + conf.expiry_months() + 1
    year, month = divmod(month_index, 12)
    return local.replace(year=year, month=month + 1, day=1, hour=0, minute=0, second=0, microsecond=0)


def _root_id(member_id: int) -> int:
    """The member that holds the history of `member_id` (itself unless it was merged). Merges flatten chains."""
    merged_into = Member.objects.filter(pk=member_id).values_list("merged_into_id", flat=True).first()
    return merged_into or member_id


# --- the member lock ------------------------------------------------------------------------------------------------


def _lock_member(member: Member | int) -> Member:
    """Lock the live member behind `member` (following a merge) and return its counters fresh from the database (a
    partial instance: never saved). Every action takes it first: it serialises all writes to one member."""
    return fast_paths.lock_member(member)


def _lock_member_to_spend(member: Member | int) -> tuple[Member, list[tuple[int, int]] | None]:
    """`_lock_member`, plus (PostgreSQL) the first page of the lots a spend takes, read in the same statement.
    Returns (member, lots page or None when not read here: `_pick_lots` then reads it)."""
    return fast_paths.lock_member_to_spend(member)


# --- idempotency ----------------------------------------------------------------------------------------------------


def _replay(key: str | None, *, kind: str, member: Member) -> Posting | None:
    """The posting already made with this idempotency key, if any (checked under the member lock)."""
    if not key:
        return None
    with fast_paths.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {Posting._meta.db_table} WHERE idempotency_key = %s", [key])
        if cursor.fetchone() is None:
            return None
    first = Posting.objects.get(idempotency_key=key)
    same_member = first.member_id == member.pk or _root_id(first.member_id) == member.pk
    if first.kind != kind or not same_member:
        raise IdempotencyKeyConflict(details={"idempotency_key": key, "first_kind": first.kind})
    return first


def _first_or(key: str | None, *, kind: str, member: Member, refusal: Exception | None = None) -> Posting:
    """The posting a replayed key made first; when there is none, raise `refusal` (the action was refused on its own
    merits) or fail loudly (the posting said the key was taken)."""
    first = _replay(key, kind=kind, member=member)
    if first is not None:
        return first
    if refusal is not None:
        raise refusal
    raise AssertionError(f"idempotency key {key!r} reported taken but not found")


# --- the posting ----------------------------------------------------------------------------------------------------


def _post(
    *,
    member: Member,
    kind: str,
    entries: Iterable[tuple[str, int, Member | None]],
    source: PostingSource,
    now: datetime,
    points: int = 0,
    amount_vnd: int = 0,
    idempotency_key: str | None = None,
    original: Posting | None = None,
    hold: RedemptionHold | int | None = None,
    reason: str = "",
    spend: int = 0,
    lot_changes: Iterable[tuple[int, int]] = (),
    new_lot: NewLot | None = None,
    new_hold: NewHold | None = None,
    close_hold: HoldClose | None = None,
) -> Posting | None:
    """Write one balanced posting with everything that goes with it, under the member's row lock: its entries, the
    members' counters, the lots it spends or gives back (`lot_changes`: lot id, signed change of `remaining`), the
    lot it credits, the hold it opens or closes, and one "points.changed" outbox event per member whose balance
    changed, carrying the new balance.

    Returns None, having written nothing, when `idempotency_key` was already used (the caller replays the first
    posting) or when `close_hold`'s hold is no longer held (the caller re-reads it). `entries` are (account, signed
    amount, member or None for system accounts); zero amounts are dropped. `spend` > 0 makes the counter update
    conditional on `available >= spend` (defence in depth under the row lock).

    On PostgreSQL, for one member, all of it is one statement (data-modifying CTEs), the hot path of every till
    and checkout; otherwise (SQLite demo, merges) the same rows are written through the ORM:
    fast_paths.write_posting."""
    lines = [(account, amount, who) for account, amount, who in entries if amount]
    if sum(amount for _, amount, _ in lines) != 0:
        raise AssertionError(f"unbalanced posting {kind}: {lines}")
    hold_id = hold.pk if isinstance(hold, RedemptionHold) else hold
    fields = {
        "kind": str(kind), "member_id": member.pk, "points": points, "amount_vnd": amount_vnd,
        "channel": source.channel[:64], "store": source.store[:64], "reference": source.reference[:120],
        "actor": source.actor[:150], "reason": reason[:300], "idempotency_key": idempotency_key or None,
        "original_id": original.pk if original else None, "hold_id": hold_id, "created_at": now,
    }
    deltas: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for account, amount, who in lines:
        if who is None:
            continue
        if account == A.SHORTFALL:
            deltas[who.pk]["shortfall"] -= amount  # the counter is what is owed: minus the account's balance
        else:
            deltas[who.pk][str(account)] += amount
    lot_changes = [(lot_id, change) for lot_id, change in lot_changes if change]
    if new_lot is not None:
        new_lot = dataclasses.replace(new_lot, expires_at=lot_expiry(new_lot.earned_at)) if new_lot.points > 0 else None
    return fast_paths.write_posting(fields, lines, deltas, member=member, spend=spend, now=now,
                                    lot_changes=lot_changes, new_lot=new_lot, new_hold=new_hold, close_hold=close_hold)


# --- spending -------------------------------------------------------------------------------------------------------


def _pick_lots(member: Member, points: int, *, first: Lot | None = None,
               page: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """Which vested lots `points` come out of: `first` first, then oldest expiry first. The member row must be
    locked (it guards the lots). `page`: the first `LOTS_PAGE` of those lots (excluding `first`), already read
    under the lock. Returns (lot id, points) pairs; the posting applies them. Raw SQL (any database): every spend."""
    taken: list[tuple[int, int]] = []
    left = points
    if first is not None and first.vested and first.remaining > 0:
        n = min(left, first.remaining)
        taken.append((first.pk, n))
        left -= n
    offset, batch = 0, LOTS_PAGE
    while left > 0:
        if offset == 0 and page is not None:
            rows = page
        else:
            with fast_paths.cursor() as cursor:
                cursor.execute(
                    f"SELECT id, remaining FROM {Lot._meta.db_table} WHERE member_id = %s AND vested AND remaining > 0 "
                    "AND id <> %s ORDER BY expires_at, id LIMIT %s OFFSET %s",
                    [member.pk, first.pk if first is not None else 0, batch, offset],
                )
                rows = cursor.fetchall()
        if not rows:
            raise AssertionError(f"member {member.pk}: lots hold less than the available counter")
        for lot_id, remaining in rows:
            if left <= 0:
                break
            n = min(left, remaining)
            taken.append((lot_id, n))
            left -= n
        offset += batch
        batch = 500
    return taken


def _spent(taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(lot_id, -n) for lot_id, n in taken]


def _settle(member: Member, points: int) -> int:
    """How much of `points` becoming available settles the member's shortfall."""
    return min(points, member.shortfall)


__all__ = ["POINTS_CHANGED", "SYSTEM", "PostingSource", "lot_expiry"]
