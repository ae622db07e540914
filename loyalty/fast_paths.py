"""The loyalty ledger's PostgreSQL fast paths, each beside its ORM twin (o2o/fast_paths.py says why there are two).

Each fast path is a chooser, the name the services call, and two twins side by side: `_<name>_sql`, the
hand-written PostgreSQL statement that does it in one round trip (every till sale and checkout runs them), and
`_<name>_orm`, the same through the ORM on any database (the SQLite demo; the parity tests force it with
`o2o.fast_paths.orm_twins()`). Both give the same answer and write the same rows: tests/loyalty/test_fast_paths.py
runs each pair on PostgreSQL on the same inputs. A chooser adds no query to the PostgreSQL path.

    lock_member            the member's row lock, following merges
    lock_member_to_spend   the lock plus the first page of the lots a spend takes
    write_posting          a posting with its entries, counters, lots, hold and outbox event
    lock_earning           the lock plus what reversing an earning needs
    lock_hold              the lock plus a hold and its allocations

Everything here runs under the member's row lock that the services take first (loyalty/services/ledger.py).
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F, Sum

from loyalty import conf
from loyalty.exceptions import InsufficientPoints, InvalidMerge, PostingNotFound, RedemptionNotFound
from loyalty.models import Entry, HoldAllocation, Lot, Member, Posting, PostingKind, RedemptionHold
from o2o import outbox, prepared
from o2o.fast_paths import use_sql
from o2o.models import OutboxEvent, SalesChannel

POINTS_CHANGED = "points.changed"  # outbox topic, aggregate "member:<id>", written with every balance change

MEMBER_COLUMNS = ("id", "phone", "tier", "available", "held", "pending", "shortfall", "merged_into_id")
LOTS_PAGE = 8  # lots read with the lock: enough for nearly every spend; ledger._pick_lots reads on if not
# How many merges a lock follows from the member it is given to the live one, in every twin. merge_members flattens
# chains (one merge at most); longer ones are older data or a cycle: InvalidMerge, naming the member reached.
MERGE_HOPS = 4

_M = Member._meta.db_table

# Appended to the select list of every statement that takes the member lock (PostgreSQL): the posting statement
# after it is then planned once per connection, not on every execution. PostgreSQL keeps re-planning a prepared
# statement whose generic plan looks dearer than its custom plans, and the posting statements' does: it cannot know
# that their UNNEST arrays hold two or three items. Every prepared statement here looks rows up by primary or foreign
# key, so generic plans are right for them. SET LOCAL: until the end of this transaction only, and set again by every
# transaction that locks a member (a rolled-back one takes it along), at no extra round trip.
_GENERIC_PLANS = "set_config('plan_cache_mode', 'force_generic_plan', true)"

# Whether the member row the lock returns is the version the statement's snapshot saw. The locked columns are always
# the newest version (PostgreSQL re-reads a row updated while we waited for its lock), but everything else in the
# statement (lots, postings) comes from the snapshot taken before the wait. Every change to a member's lots or
# postings is made under that member's lock by a transaction that also updates the member row (its counters), so a
# row unchanged since the snapshot proves those reads current. When it did change (rare: another posting for the same
# member committed while we waited), the caller runs the statement again: the lock is ours, the reads are then fresh.
_CURRENT = f"m.xmin = (SELECT s.xmin FROM {_M} s WHERE s.id = m.id)"


def cursor():
    """The cursor for the ledger's raw SQL: prepared statements on PostgreSQL (LOYALTY_PREPARED_STATEMENTS, on by
    default; turn it off behind a pooler that cannot keep them), else Django's. Without really prepared statements
    every posting's statements were parsed and planned anew (~1.4 ms of PostgreSQL CPU per posting)."""
    if use_sql() and conf.prepared_statements():
        return prepared.connection_cursor()
    return connection.cursor()


def _pk(member: Member | int) -> int:
    return member.pk if isinstance(member, Member) else member


