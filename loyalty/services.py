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
    RedemptionNotFound,
    RedemptionNotHeld,
)
from loyalty.models import Account, Entry, HoldAllocation, Lot, Member, Posting, PostingKind, RedemptionHold
from loyalty.phones import normalize_phone
from o2o.domain_errors import InvalidInput

A = Account


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


def _lock_member(member: Member | int) -> Member:
    """Lock the live member behind `member` (following a merge) and return its counters fresh from the database (a
    partial instance: never saved). Locking a merged member's row on the way is harmless: nothing writes to it."""
    member_id = member.pk if isinstance(member, Member) else member
    with connection.cursor() as cursor:
        for _ in range(5):
            cursor.execute(
                f"SELECT {', '.join(_MEMBER_COLUMNS)} FROM {Member._meta.db_table} WHERE id = %s"
                + (" FOR UPDATE" if connection.features.has_select_for_update else ""),  # SQLite demo: IMMEDIATE txns
                [member_id],
            )
            row = cursor.fetchone()
            if row is None:
                raise Member.DoesNotExist(f"member {member_id}")
            locked = Member(**dict(zip(_MEMBER_COLUMNS, row, strict=True)))
            if locked.merged_into_id is None:
                return locked
            member_id = locked.merged_into_id
    raise InvalidMerge("Member merge chain too deep.", details={"member_id": member_id})


def _replay(key: str | None, *, kind: str, member: Member) -> Posting | None:
    """The posting already made with this idempotency key, if any (checked under the member lock)."""
    if not key:
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {Posting._meta.db_table} WHERE idempotency_key = %s", [key])
        if cursor.fetchone() is None:
            return None
    first = Posting.objects.get(idempotency_key=key)
    same_member = first.member_id == member.pk or _root_id(first.member_id) == member.pk
    if first.kind != kind or not same_member:
        raise IdempotencyKeyConflict(details={"idempotency_key": key, "first_kind": first.kind})
    return first


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
    hold: RedemptionHold | None = None,
    reason: str = "",
    spend: int = 0,
) -> Posting:
    """Write one balanced posting and apply its member-account entries to the (locked) members' counters.

    `entries` are (account, signed amount, member or None for system accounts); zero amounts are dropped. `spend`
    > 0 makes the counter update conditional on `available >= spend` (defence in depth under the row lock)."""
    lines = [(account, amount, who) for account, amount, who in entries if amount]
    if sum(amount for _, amount, _ in lines) != 0:
        raise AssertionError(f"unbalanced posting {kind}: {lines}")
    fields = {
        "kind": str(kind), "member_id": member.pk, "points": points, "amount_vnd": amount_vnd,
        "channel": source.channel[:64], "store": source.store[:64], "reference": source.reference[:120],
        "actor": source.actor[:150], "reason": reason[:300], "idempotency_key": idempotency_key or None,
        "original_id": original.pk if original else None, "hold_id": hold.pk if hold else None, "created_at": now,
    }
    deltas: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for account, amount, who in lines:
        if who is None:
            continue
        if account == A.SHORTFALL:
            deltas[who.pk]["shortfall"] -= amount  # the counter is what is owed: minus the account's balance
        else:
            deltas[who.pk][str(account)] += amount
    if connection.vendor == "postgresql" and set(deltas) <= {member.pk}:
        posting_id = _post_in_one_statement(fields, lines, deltas.get(member.pk, {}), spend=spend, now=now)
        return Posting(pk=posting_id, **fields)
    posting = Posting.objects.create(**fields)
    if not lines:
        return posting
    Entry.objects.bulk_create(
        [Entry(posting=posting, member=who, account=account, amount=amount, created_at=now) for account, amount, who in lines]
    )
    for member_id, changes in sorted(deltas.items()):
        updates = {field: F(field) + delta for field, delta in changes.items() if delta}
        if not updates:
            continue
        rows = Member.objects.filter(pk=member_id)
        if spend and member_id == member.pk:
            rows = rows.filter(available__gte=spend)
        if rows.update(**updates, updated_at=now) != 1:
            raise InsufficientPoints(details={"requested": spend})
    return posting


