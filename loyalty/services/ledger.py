"""Every write to the loyalty ledger. Nothing else in the project changes Member counters, Posting, Entry, Lot,
RedemptionHold or HoldAllocation rows.

How to call it (orders, POS, returns):
    * Services are plain functions with keyword-only arguments. Each opens a plain `transaction.atomic()`, so it
      joins the caller's transaction: a POS receipt applies stock and points together, or neither.
    * Every posting names its source (`PostingSource`: channel code, store code, order/receipt reference, actor)
      as plain strings: loyalty imports nothing from orders or inventory.
    * Every action a client may retry takes an `idempotency_key` (unique across the ledger; prefix it with your
      scope, e.g. "pos:HCM-0001:R-123:earn"). A replay returns the first result and posts nothing; the same key
      for a different action or member raises IdempotencyKeyConflict (422).

Events: every posting that changes a member's balance writes one "points.changed" outbox event with the new
balance, in the same transaction (on PostgreSQL in the posting's own statement).

Concurrency: every action first locks the member's row (SELECT ... FOR UPDATE), which serialises all writes to one
member's counters, lots and holds; merges lock both members in primary-key order. Counters change in the database
(F expressions; the spend path uses a conditional `UPDATE ... WHERE available >= n`), and CHECK constraints refuse
a negative counter, so the balance available to spend is never negative whatever the concurrency.

Policies:
    * Earning: floor(amount paid with money × tier multiplier / LOYALTY_EARN_VND_PER_POINT). Pass `vest_at` for
      online orders (`conf.online_vest_at(now)`): the points are pending until then, `vest_pending` vests them.
    * Spending takes the oldest lots first (earliest expiry). Lots expire at the start of the month after
      LOYALTY_EXPIRY_MONTHS months from the month they were earned; `expire_lots` posts it.
    * Reversal (returns, cancellations): the earning's own points are taken back first (from pending if they have
      not vested, else from its lot, then other lots oldest first). What the member has already spent becomes a
      *shortfall*: the balance never goes below zero; the shortfall is settled from the next points that become
      available by earning or vesting (not by refunds or manual adjustments). `fraction` is rounded down.
    * Refund of redeemed points (returned goods paid with points): given back as a new lot with a fresh expiry,
      never more than was redeemed; `fraction` is rounded up (the customer gets the rounding).
"""

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from loyalty import conf
from loyalty.exceptions import (
    IdempotencyKeyConflict,
    InsufficientPoints,
    InvalidAmount,
    InvalidMerge,
    NothingToReverse,
    PostingNotFound,
    RedemptionMemberMismatch,
    RedemptionNotFound,
    RedemptionNotHeld,
)
from loyalty.models import Account, Entry, HoldAllocation, Lot, Member, Posting, PostingKind, RedemptionHold
from loyalty.phones import normalize_phone
from o2o import outbox, prepared
from o2o.domain_errors import InvalidInput
from o2o.models import OutboxEvent, SalesChannel

A = Account
POINTS_CHANGED = "points.changed"  # outbox topic, aggregate "member:<id>", written with every balance change


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


def points_for(*, amount_paid_vnd: int, tier_code: str) -> int:
    """Points earned on an amount paid with money, at a tier's multiplier (rounded down)."""
    multiplier = conf.tier_by_code(tier_code).multiplier
    return int((Decimal(amount_paid_vnd) * multiplier / conf.earn_vnd_per_point()).to_integral_value(ROUND_FLOOR))


def _root_id(member_id: int) -> int:
    """The member that holds the history of `member_id` (itself unless it was merged). Merges flatten chains."""
    merged_into = Member.objects.filter(pk=member_id).values_list("merged_into_id", flat=True).first()
    return merged_into or member_id


_MEMBER_COLUMNS = ("id", "phone", "tier", "available", "held", "pending", "shortfall", "merged_into_id")


def _cursor():
    """The cursor for the hot path's raw SQL: prepared statements on PostgreSQL (LOYALTY_PREPARED_STATEMENTS, on by
    default; turn it off behind a pooler that cannot keep them), else Django's. Without really prepared statements
    every posting's statements were parsed and planned anew (~1.4 ms of PostgreSQL CPU per posting)."""
    if connection.vendor == "postgresql" and conf.prepared_statements():
        return prepared.connection_cursor()
    return connection.cursor()