def _locked_row(cur) -> tuple | None:
    """The row of a lock statement, without its trailing _GENERIC_PLANS column."""
    row = cur.fetchone()
    return row[:-1] if row is not None else None


def _member(row) -> Member:
    """A partial Member (never saved) from MEMBER_COLUMNS values."""
    return Member(**dict(zip(MEMBER_COLUMNS, row, strict=True)))


def _too_deep(member_id: int) -> InvalidMerge:
    return InvalidMerge("Member merge chain too deep.", details={"member_id": member_id})


# --- the member lock ------------------------------------------------------------------------------------------------


def lock_member(member: Member | int) -> Member:
    """Lock the live member behind `member` (following a merge) and return its counters fresh from the database (a
    partial instance: never saved). Locking a merged member's row on the way is harmless: nothing writes to it."""
    lock_row = _lock_member_row_sql if use_sql() else _lock_member_row_orm
    member_id = _pk(member)
    for _ in range(MERGE_HOPS + 1):
        row = lock_row(member_id)
        if row is None:
            raise Member.DoesNotExist(f"member {member_id}")
        locked = _member(row)
        if locked.merged_into_id is None:
            return locked
        member_id = locked.merged_into_id
    raise _too_deep(member_id)


def _lock_member_row_sql(member_id: int) -> tuple | None:
    with cursor() as cur:
        cur.execute(f"SELECT {', '.join(MEMBER_COLUMNS)}, {_GENERIC_PLANS} FROM {_M} WHERE id = %s FOR UPDATE",
                    [member_id])
        return _locked_row(cur)


def _lock_member_row_orm(member_id: int) -> tuple | None:
    # FOR UPDATE on PostgreSQL; nothing on SQLite (the demo), whose transactions are IMMEDIATE: one writer at a time.
    return Member.objects.select_for_update().filter(pk=member_id).values_list(*MEMBER_COLUMNS).first()


def _lots_page_sql(member: str, exclude: str) -> str:
    """The first `LOTS_PAGE` lots `_pick_lots` would read, as an array of [id, remaining] (NULL when none)."""
    return (
        "(SELECT array_agg(ARRAY[l.id, l.remaining] ORDER BY l.expires_at, l.id) FROM (SELECT id, remaining, "
        f"expires_at FROM {Lot._meta.db_table} WHERE member_id = {member} AND vested AND remaining > 0 "
        f"AND id <> {exclude} ORDER BY expires_at, id LIMIT {LOTS_PAGE}) l)"
    )


def lock_member_to_spend(member: Member | int) -> tuple[Member, list[tuple[int, int]] | None]:
    """`lock_member`, plus on PostgreSQL the first page of the lots a spend takes (oldest first) in the same
    statement, proven current (see _CURRENT). Returns (member, lots page or None when not read here)."""
    return _lock_member_to_spend_sql(member) if use_sql() else _lock_member_to_spend_orm(member)


def _lock_member_to_spend_sql(member: Member | int) -> tuple[Member, list[tuple[int, int]]]:
    member_id = _pk(member)
    cols = ", ".join(f"m.{c}" for c in MEMBER_COLUMNS)
    hops = 0
    with cursor() as cur:
        # Each merged member's row is read once, the live one at most twice (again if it changed while we waited
        # for its lock: the lock is ours then, the second read is current).
        for _ in range(MERGE_HOPS + 3):
            cur.execute(
                f"SELECT {cols}, {_CURRENT}, {_lots_page_sql('m.id', '0')}, {_GENERIC_PLANS} FROM {_M} m "
                "WHERE m.id = %s FOR UPDATE",
                [member_id],
            )
            row = _locked_row(cur)
            if row is None:
                raise Member.DoesNotExist(f"member {member_id}")
            locked = _member(row[: len(MEMBER_COLUMNS)])
            if locked.merged_into_id is not None:
                member_id = locked.merged_into_id
                hops += 1
                if hops > MERGE_HOPS:  # as far as lock_member follows, and no further
                    break
            elif row[-2]:
                return locked, [(lot, n) for lot, n in (row[-1] or [])]
    raise _too_deep(member_id)