def _post_in_one_statement(fields: dict, lines: list, changes: dict[str, int], *, spend: int, now: datetime) -> int:
    """The posting, its entries and the member's counters in one round trip (data-modifying CTEs always run to
    completion). The same rows the ORM path writes; this is the hot path of every till and checkout."""
    columns = list(fields)
    values = [fields[c] for c in columns]
    counters = ("available", "held", "pending", "shortfall")
    sql = [
        f"WITH p AS (INSERT INTO {Posting._meta.db_table} ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id)",
    ]
    params: list = [*values]
    if lines:
        sql.append(
            f", e AS (INSERT INTO {Entry._meta.db_table} (posting_id, member_id, account, amount, created_at) "
            "SELECT p.id, v.member_id, v.account, v.amount, %s FROM p, "
            "UNNEST(%s::bigint[], %s::varchar[], %s::bigint[]) AS v(member_id, account, amount))"
        )
        params += [now, [who.pk if who else None for _, _, who in lines], [str(a) for a, _, _ in lines],
                   [amount for _, amount, _ in lines]]
    touched = [c for c in counters if changes.get(c)]
    if touched:
        sets = ", ".join(f"{c} = {c} + %s" for c in touched)
        sql.append(
            f", u AS (UPDATE {Member._meta.db_table} SET {sets}, updated_at = %s WHERE id = %s AND available >= %s "
            "RETURNING id)"
        )
        params += [*(changes[c] for c in touched), now, fields["member_id"], spend]
        sql.append(" SELECT (SELECT id FROM p), (SELECT count(*) FROM u)")
    else:
        sql.append(" SELECT (SELECT id FROM p), 1")
    with connection.cursor() as cursor:
        cursor.execute("".join(sql), params)
        posting_id, updated = cursor.fetchone()
    if updated != 1:
        raise InsufficientPoints(details={"requested": spend})
    return posting_id


def _new_lot(*, member: Member, posting: Posting, points: int, now: datetime, earned_at: datetime | None = None,
             vest_at: datetime | None = None) -> Lot | None:
    if points <= 0:
        return None
    earned_at = earned_at or now
    return Lot.objects.create(
        member=member, posting=posting, points=points, remaining=points, earned_at=earned_at,
        expires_at=lot_expiry(earned_at), vested=vest_at is None, vest_at=vest_at,
    )