_M = Member._meta.db_table

# Appended to the select list of every statement that takes the member lock (PostgreSQL): the posting statement
# after it is then planned once per connection, not on every execution. PostgreSQL keeps re-planning a prepared
# statement whose generic plan looks dearer than its custom plans, and the posting statements' does: it cannot know
# that their UNNEST arrays hold two or three items. Every prepared statement here looks rows up by primary or foreign
# key, so generic plans are right for them. SET LOCAL: until the end of this transaction only, and set again by every
# transaction that locks a member (a rolled-back one takes it along), at no extra round trip.
_GENERIC_PLANS = "set_config('plan_cache_mode', 'force_generic_plan', true)"


def _locked_row(cursor) -> tuple | None:
    """The row of a lock statement, without its trailing _GENERIC_PLANS column."""
    row = cursor.fetchone()
    return row[:-1] if row is not None else None


def _lock_member(member: Member | int) -> Member:
    """Lock the live member behind `member` (following a merge) and return its counters fresh from the database (a
    partial instance: never saved). Locking a merged member's row on the way is harmless: nothing writes to it."""
    member_id = member.pk if isinstance(member, Member) else member
    with _cursor() as cursor:
        for _ in range(5):
            if connection.vendor == "postgresql":
                cursor.execute(
                    f"SELECT {', '.join(_MEMBER_COLUMNS)}, {_GENERIC_PLANS} FROM {_M} WHERE id = %s FOR UPDATE",
                    [member_id],
                )
                row = _locked_row(cursor)
            else:  # the SQLite demo: its transactions are IMMEDIATE, one writer at a time
                cursor.execute(f"SELECT {', '.join(_MEMBER_COLUMNS)} FROM {_M} WHERE id = %s", [member_id])
                row = cursor.fetchone()
            if row is None:
                raise Member.DoesNotExist(f"member {member_id}")
            locked = Member(**dict(zip(_MEMBER_COLUMNS, row, strict=True)))
            if locked.merged_into_id is None:
                return locked
            member_id = locked.merged_into_id
    raise InvalidMerge("Member merge chain too deep.", details={"member_id": member_id})


_LOTS_PAGE = 8  # lots read with the lock: enough for nearly every spend; _pick_lots reads on if not
# Whether the member row the lock returns is the version the statement's snapshot saw. The locked columns are always
# the newest version (PostgreSQL re-reads a row updated while we waited for its lock), but everything else in the
# statement (lots, postings) comes from the snapshot taken before the wait. Every change to a member's lots or
# postings is made under that member's lock by a transaction that also updates the member row (its counters), so a
# row unchanged since the snapshot proves those reads current. When it did change (rare: another posting for the same
# member committed while we waited), the caller runs the statement again: the lock is ours, the reads are then fresh.
_CURRENT = f"m.xmin = (SELECT s.xmin FROM {_M} s WHERE s.id = m.id)"


def _lots_page_sql(member: str, exclude: str) -> str:
    """The first `_LOTS_PAGE` lots `_pick_lots` would read, as an array of [id, remaining] (NULL when none)."""
    return (
        "(SELECT array_agg(ARRAY[l.id, l.remaining] ORDER BY l.expires_at, l.id) FROM (SELECT id, remaining, "
        f"expires_at FROM {Lot._meta.db_table} WHERE member_id = {member} AND vested AND remaining > 0 "
        f"AND id <> {exclude} ORDER BY expires_at, id LIMIT {_LOTS_PAGE}) l)"
    )


def _lock_member_to_spend(member: Member | int) -> tuple[Member, list[tuple[int, int]] | None]:
    """`_lock_member`, plus on PostgreSQL the first page of the lots a spend takes (oldest first) in the same
    statement, proven current (see _CURRENT). Returns (member, lots page or None when not read here)."""
    if connection.vendor != "postgresql":
        return _lock_member(member), None
    member_id = member.pk if isinstance(member, Member) else member
    cols = ", ".join(f"m.{c}" for c in _MEMBER_COLUMNS)
    with _cursor() as cursor:
        for _ in range(6):
            cursor.execute(
                f"SELECT {cols}, {_CURRENT}, {_lots_page_sql('m.id', '0')}, {_GENERIC_PLANS} FROM {_M} m "
                "WHERE m.id = %s FOR UPDATE",
                [member_id],
            )
            row = _locked_row(cursor)
            if row is None:
                raise Member.DoesNotExist(f"member {member_id}")
            locked = Member(**dict(zip(_MEMBER_COLUMNS, row[: len(_MEMBER_COLUMNS)], strict=True)))
            if locked.merged_into_id is not None:
                member_id = locked.merged_into_id
            elif row[-2]:
                return locked, [(lot, n) for lot, n in (row[-1] or [])]
    raise InvalidMerge("Member merge chain too deep.", details={"member_id": member_id})