def _lock_member_to_spend_orm(member: Member | int) -> tuple[Member, None]:
    return lock_member(member), None  # the spend reads its lots itself (ledger._pick_lots)


# --- the posting ----------------------------------------------------------------------------------------------------


@dataclass
class NewLot:
    """A lot the posting credits (earning, refund, positive adjustment): its points vest at `vest_at` (None: now)."""

    points: int
    earned_at: datetime
    vest_at: datetime | None = None
    expires_at: datetime | None = None  # set by ledger._post (lot_expiry of earned_at)


@dataclass
class NewHold:
    """The checkout hold a HOLD posting opens, with the lots it takes its points from."""

    points: int
    expires_at: datetime
    channel: str
    store: str
    reference: str
    allocations: list[tuple[int, int]]  # (lot id, points)
    pk: int | None = None  # set by write_posting


@dataclass
class HoldClose:
    """Capture or void of a hold, applied only if the hold is still held (the posting is written only then)."""

    hold_id: int
    status: str
    reference: str | None = None
    void_reason: str | None = None


def write_posting(
    fields: dict, lines: list, deltas: dict[int, dict[str, int]], *, member: Member, spend: int, now: datetime,
    lot_changes: list, new_lot: NewLot | None, new_hold: NewHold | None, close_hold: HoldClose | None,
) -> Posting | None:
    """Write a posting prepared by ledger._post (its columns `fields`, its entry `lines`, the counter `deltas` per
    member) with everything that goes with it. None, having written nothing, when the idempotency key is taken or
    `close_hold`'s hold is no longer held. On PostgreSQL, for one member, all of it is one statement; postings that
    touch two members (merges) go through the ORM everywhere."""
    if use_sql() and set(deltas) <= {member.pk}:
        return _write_posting_sql(fields, lines, deltas.get(member.pk, {}), spend=spend, now=now,
                                  lot_changes=lot_changes, new_lot=new_lot, new_hold=new_hold, close_hold=close_hold)
    return _write_posting_orm(fields, lines, deltas, member=member, spend=spend, now=now, lot_changes=lot_changes,
                              new_lot=new_lot, new_hold=new_hold, close_hold=close_hold)


def _write_posting_sql(
    fields: dict, lines: list, changes: dict[str, int], *, spend: int, now: datetime, lot_changes: list,
    new_lot: NewLot | None, new_hold: NewHold | None, close_hold: HoldClose | None,
) -> Posting | None:
    """The posting and everything that goes with it in one round trip (data-modifying CTEs always run to
    completion; each one after `p` writes only if the posting was written). The same rows the ORM twin writes."""
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
        params += [fields["member_id"], new_lot.points, new_lot.points, new_lot.earned_at, new_lot.expires_at,
                   new_lot.vest_at is None, new_lot.vest_at]
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
            f"u AS (UPDATE {_M} SET {sets}, updated_at = %s "
            "WHERE id = %s AND available >= %s AND EXISTS (SELECT 1 FROM p) "
            "RETURNING id, phone, available, held, pending, shortfall)"
        )
        params += [*(changes[c] for c in touched), now, fields["member_id"], spend]
        # The "points.changed" event, built from the counters the UPDATE returns (same payload as the ORM twin).
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
    with cursor() as cur:
        cur.execute("WITH " + ", ".join(sql) + tail, params)
        row = cur.fetchone()
    posting_id, updated = row[0], row[1]
    if posting_id is None:
        return None
    if updated != 1:
        raise InsufficientPoints(details={"requested": spend})
    transaction.on_commit(outbox.kick_delivery)  # what outbox.emit() does after its insert
    if new_hold is not None:
        new_hold.pk = fields["hold_id"] = row[2]
    return Posting(pk=posting_id, **fields)