def _take_from_lots(member: Member, points: int, *, first: Lot | None = None) -> list[tuple[int, int]]:
    """Take `points` out of the member's vested lots, `first` first, then oldest expiry first. The member row must
    be locked (it guards the lots). Returns (lot id, points taken) pairs. Raw SQL: this is on every spend."""
    taken: list[tuple[int, int]] = []
    left = points
    if first is not None and first.vested and first.remaining > 0:
        n = min(left, first.remaining)
        taken.append((first.pk, n))
        left -= n
    lots = Lot._meta.db_table
    offset, batch = 0, 8
    with connection.cursor() as cursor:
        while left > 0:
            cursor.execute(
                f"SELECT id, remaining FROM {lots} WHERE member_id = %s AND vested AND remaining > 0 AND id <> %s "
                "ORDER BY expires_at, id LIMIT %s OFFSET %s",
                [member.pk, first.pk if first is not None else 0, batch, offset],
            )
            page = cursor.fetchall()
            if not page:
                raise AssertionError(f"member {member.pk}: lots hold less than the available counter")
            for lot_id, remaining in page:
                if left <= 0:
                    break
                n = min(left, remaining)
                taken.append((lot_id, n))
                left -= n
            offset += batch
            batch = 500
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {lots} SET remaining = remaining - v.n FROM UNNEST(%s::bigint[], %s::bigint[]) AS v(id, n) "
                f"WHERE {lots}.id = v.id",
                [[lot_id for lot_id, _ in taken], [n for _, n in taken]],
            )
        else:
            for lot_id, n in taken:
                cursor.execute(f"UPDATE {lots} SET remaining = remaining - %s WHERE id = %s", [n, lot_id])
    return taken


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
        first = _replay(idempotency_key, kind=PostingKind.EARN, member=m)
        if first is not None:
            return first
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
        )
        _new_lot(member=m, posting=posting, points=points - settle, now=now, vest_at=vest_at if pending else None)
        return posting


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
        original = Posting.objects.filter(pk=earning_id, kind=PostingKind.EARN).first()
        if original is None:
            raise PostingNotFound(details={"earning": earning_id})
        m = _lock_member(original.member_id)
        first = _replay(idempotency_key, kind=PostingKind.REVERSE, member=m)
        if first is not None:
            return first
        done = original.corrections.filter(kind=PostingKind.REVERSE).aggregate(
            points=Sum("points", default=0), amount=Sum("amount_vnd", default=0)
        )
        points_left = original.points - done["points"]
        amount_left = original.amount_vnd - done["amount"]
        if points_left <= 0 and amount_left <= 0:
            raise NothingToReverse(details={"earning": original.pk})
        wanted = math.floor(original.points * frac) if frac is not None else points
        n = max(0, min(wanted, points_left))
        money = amount_vnd if amount_vnd is not None else (math.floor(original.amount_vnd * frac) if frac else 0)
        money = max(0, min(money, amount_left))

        own_lot = Lot.objects.filter(posting=original).first()
        from_pending = 0
        if own_lot is not None and not own_lot.vested:
            from_pending = min(n, own_lot.remaining)
            if from_pending:
                Lot.objects.filter(pk=own_lot.pk).update(remaining=F("remaining") - from_pending)
        from_available = min(n - from_pending, m.available)
        if from_available:
            _take_from_lots(m, from_available, first=own_lot if own_lot is not None and own_lot.vested else None)
        shortfall = n - from_pending - from_available
        return _post(
            member=m, kind=PostingKind.REVERSE, source=source, now=now, points=n, amount_vnd=money,
            idempotency_key=idempotency_key, original=original,
            entries=[(A.ISSUED, n, None), (A.PENDING, -from_pending, m), (A.AVAILABLE, -from_available, m),
                     (A.SHORTFALL, -shortfall, m)],
            reason=f"shortfall {shortfall}" if shortfall else "",
        )


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
        m = _lock_member(member)
        first = _replay(idempotency_key, kind=PostingKind.HOLD, member=m)
        if first is not None:
            return first.hold
        if m.available < points:
            raise InsufficientPoints(details={"available": m.available, "requested": points})
        hold = RedemptionHold.objects.create(
            member=m, points=points, expires_at=expires_at, channel=source.channel[:64], store=source.store[:64],
            reference=source.reference[:120], created_at=now,
        )
        taken = _take_from_lots(m, points)
        HoldAllocation.objects.bulk_create([HoldAllocation(hold=hold, lot_id=lot_id, points=n) for lot_id, n in taken])
        _post(
            member=m, kind=PostingKind.HOLD, source=source, now=now, points=points,
            amount_vnd=points * conf.point_value_vnd(), idempotency_key=idempotency_key, hold=hold, spend=points,
            entries=[(A.AVAILABLE, -points, m), (A.HELD, points, m)],
        )
        return hold


def _hold_posting(hold: RedemptionHold, kind: str) -> Posting | None:
    return Posting.objects.filter(hold=hold, kind=kind).order_by("id").first()


def capture_redemption(
    *, hold: RedemptionHold | int, reference: str = "", source: PostingSource | None = None,
    now: datetime | None = None,
) -> Posting:
    """Spend held points (the order was placed). Capturing a captured hold returns the first capture posting.
    Raises RedemptionNotHeld (409) for a voided or expired hold."""
    now = now or timezone.now()
    hold_id = hold.pk if isinstance(hold, RedemptionHold) else hold
    with transaction.atomic():
        member_id = RedemptionHold.objects.filter(pk=hold_id).values_list("member_id", flat=True).first()
        if member_id is None:
            raise RedemptionNotFound(details={"id": hold_id})
        m = _lock_member(member_id)
        h = RedemptionHold.objects.get(pk=hold_id)  # fresh, under the member lock
        if h.status == RedemptionHold.Status.CAPTURED:
            return _hold_posting(h, PostingKind.CAPTURE)
        if h.status != RedemptionHold.Status.HELD or h.expires_at <= now:
            raise RedemptionNotHeld(
                details={"id": h.pk, "status": "expired" if h.status == RedemptionHold.Status.HELD else h.status}
            )
        src = source or PostingSource(channel=h.channel, store=h.store)
        ref = reference or src.reference or h.reference
        src = PostingSource(channel=src.channel or h.channel, store=src.store or h.store, reference=ref, actor=src.actor)
        RedemptionHold.objects.filter(pk=h.pk).update(status=RedemptionHold.Status.CAPTURED, closed_at=now, reference=ref[:120])
        return _post(
            member=m, kind=PostingKind.CAPTURE, source=src, now=now, points=h.points,
            amount_vnd=h.points * conf.point_value_vnd(), hold=h,
            entries=[(A.HELD, -h.points, m), (A.REDEEMED, h.points, None)],
        )