def _replay(key: str | None, *, kind: str, member: Member) -> Posting | None:
    """The posting already made with this idempotency key, if any (checked under the member lock)."""
    if not key:
        return None
    with _cursor() as cursor:
        cursor.execute(f"SELECT id FROM {Posting._meta.db_table} WHERE idempotency_key = %s", [key])
        if cursor.fetchone() is None:
            return None
    first = Posting.objects.get(idempotency_key=key)
    same_member = first.member_id == member.pk or _root_id(first.member_id) == member.pk
    if first.kind != kind or not same_member:
        raise IdempotencyKeyConflict(details={"idempotency_key": key, "first_kind": first.kind})
    return first


@dataclass
class NewLot:
    """A lot the posting credits (earning, refund, positive adjustment): its points vest at `vest_at` (None: now)."""

    points: int
    earned_at: datetime
    vest_at: datetime | None = None


@dataclass
class NewHold:
    """The checkout hold a HOLD posting opens, with the lots it takes its points from."""

    points: int
    expires_at: datetime
    channel: str
    store: str
    reference: str
    allocations: list[tuple[int, int]]  # (lot id, points)
    pk: int | None = None  # set by _post


@dataclass
class HoldClose:
    """Capture or void of a hold, applied only if the hold is still held (the posting is written only then)."""

    hold_id: int
    status: str
    reference: str | None = None
    void_reason: str | None = None