def _write_posting_orm(fields: dict, lines: list, deltas: dict, *, member: Member, spend: int, now: datetime,
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
            earned_at=new_lot.earned_at, expires_at=new_lot.expires_at, vested=new_lot.vest_at is None,
            vest_at=new_lot.vest_at,
        )
    if events:
        outbox.emit_many(events)
    return posting


def _points_changed_event(member_id: int, phone: str, counters: list[int], posting: Posting) -> dict:
    """The "points.changed" event (the same payload the SQL twin builds in its statement)."""
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


# --- reversing an earning -------------------------------------------------------------------------------------------


@dataclass
class EarningState:
    """What a reversal needs to know about its earning, read under the member's lock."""

    replayed: bool  # the idempotency key is already taken
    reversed_points: int  # by earlier reversals of this earning
    reversed_amount: int
    own_lot: Lot | None  # the lot the earning credited (a partial instance: id, remaining, vested)
    lots_page: list[tuple[int, int]] | None  # the member's first lots to spend after own_lot, or None: not read


def lock_earning(earning_id: int, key: str | None) -> tuple[Member, Posting, EarningState]:
    """Lock the live member behind an earning and read what reversing it needs. On PostgreSQL in one statement:
    the earning itself never changes, the rest is proven current as in lock_member_to_spend. Raises
    PostingNotFound."""
    return _lock_earning_sql(earning_id, key) if use_sql() else _lock_earning_orm(earning_id, key)


def _lock_earning_sql(earning_id: int, key: str | None) -> tuple[Member, Posting, EarningState]:
    postings, lots = Posting._meta.db_table, Lot._meta.db_table
    # An earning credits at most one lot. No ORDER BY: it could tempt the planner into walking the expiry index.
    own_lot = f"(SELECT o.id FROM {lots} o WHERE o.posting_id = p.id LIMIT 1)"
    sql = (
        f"SELECT {', '.join(f'm.{c}' for c in MEMBER_COLUMNS)}, {_CURRENT}, p.member_id, p.points, p.amount_vnd, "
        f"p.created_at, (SELECT c.id FROM {postings} c WHERE c.idempotency_key = %s), "
        f"(SELECT ARRAY[coalesce(sum(c.points), 0), coalesce(sum(c.amount_vnd), 0)]::bigint[] FROM {postings} c "
        "WHERE c.original_id = p.id AND c.kind = 'reverse'), "
        f"(SELECT ARRAY[o.id, o.remaining, o.vested::int]::bigint[] FROM {lots} o WHERE o.posting_id = p.id LIMIT 1), "
        f"{_lots_page_sql('m.id', f'coalesce({own_lot}, 0)')}, {_GENERIC_PLANS} "
        f"FROM {postings} p JOIN {_M} m ON m.id = coalesce(%s::bigint, p.member_id) "
        "WHERE p.id = %s AND p.kind = 'earn' FOR UPDATE OF m"
    )
    target = None  # the earning's member, or the member it was merged into
    n = len(MEMBER_COLUMNS)
    hops = 0
    with cursor() as cur:
        for _ in range(MERGE_HOPS + 3):  # as in _lock_member_to_spend_sql
            cur.execute(sql, [key or None, target, earning_id])
            row = _locked_row(cur)
            if row is None:
                raise PostingNotFound(details={"earning": earning_id})
            m = _member(row[:n])
            if m.merged_into_id is not None:
                target = m.merged_into_id
                hops += 1
                if hops > MERGE_HOPS:  # as far as lock_member follows (the ORM twin), and no further
                    break
                continue
            if not row[n]:
                continue  # another posting for this member committed while we waited: read again, under our lock
            member_id, points, amount_vnd, created_at, replay, done, lot, page = row[n + 1:]
            original = Posting(pk=earning_id, kind=PostingKind.EARN, member_id=member_id, points=points,
                               amount_vnd=amount_vnd, created_at=created_at)
            own = Lot(pk=lot[0], remaining=lot[1], vested=bool(lot[2])) if lot else None
            state = EarningState(replay is not None, done[0], done[1], own, [(i, r) for i, r in (page or [])])
            return m, original, state
    raise _too_deep(target)