def _void_locked(m: Member, h: RedemptionHold, *, reason: str, actor: str, now: datetime) -> None:
    allocations = list(h.allocations.select_related("lot"))
    lots = []
    for allocation in allocations:
        allocation.lot.remaining += allocation.points
        lots.append(allocation.lot)
    Lot.objects.bulk_update(lots, ["remaining"])
    RedemptionHold.objects.filter(pk=h.pk).update(status=RedemptionHold.Status.VOIDED, closed_at=now, void_reason=reason[:32])
    _post(
        member=m, kind=PostingKind.VOID, now=now, points=h.points, amount_vnd=h.points * conf.point_value_vnd(), hold=h,
        source=PostingSource(channel=h.channel, store=h.store, reference=h.reference, actor=actor), reason=reason,
        entries=[(A.HELD, -h.points, m), (A.AVAILABLE, h.points, m)],
    )


def void_redemption(
    *, hold: RedemptionHold | int, reason: str = "cancelled", actor: str = "", now: datetime | None = None
) -> RedemptionHold:
    """Give held points back to the lots they came from (cancel). Voiding a voided hold changes nothing.
    Raises RedemptionNotHeld for a captured hold (use refund_redemption)."""
    now = now or timezone.now()
    hold_id = hold.pk if isinstance(hold, RedemptionHold) else hold
    with transaction.atomic():
        member_id = RedemptionHold.objects.filter(pk=hold_id).values_list("member_id", flat=True).first()
        if member_id is None:
            raise RedemptionNotFound(details={"id": hold_id})
        m = _lock_member(member_id)
        h = RedemptionHold.objects.get(pk=hold_id)
        if h.status == RedemptionHold.Status.CAPTURED:
            raise RedemptionNotHeld("A captured redemption cannot be voided; refund it.", details={"id": h.pk, "status": h.status})
        if h.status == RedemptionHold.Status.HELD:
            _void_locked(m, h, reason=reason, actor=actor, now=now)
            h.refresh_from_db()
        return h


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
            member_id = RedemptionHold.objects.filter(pk=hold_id).values_list("member_id", flat=True).first()
            m = _lock_member(member_id)
            h = RedemptionHold.objects.get(pk=hold_id)
            if h.status == RedemptionHold.Status.HELD and h.expires_at <= now:
                _void_locked(m, h, reason="expired", actor="system", now=now)
                count += 1
    return count


def redeem_points(
    *, member: Member, points: int, source: PostingSource, idempotency_key: str, now: datetime | None = None
) -> Posting:
    """Spend points at once (a till sale paid partly with points). Raises InsufficientPoints (409)."""
    now = now or timezone.now()
    points = _positive_int(points, "points")
    with transaction.atomic():
        m = _lock_member(member)
        first = _replay(idempotency_key, kind=PostingKind.REDEEM, member=m)
        if first is not None:
            return first
        if m.available < points:
            raise InsufficientPoints(details={"available": m.available, "requested": points})
        _take_from_lots(m, points)
        return _post(
            member=m, kind=PostingKind.REDEEM, source=source, now=now, points=points,
            amount_vnd=points * conf.point_value_vnd(), idempotency_key=idempotency_key, spend=points,
            entries=[(A.AVAILABLE, -points, m), (A.REDEEMED, points, None)],
        )


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
        posting = _post(
            member=m, kind=PostingKind.REFUND, source=source, now=now, points=n,
            amount_vnd=n * conf.point_value_vnd(), idempotency_key=idempotency_key, original=original,
            entries=[(A.REDEEMED, -n, None), (A.AVAILABLE, n, m)],
        )
        _new_lot(member=m, posting=posting, points=n, now=now)
        return posting


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
            posting = _post(
                member=m, kind=PostingKind.ADJUST, source=source, now=now, points=points, reason=reason,
                idempotency_key=idempotency_key, entries=[(A.ADJUSTMENTS, -points, None), (A.AVAILABLE, points, m)],
            )
            _new_lot(member=m, posting=posting, points=points, now=now)
            return posting
        debit = -points
        if m.available < debit:
            raise InsufficientPoints(details={"available": m.available, "requested": debit})
        _take_from_lots(m, debit)
        return _post(
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