def _first_or(key: str | None, *, kind: str, member: Member, refusal: Exception | None = None) -> Posting:
    """The posting a replayed key made first; when there is none, raise `refusal` (the action was refused on its own
    merits) or fail loudly (the posting said the key was taken)."""
    first = _replay(key, kind=kind, member=member)
    if first is not None:
        return first
    if refusal is not None:
        raise refusal
    raise AssertionError(f"idempotency key {key!r} reported taken but not found")


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
    and checkout; otherwise (SQLite demo, merges) the same rows are written through the ORM."""
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
    if new_lot is not None and new_lot.points <= 0:
        new_lot = None
    if connection.vendor == "postgresql" and set(deltas) <= {member.pk}:
        posting_id = _post_in_one_statement(
            fields, lines, deltas.get(member.pk, {}), spend=spend, now=now, lot_changes=lot_changes,
            new_lot=new_lot, new_hold=new_hold, close_hold=close_hold,
        )
        if posting_id is None:
            return None
        transaction.on_commit(outbox._kick_delivery)  # what emit() does after its insert
        if new_hold is not None:
            fields["hold_id"] = new_hold.pk
        return Posting(pk=posting_id, **fields)
    return _post_with_orm(fields, lines, deltas, member=member, spend=spend, now=now, lot_changes=lot_changes,
                          new_lot=new_lot, new_hold=new_hold, close_hold=close_hold)


def _post_with_orm(fields: dict, lines: list, deltas: dict, *, member: Member, spend: int, now: datetime,
                   lot_changes: list, new_lot: NewLot | None, new_hold: NewHold | None,
                   close_hold: HoldClose | None) -> Posting | None:
    key = fields["idempotency_key"]
    if key and Posting.objects.filter(idempotency_key=key).exists():
        return None
    if close_hold is not None:
        changes = {"status": close_hold.status, "closed_at": now}
        if close_hold.reference is not None:
            changes["reference"] = close_hold.reference[:120]
        if close_hold.void_reason is not None:
            changes["void_reason"] = close_hold.void_reason[:32]
        if RedemptionHold.objects.filter(pk=close_hold.hold_id, status=RedemptionHold.Status.HELD).update(**changes) != 1:
            return None
    if new_hold is not None:
        hold = RedemptionHold.objects.create(
            member_id=member.pk, points=new_hold.points, expires_at=new_hold.expires_at, channel=new_hold.channel[:64],
            store=new_hold.store[:64], reference=new_hold.reference[:120], created_at=now,
        )
        new_hold.pk = fields["hold_id"] = hold.pk
        HoldAllocation.objects.bulk_create(
            [HoldAllocation(hold_id=hold.pk, lot_id=lot_id, points=n) for lot_id, n in new_hold.allocations]
        )
    for lot_id, change in lot_changes:
        Lot.objects.filter(pk=lot_id).update(remaining=F("remaining") + change)
    posting = Posting.objects.create(**fields)
    if lines:
        Entry.objects.bulk_create(
            [Entry(posting=posting, member=who, account=account, amount=amount, created_at=now)
             for account, amount, who in lines]
        )
    events = []
    for member_id, changes in sorted(deltas.items()):
        updates = {field: F(field) + delta for field, delta in changes.items() if delta}
        if not updates:
            continue
        rows = Member.objects.filter(pk=member_id)
        if spend and member_id == member.pk:
            rows = rows.filter(available__gte=spend)
        if rows.update(**updates, updated_at=now) != 1:
            raise InsufficientPoints(details={"requested": spend})
        phone, *counters = Member.objects.filter(pk=member_id).values_list(
            "phone", "available", "held", "pending", "shortfall").get()
        events.append(_points_changed_event(member_id, phone, counters, posting))
    if new_lot is not None:
        Lot.objects.create(
            member_id=member.pk, posting=posting, points=new_lot.points, remaining=new_lot.points,
            earned_at=new_lot.earned_at, expires_at=lot_expiry(new_lot.earned_at), vested=new_lot.vest_at is None,
            vest_at=new_lot.vest_at,
        )
    if events:
        outbox.emit_many(events)
    return posting


def _points_changed_event(member_id: int, phone: str, counters: list[int], posting: Posting) -> dict:
    """The "points.changed" event (the same payload the one-statement path builds in SQL)."""
    available, held, pending, shortfall = counters
    return {
        "topic": POINTS_CHANGED,
        "aggregate": f"member:{member_id}",
        "channel": SalesChannel.objects.filter(code=conf.events_channel()).first(),
        "payload": {
            "member": phone, "posting": posting.pk, "kind": posting.kind, "points": posting.points,
            "channel": posting.channel, "store": posting.store, "reference": posting.reference,
            "balance": {"available": available, "held": held, "pending": pending, "shortfall": shortfall,
                        "total": available + held + pending - shortfall},
        },
    }


def _post_in_one_statement(
    fields: dict, lines: list, changes: dict[str, int], *, spend: int, now: datetime, lot_changes: list,
    new_lot: NewLot | None, new_hold: NewHold | None, close_hold: HoldClose | None,
) -> int | None:
    """The posting and everything that goes with it in one round trip (data-modifying CTEs always run to
    completion; each one after `p` writes only if the posting was written). The same rows the ORM path writes."""
    sql: list[str] = []
    params: list = []
    guards = []
    if new_hold is not None:
        sql.append(f"hid AS (SELECT nextval(pg_get_serial_sequence('{RedemptionHold._meta.db_table}', 'id')) AS id)")
    if close_hold is not None:
        sets = ["status = %s", "closed_at = %s"]
        params += [close_hold.status, now]
        if close_hold.reference is not None:
            sets.append("reference = %s")
            params.append(close_hold.reference[:120])
        if close_hold.void_reason is not None:
            sets.append("void_reason = %s")
            params.append(close_hold.void_reason[:32])
        sql.append(f"hc AS (UPDATE {RedemptionHold._meta.db_table} SET {', '.join(sets)} "
                   "WHERE id = %s AND status = 'held' RETURNING id)")
        params.append(close_hold.hold_id)
        guards.append("EXISTS (SELECT 1 FROM hc)")
    columns = [c for c in fields if not (new_hold is not None and c == "hold_id")]
    values = ["%s"] * len(columns)
    params += [fields[c] for c in columns]
    if new_hold is not None:
        columns.append("hold_id")
        values.append("(SELECT id FROM hid)")
    conflict = " ON CONFLICT (idempotency_key) DO NOTHING" if fields["idempotency_key"] else ""
    sql.append(
        f"p AS (INSERT INTO {Posting._meta.db_table} ({', '.join(columns)}) SELECT {', '.join(values)}"
        + (f" WHERE {' AND '.join(guards)}" if guards else "") + f"{conflict} RETURNING id)"
    )
    if new_hold is not None:
        sql.append(
            f"h AS (INSERT INTO {RedemptionHold._meta.db_table} (id, member_id, points, status, expires_at, channel, "
            "store, reference, void_reason, created_at) SELECT (SELECT id FROM hid), %s, %s, 'held', %s, %s, %s, %s, "
            "'', %s FROM p)"
        )
        params += [fields["member_id"], new_hold.points, new_hold.expires_at, new_hold.channel[:64],
                   new_hold.store[:64], new_hold.reference[:120], now]
        if new_hold.allocations:
            sql.append(
                f"a AS (INSERT INTO {HoldAllocation._meta.db_table} (hold_id, lot_id, points) "
                "SELECT (SELECT id FROM hid), v.lot, v.n FROM p, UNNEST(%s::bigint[], %s::bigint[]) AS v(lot, n))"
            )
            params += [[lot for lot, _ in new_hold.allocations], [n for _, n in new_hold.allocations]]
    lots = Lot._meta.db_table
    if lot_changes:
        sql.append(
            f"lc AS (UPDATE {lots} SET remaining = {lots}.remaining + v.d FROM p, "
            f"UNNEST(%s::bigint[], %s::bigint[]) AS v(id, d) WHERE {lots}.id = v.id)"
        )
        params += [[lot for lot, _ in lot_changes], [d for _, d in lot_changes]]
    if new_lot is not None:
        sql.append(
            f"nl AS (INSERT INTO {lots} (member_id, posting_id, points, remaining, earned_at, expires_at, vested, "
            "vest_at) SELECT %s, p.id, %s, %s, %s, %s, %s, %s FROM p)"
        )
        params += [fields["member_id"], new_lot.points, new_lot.points, new_lot.earned_at,
                   lot_expiry(new_lot.earned_at), new_lot.vest_at is None, new_lot.vest_at]
    if lines:
        sql.append(
            f"e AS (INSERT INTO {Entry._meta.db_table} (posting_id, member_id, account, amount, created_at) "
            "SELECT p.id, v.member_id, v.account, v.amount, %s FROM p, "
            "UNNEST(%s::bigint[], %s::varchar[], %s::bigint[]) AS v(member_id, account, amount))"
        )
        params += [now, [who.pk if who else None for _, _, who in lines], [str(a) for a, _, _ in lines],
                   [amount for _, amount, _ in lines]]
    touched = [c for c in ("available", "held", "pending", "shortfall") if changes.get(c)]
    if touched:
        sets = ", ".join(f"{c} = {c} + %s" for c in touched)
        sql.append(
            f"u AS (UPDATE {Member._meta.db_table} SET {sets}, updated_at = %s "
            "WHERE id = %s AND available >= %s AND EXISTS (SELECT 1 FROM p) "
            "RETURNING id, phone, available, held, pending, shortfall)"
        )
        params += [*(changes[c] for c in touched), now, fields["member_id"], spend]
        # The "points.changed" event, built from the counters the UPDATE returns (same payload as the ORM path).
        sql.append(
            f"o AS (INSERT INTO {OutboxEvent._meta.db_table} (event_id, topic, aggregate, channel_id, payload, "
            "status, attempts, last_error, created_at) "
            f"SELECT gen_random_uuid(), %s, 'member:' || u.id, (SELECT id FROM {SalesChannel._meta.db_table} "
            "WHERE code = %s), jsonb_build_object('member', u.phone, 'posting', (SELECT id FROM p), "
            "'kind', %s::text, 'points', %s::bigint, 'channel', %s::text, 'store', %s::text, 'reference', %s::text, "
            "'balance', jsonb_build_object('available', u.available, 'held', u.held, 'pending', u.pending, "
            "'shortfall', u.shortfall, 'total', u.available + u.held + u.pending - u.shortfall)), "
            "'pending', 0, '', statement_timestamp() FROM u)"
        )
        params += [POINTS_CHANGED, conf.events_channel(), fields["kind"], fields["points"], fields["channel"],
                   fields["store"], fields["reference"]]
        tail = " SELECT (SELECT id FROM p), (SELECT count(*) FROM u)"
    else:
        tail = " SELECT (SELECT id FROM p), 1"
    if new_hold is not None:
        tail += ", (SELECT id FROM hid)"
    with _cursor() as cursor:
        cursor.execute("WITH " + ", ".join(sql) + tail, params)
        row = cursor.fetchone()
    posting_id, updated = row[0], row[1]
    if posting_id is None:
        return None
    if updated != 1:
        raise InsufficientPoints(details={"requested": spend})
    if new_hold is not None:
        new_hold.pk = row[2]
    return posting_id


def _pick_lots(member: Member, points: int, *, first: Lot | None = None,
               page: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """Which vested lots `points` come out of: `first` first, then oldest expiry first. The member row must be
    locked (it guards the lots). `page`: the first `_LOTS_PAGE` of those lots (excluding `first`), already read
    under the lock. Returns (lot id, points) pairs; the posting applies them. Raw SQL: every spend."""
    taken: list[tuple[int, int]] = []
    left = points
    if first is not None and first.vested and first.remaining > 0:
        n = min(left, first.remaining)
        taken.append((first.pk, n))
        left -= n
    offset, batch = 0, _LOTS_PAGE
    while left > 0:
        if offset == 0 and page is not None:
            rows = page
        else:
            with _cursor() as cursor:
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


# --- members --------------------------------------------------------------------------------------------------------


def get_or_create_member(
    *, phone: str, name: str | None = None, email: str | None = None, channel: str = "", store: str = ""
) -> tuple[Member, bool]:
    """The member behind a phone number (normalised to E.164; a merged member resolves to the one it was merged
    into), created on first purchase or sign-up from any channel. Fills a blank name or email, never overwrites.
    Returns (member, created). Raises InvalidPhone, InvalidInput (email)."""
    e164 = normalize_phone(phone)
    if email:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise InvalidInput("Not a valid email address.", details={"email": email}) from exc
    with transaction.atomic():
        member, created = Member.objects.get_or_create(
            phone=e164,
            defaults={"name": (name or "")[:200], "email": email or "", "created_channel": channel[:64],
                      "created_store": store[:64], "tier": conf.tiers()[0].code},
        )
        if member.merged_into_id:
            member = Member.objects.get(pk=member.merged_into_id)
        if not created:
            fill = {}
            if name and not member.name:
                fill["name"] = name[:200]
            if email and not member.email:
                fill["email"] = email
            if fill:
                Member.objects.filter(pk=member.pk).update(**fill, updated_at=timezone.now())
                for field, value in fill.items():
                    setattr(member, field, value)
        return member, created


def merge_members(*, keep: Member, merge: Member, actor: str, now: datetime | None = None) -> Posting:
    """Merge a duplicate sign-up into `keep`. Every ledger entry stays where it is; one MERGE posting moves
    `merge`'s balances (available, held, pending, shortfall) to `keep`, its lots and holds are re-pointed, and
    `merge.merged_into = keep` so its phone resolves to `keep` from then on."""
    now = now or timezone.now()
    if keep.pk == merge.pk:
        raise InvalidMerge("A member cannot be merged into itself.")
    with transaction.atomic():
        locked = {m.pk: m for m in Member.objects.select_for_update().filter(pk__in=[keep.pk, merge.pk]).order_by("pk")}
        kept, merged = locked[keep.pk], locked[merge.pk]
        if kept.merged_into_id or merged.merged_into_id:
            raise InvalidMerge("One of these members was already merged.", details={"keep": kept.phone, "merge": merged.phone})
        entries = [
            (A.AVAILABLE, -merged.available, merged), (A.AVAILABLE, merged.available, kept),
            (A.HELD, -merged.held, merged), (A.HELD, merged.held, kept),
            (A.PENDING, -merged.pending, merged), (A.PENDING, merged.pending, kept),
            (A.SHORTFALL, merged.shortfall, merged), (A.SHORTFALL, -merged.shortfall, kept),
        ]
        posting = _post(
            member=kept, kind=PostingKind.MERGE, entries=entries, source=PostingSource(actor=actor), now=now,
            points=merged.balance, reason=f"merged {merged.phone} into {kept.phone}",
        )
        Lot.objects.filter(member=merged).update(member=kept)
        RedemptionHold.objects.filter(member=merged).update(member=kept)
        Member.objects.filter(merged_into=merged).update(merged_into=kept, updated_at=now)  # flatten chains
        fill = {}
        if not kept.name and merged.name:
            fill["name"] = merged.name
        if not kept.email and merged.email:
            fill["email"] = merged.email
        Member.objects.filter(pk=kept.pk).update(**fill, updated_at=now)
        Member.objects.filter(pk=merged.pk).update(merged_into=kept, updated_at=now)
        return posting


# --- earning ----------------------------------------------------------------------------------------------------------


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
        m, original, state = _lock_earning(earning_id, idempotency_key)
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


@dataclass
class _EarningState:
    """What a reversal needs to know about its earning, read under the member's lock."""

    replayed: bool  # the idempotency key is already taken
    reversed_points: int  # by earlier reversals of this earning
    reversed_amount: int
    own_lot: Lot | None  # the lot the earning credited (a partial instance: id, remaining, vested)
    lots_page: list[tuple[int, int]] | None  # the member's first lots to spend after own_lot, or None: not read