def _lock_earning_orm(earning_id: int, key: str | None) -> tuple[Member, Posting, EarningState]:
    original = Posting.objects.filter(pk=earning_id, kind=PostingKind.EARN).first()
    if original is None:
        raise PostingNotFound(details={"earning": earning_id})
    m = lock_member(original.member_id)
    done = original.corrections.filter(kind=PostingKind.REVERSE).aggregate(
        points=Sum("points", default=0), amount=Sum("amount_vnd", default=0)
    )
    replayed = bool(key) and Posting.objects.filter(idempotency_key=key).exists()
    return m, original, EarningState(replayed, done["points"], done["amount"],
                                     Lot.objects.filter(posting=original).first(), None)


# --- holds ----------------------------------------------------------------------------------------------------------

_HOLD_COLUMNS = ("id", "member_id", "points", "status", "expires_at", "channel", "store", "reference", "void_reason",
                 "created_at", "closed_at")


def lock_hold(hold_id: int, *, fresh: bool = False) -> tuple[Member, RedemptionHold, list[tuple[int, int]]]:
    """Lock the member behind a hold and return it with the hold and its allocations (lot id, points).

    On PostgreSQL in one statement. The hold's columns then come from the statement's snapshot: if another
    transaction closed the hold while this one waited for the member's lock, they are stale. That is safe: a hold
    never goes back to held, and the posting that closes it writes only if it is still held (HoldClose), else the
    caller asks again with `fresh` (the lock is ours by then, so a plain read is current)."""
    if use_sql() and not fresh:
        locked = _lock_hold_sql(hold_id)
        if locked is not None:
            return locked
        # else merged meanwhile: the hold now belongs to the kept member, read as the ORM twin does
    return _lock_hold_orm(hold_id)


def _lock_hold_sql(hold_id: int) -> tuple[Member, RedemptionHold, list[tuple[int, int]]] | None:
    """None when the hold's member was merged while we waited for its lock."""
    cols = ", ".join(f"m.{c}" for c in MEMBER_COLUMNS) + ", " + ", ".join(f"h.{c}" for c in _HOLD_COLUMNS)
    with cursor() as cur:
        cur.execute(
            f"SELECT {cols}, (SELECT array_agg(ARRAY[a.lot_id, a.points] ORDER BY a.id) "
            f"FROM {HoldAllocation._meta.db_table} a WHERE a.hold_id = h.id), {_GENERIC_PLANS} "
            f"FROM {RedemptionHold._meta.db_table} h JOIN {_M} m ON m.id = h.member_id "
            "WHERE h.id = %s FOR UPDATE OF m",
            [hold_id],
        )
        row = _locked_row(cur)
    if row is None:
        raise RedemptionNotFound(details={"id": hold_id})
    n = len(MEMBER_COLUMNS)
    m = _member(row[:n])
    if m.merged_into_id is not None:
        return None
    h = RedemptionHold(**dict(zip(_HOLD_COLUMNS, row[n:n + len(_HOLD_COLUMNS)], strict=True)), member=m)
    return m, h, [(lot, points) for lot, points in (row[-1] or [])]


def _lock_hold_orm(hold_id: int) -> tuple[Member, RedemptionHold, list[tuple[int, int]]]:
    member_id = RedemptionHold.objects.filter(pk=hold_id).values_list("member_id", flat=True).first()
    if member_id is None:
        raise RedemptionNotFound(details={"id": hold_id})
    m = lock_member(member_id)
    h = RedemptionHold.objects.get(pk=hold_id)  # fresh, under the member lock
    h.member = m
    return m, h, list(h.allocations.order_by("id").values_list("lot_id", "points"))


__all__ = ["cursor", "lock_earning", "lock_hold", "lock_member", "lock_member_to_spend", "write_posting"]