def _lock_earning(earning_id: int, key: str | None) -> tuple[Member, Posting, _EarningState]:
    """Lock the live member behind an earning and read what reversing it needs. On PostgreSQL in one statement:
    the earning itself never changes, the rest is proven current as in _lock_member_to_spend. Raises
    PostingNotFound."""
    if connection.vendor != "postgresql":
        original = Posting.objects.filter(pk=earning_id, kind=PostingKind.EARN).first()
        if original is None:
            raise PostingNotFound(details={"earning": earning_id})
        m = _lock_member(original.member_id)
        done = original.corrections.filter(kind=PostingKind.REVERSE).aggregate(
            points=Sum("points", default=0), amount=Sum("amount_vnd", default=0)
        )
        replayed = bool(key) and Posting.objects.filter(idempotency_key=key).exists()
        return m, original, _EarningState(replayed, done["points"], done["amount"],
                                          Lot.objects.filter(posting=original).first(), None)
    postings, lots = Posting._meta.db_table, Lot._meta.db_table
    # An earning credits at most one lot. No ORDER BY: it could tempt the planner into walking the expiry index.
    own_lot = f"(SELECT o.id FROM {lots} o WHERE o.posting_id = p.id LIMIT 1)"
    sql = (
        f"SELECT {', '.join(f'm.{c}' for c in _MEMBER_COLUMNS)}, {_CURRENT}, p.member_id, p.points, p.amount_vnd, "
        f"p.created_at, (SELECT c.id FROM {postings} c WHERE c.idempotency_key = %s), "
        f"(SELECT ARRAY[coalesce(sum(c.points), 0), coalesce(sum(c.amount_vnd), 0)]::bigint[] FROM {postings} c "
        "WHERE c.original_id = p.id AND c.kind = 'reverse'), "
        f"(SELECT ARRAY[o.id, o.remaining, o.vested::int]::bigint[] FROM {lots} o WHERE o.posting_id = p.id LIMIT 1), "
        f"{_lots_page_sql('m.id', f'coalesce({own_lot}, 0)')}, {_GENERIC_PLANS} "
        f"FROM {postings} p JOIN {_M} m ON m.id = coalesce(%s::bigint, p.member_id) "
        "WHERE p.id = %s AND p.kind = 'earn' FOR UPDATE OF m"
    )
    target = None  # the earning's member, or the member it was merged into
    n = len(_MEMBER_COLUMNS)
    with _cursor() as cursor:
        for _ in range(6):
            cursor.execute(sql, [key or None, target, earning_id])
            row = _locked_row(cursor)
            if row is None:
                raise PostingNotFound(details={"earning": earning_id})
            m = Member(**dict(zip(_MEMBER_COLUMNS, row[:n], strict=True)))
            if m.merged_into_id is not None:
                target = m.merged_into_id
                continue
            if not row[n]:
                continue  # another posting for this member committed while we waited: read again, under our lock
            member_id, points, amount_vnd, created_at, replay, done, lot, page = row[n + 1:]
            original = Posting(pk=earning_id, kind=PostingKind.EARN, member_id=member_id, points=points,
                               amount_vnd=amount_vnd, created_at=created_at)
            own = Lot(pk=lot[0], remaining=lot[1], vested=bool(lot[2])) if lot else None
            state = _EarningState(replay is not None, done[0], done[1], own, [(i, r) for i, r in (page or [])])
            return m, original, state
    raise InvalidMerge("Member merge chain too deep.", details={"member_id": target})


# --- redeeming --------------------------------------------------------------------------------------------------------


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


_HOLD_COLUMNS = ("id", "member_id", "points", "status", "expires_at", "channel", "store", "reference", "void_reason",
                 "created_at", "closed_at")


def _lock_hold(hold_id: int, *, fresh: bool = False) -> tuple[Member, RedemptionHold, list[tuple[int, int]]]:
    """Lock the member behind a hold and return it with the hold and its allocations (lot id, points).

    On PostgreSQL in one statement. The hold's columns then come from the statement's snapshot: if another
    transaction closed the hold while this one waited for the member's lock, they are stale. That is safe: a hold
    never goes back to held, and the posting that closes it writes only if it is still held (HoldClose), else the
    caller asks again with `fresh` (the lock is ours by then, so a plain read is current)."""
    if connection.vendor == "postgresql" and not fresh:
        cols = ", ".join(f"m.{c}" for c in _MEMBER_COLUMNS) + ", " + ", ".join(f"h.{c}" for c in _HOLD_COLUMNS)
        with _cursor() as cursor:
            cursor.execute(
                f"SELECT {cols}, (SELECT array_agg(ARRAY[a.lot_id, a.points] ORDER BY a.id) "
                f"FROM {HoldAllocation._meta.db_table} a WHERE a.hold_id = h.id), {_GENERIC_PLANS} "
                f"FROM {RedemptionHold._meta.db_table} h JOIN {Member._meta.db_table} m ON m.id = h.member_id "
                "WHERE h.id = %s FOR UPDATE OF m",
                [hold_id],
            )
            row = _locked_row(cursor)
        if row is None:
            raise RedemptionNotFound(details={"id": hold_id})
        n = len(_MEMBER_COLUMNS)
        m = Member(**dict(zip(_MEMBER_COLUMNS, row[:n], strict=True)))
        if m.merged_into_id is None:  # else merged meanwhile: the hold now belongs to the kept member
            h = RedemptionHold(**dict(zip(_HOLD_COLUMNS, row[n:n + len(_HOLD_COLUMNS)], strict=True)), member=m)
            return m, h, [(lot, points) for lot, points in (row[-1] or [])]
    member_id = RedemptionHold.objects.filter(pk=hold_id).values_list("member_id", flat=True).first()
    if member_id is None:
        raise RedemptionNotFound(details={"id": hold_id})
    m = _lock_member(member_id)
    h = RedemptionHold.objects.get(pk=hold_id)  # fresh, under the member lock
    h.member = m
    return m, h, list(h.allocations.order_by("id").values_list("lot_id", "points"))


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
    now = now or timezone.now()
    points = _positive_int(points, "points")
    with transaction.atomic():
        m, page = _lock_member_to_spend(member)
        if m.available < points:
            refusal = InsufficientPoints(details={"available": m.available, "requested": points})
            return _first_or(idempotency_key, kind=PostingKind.REDEEM, member=m, refusal=refusal)
        posting = _post(
            member=m, kind=PostingKind.REDEEM, source=source, now=now, points=points,
            amount_vnd=points * conf.point_value_vnd(), idempotency_key=idempotency_key, spend=points,
            entries=[(A.AVAILABLE, -points, m), (A.REDEEMED, points, None)],
            lot_changes=_spent(_pick_lots(m, points, page=page)),
        )
        return posting or _first_or(idempotency_key, kind=PostingKind.REDEEM, member=m)


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


# --- expiry, adjustments, tiers ------------------------------------------------------------------------------------


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


__all__ = [
    "PostingSource", "adjust_points", "capture_redemption", "earn_points", "expire_lots", "get_or_create_member",
    "hold_redemption", "lot_expiry", "merge_members", "points_for", "recompute_tiers", "redeem_points",
    "refund_redemption", "reverse_earning", "vest_pending", "void_expired_holds", "void_redemption",
]
