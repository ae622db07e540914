"""Every write to stock. Nothing else in the project changes Stock, StockMovement or Reservation rows.

Each public action opens a transaction, locks the stock rows it touches in one fixed order (by primary key, in a
single SELECT ... FOR UPDATE), checks the rule against the locked quantities, then appends one movement per row and
applies the same deltas to the row. The database constraints on Stock are the last line of defence.
"""

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from inventory.exceptions import (
    InsufficientStock,
    InvalidStockChange,
    ReservationNotFound,
    StaleStockQuantity,
)
from inventory.models import MovementReason, Product, Reservation, Stock, StockMovement, Store
from o2o import prepared

Pair = tuple[int, int]  # (store_id, product_id)


@dataclass(frozen=True)
class StockLine:
    """A quantity of one product at one store."""

    store_id: int
    product_id: int
    quantity: int


@dataclass
class StockDelta:
    on_hand: int = 0
    reserved: int = 0
    safety: int = 0
    unavailable: int = 0

    def is_zero(self) -> bool:
        return not (self.on_hand or self.reserved or self.safety or self.unavailable)


def flag_for_count(*, store_id: int, product_ids: Iterable[int], flagged: bool = True) -> int:
    """Mark (or, after a count, clear) the rows whose ledger a till could not follow: a sale took more than the
    ledger had, so only a count can say what is on the shelf. The flag is advice to staff, not stock: no movement."""
    return Stock.objects.filter(store_id=store_id, product_id__in=list(product_ids)).update(needs_count=flagged)


def online_available(row: Stock) -> int:
    return row.on_hand - row.reserved - row.safety - row.unavailable


# --- locking and applying -----------------------------------------------------------------------------------------


def _pairs_filter(pairs: Iterable[Pair]) -> Q:
    by_store: dict[int, set[int]] = defaultdict(set)
    for store_id, product_id in pairs:
        by_store[store_id].add(product_id)
    q = Q(pk__in=[])
    for store_id, product_ids in by_store.items():
        q |= Q(store_id=store_id, product_id__in=product_ids)
    return q


def lock_stock_rows(
    pairs: Iterable[Pair], *, create_missing: bool = False, now: datetime | None = None, release_expired: bool = True
) -> dict[Pair, Stock]:
    """Lock the stock rows of `pairs` in primary-key order and release any expired holds on them first."""
    pairs = set(pairs)
    if not pairs:
        return {}
    if create_missing:
        Stock.objects.bulk_create(
            [Stock(store_id=s, product_id=p) for s, p in pairs], ignore_conflicts=True, batch_size=500
        )
    rows = {
        (row.store_id, row.product_id): row
        for row in Stock.objects.select_for_update().filter(_pairs_filter(pairs)).order_by("pk")
    }
    if release_expired:
        _release_expired_on_locked(rows, now=now or timezone.now())
    return rows


def apply_movements(
    rows: dict[Pair, Stock],
    changes: Sequence[tuple[Pair, StockDelta]],
    *,
    reason: str,
    reference: str,
    actor: str,
    note: str = "",
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> list[StockMovement]:
    """Append one movement per change and apply its deltas to the locked row. Rows must come from lock_stock_rows."""
    now = now or timezone.now()
    movements = []
    for index, (pair, delta) in enumerate(changes):
        if delta.is_zero():
            continue
        row = rows[pair]
        row.on_hand += delta.on_hand
        row.reserved += delta.reserved
        row.safety += delta.safety
        row.unavailable += delta.unavailable
        if min(row.on_hand, row.reserved, row.safety, row.unavailable) < 0 or row.reserved + row.unavailable > row.on_hand:
            raise InvalidStockChange(
                details={
                    "store_id": pair[0],
                    "product_id": pair[1],
                    "would_be": {
                        "on_hand": row.on_hand,
                        "reserved": row.reserved,
                        "safety": row.safety,
                        "unavailable": row.unavailable,
                    },
                }
            )
        Stock.objects.filter(pk=row.pk).update(
            on_hand=F("on_hand") + delta.on_hand,
            reserved=F("reserved") + delta.reserved,
            safety=F("safety") + delta.safety,
            unavailable=F("unavailable") + delta.unavailable,
            updated_at=now,
        )
        key = None
        if idempotency_key:
            key = idempotency_key if len(changes) == 1 else f"{idempotency_key}#{index}"
        movements.append(
            StockMovement(
                store_id=pair[0],
                product_id=pair[1],
                reason=reason,
                delta_on_hand=delta.on_hand,
                delta_reserved=delta.reserved,
                delta_safety=delta.safety,
                delta_unavailable=delta.unavailable,
                reference=reference[:120],
                idempotency_key=key,
                actor=actor[:150],
                note=note[:300],
                created_at=now,
            )
        )
    return StockMovement.objects.bulk_create(movements)


@dataclass(frozen=True)
class StockChange:
    """One movement of a batch applied by apply_movement_batch: its own reference, idempotency key and note."""

    pair: Pair
    delta: StockDelta
    reference: str
    idempotency_key: str | None = None
    note: str = ""


def apply_movement_batch(rows: dict[Pair, Stock], changes: Sequence[StockChange], *, reason: str, actor: str,
                now: datetime) -> list[StockMovement]:
    """apply_movements for many references at once (a batch of till sales): one movement per change, the rules checked after
    each change in order, and each touched row written once — one UPDATE for all of them on PostgreSQL — instead of
    once per movement. Rows must come from lock_stock_rows."""
    totals: dict[int, StockDelta] = {}
    movements = []
    for change in changes:
        delta = change.delta
        if delta.is_zero():
            continue
        row = rows[change.pair]
        row.on_hand += delta.on_hand
        row.reserved += delta.reserved
        row.safety += delta.safety
        row.unavailable += delta.unavailable
        if min(row.on_hand, row.reserved, row.safety, row.unavailable) < 0 or row.reserved + row.unavailable > row.on_hand:
            raise InvalidStockChange(details={"store_id": change.pair[0], "product_id": change.pair[1]})
        total = totals.setdefault(row.pk, StockDelta())
        total.on_hand += delta.on_hand
        total.reserved += delta.reserved
        total.safety += delta.safety
        total.unavailable += delta.unavailable
        movements.append(
            StockMovement(
                store_id=change.pair[0], product_id=change.pair[1], reason=reason, delta_on_hand=delta.on_hand,
                delta_reserved=delta.reserved, delta_safety=delta.safety, delta_unavailable=delta.unavailable,
                reference=change.reference[:120], idempotency_key=change.idempotency_key, actor=actor[:150],
                note=change.note[:300], created_at=now,
            )
        )
    ids = sorted(totals)
    if ids and connection.vendor == "postgresql":
        copy_insert(StockMovement, movements)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Stock._meta.db_table} AS s SET on_hand = s.on_hand + v.on_hand, "
                "reserved = s.reserved + v.reserved, safety = s.safety + v.safety, "
                "unavailable = s.unavailable + v.unavailable, updated_at = %s "
                "FROM UNNEST(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) "
                "AS v(id, on_hand, reserved, safety, unavailable) WHERE s.id = v.id",
                [now, ids, *([getattr(totals[i], f) for i in ids] for f in ("on_hand", "reserved", "safety", "unavailable"))],
            )
        return movements
    for pk in ids:
        t = totals[pk]
        Stock.objects.filter(pk=pk).update(
            on_hand=F("on_hand") + t.on_hand, reserved=F("reserved") + t.reserved, safety=F("safety") + t.safety,
            unavailable=F("unavailable") + t.unavailable, updated_at=now,
        )
    return StockMovement.objects.bulk_create(movements)


def copy_insert(model, objs: Sequence, *, with_ids: bool = False) -> None:
    """Insert many new rows of `model` with PostgreSQL's COPY (a batch of till sales writes thousands of rows;
    bulk_create spends more time preparing them than the database takes to store them). With `with_ids`, primary
    keys are taken from the table's sequence first and set on the objects. Same columns and values as bulk_create;
    no signals (none are used on these tables)."""
    if not objs:
        return
    table = model._meta.db_table
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    if with_ids:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [table, model._meta.pk.column, len(objs)],
            )
            for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
                obj.pk = pk
        fields = [model._meta.pk, *fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    json_fields = {f.attname for f in fields if f.get_internal_type() == "JSONField"}
    # The raw psycopg cursor's errors are wrapped like Django's own (an IntegrityError stays an IntegrityError).
    with connection.wrap_database_errors, connection.cursor() as cursor, \
            cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for obj in objs:
            copy.write_row([
                json.dumps(getattr(obj, f.attname)) if f.attname in json_fields else getattr(obj, f.attname)
                for f in fields
            ])


def _release_expired_on_locked(rows: dict[Pair, Stock], *, now: datetime) -> int:
    """Release holds that expired on rows this transaction has locked. Returns the units released."""
    if not rows:
        return 0
    expired = list(
        Reservation.objects.filter(_pairs_filter(rows.keys()), expires_at__lte=now).values_list(
            "pk", "store_id", "product_id", "quantity", "reference"
        )
    )
    if not expired:
        return 0
    per_pair: dict[Pair, int] = defaultdict(int)
    for _pk, store_id, product_id, quantity, _ref in expired:
        per_pair[(store_id, product_id)] += quantity
    Reservation.objects.filter(pk__in=[e[0] for e in expired]).delete()
    apply_movements(
        rows,
        [(pair, StockDelta(reserved=-qty)) for pair, qty in sorted(per_pair.items())],
        reason=MovementReason.HOLD_EXPIRED,
        reference="expired holds",
        actor="system",
        now=now,
    )
    return sum(per_pair.values())


def _merge_lines(lines: Iterable[StockLine]) -> dict[Pair, int]:
    merged: dict[Pair, int] = defaultdict(int)
    for line in lines:
        if not isinstance(line.quantity, int) or line.quantity <= 0:
            raise InvalidStockChange("Quantities must be positive whole numbers.", details={"quantity": line.quantity})
        merged[(line.store_id, line.product_id)] += line.quantity
    return dict(merged)


def _shortage_details(pairs_wanted: dict[Pair, int], rows: dict[Pair, Stock]) -> list[dict]:
    short = []
    for pair, wanted in sorted(pairs_wanted.items()):
        row = rows.get(pair)
        available = max(0, online_available(row)) if row else 0
        if available < wanted:
            short.append({"store_id": pair[0], "product_id": pair[1], "requested": wanted, "available": available})
    if short:
        codes = dict(Store.objects.filter(pk__in={s["store_id"] for s in short}).values_list("pk", "code"))
        skus = dict(Product.objects.filter(pk__in={s["product_id"] for s in short}).values_list("pk", "sku"))
        for entry in short:
            entry["store"] = codes.get(entry["store_id"])
            entry["sku"] = skus.get(entry["product_id"])
    return short


# --- reservations --------------------------------------------------------------------------------------------------


def reserve_stock(
    *,
    lines: Iterable[StockLine],
    reference: str,
    actor: str,
    expires_at: datetime | None = None,
) -> list[Reservation]:
    """Set units aside for a checkout hold (with `expires_at`) or an order (without). All lines or none.

    Raises InsufficientStock listing every short line when any store cannot spare the units online
    (on_hand - reserved - safety - unavailable, live holds only).

    On PostgreSQL this is one statement (_reserve_in_one_statement) that writes nothing unless every line can be
    served, so it needs no savepoint of its own; rows carrying expired holds (which must first be released into the
    ledger) and other databases take the general path below.
    """
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise InvalidStockChange("A hold must expire in the future.")
    wanted = _merge_lines(lines)
    if not wanted:
        raise InvalidStockChange("Nothing to reserve.")
    if connection.vendor == "postgresql":
        with transaction.atomic(savepoint=False):
            outcome = _reserve_in_one_statement(wanted, reference=reference, actor=actor, expires_at=expires_at, now=now)
        if isinstance(outcome, list):
            return outcome
        if outcome is not None:  # nothing was written; raised outside the atomic block so the caller's stays usable
            raise InsufficientStock(_shortage_details(wanted, outcome))
    return _reserve_locked(wanted, reference=reference, actor=actor, expires_at=expires_at, now=now)


@transaction.atomic
def _reserve_locked(
    wanted: dict[Pair, int], *, reference: str, actor: str, expires_at: datetime | None, now: datetime
) -> list[Reservation]:
    rows = lock_stock_rows(wanted.keys(), now=now)
    short = _shortage_details(wanted, rows)
    if short:
        raise InsufficientStock(short)
    apply_movements(
        rows,
        [(pair, StockDelta(reserved=qty)) for pair, qty in sorted(wanted.items())],
        reason=MovementReason.RESERVE,
        reference=reference,
        actor=actor,
        now=now,
    )
    return Reservation.objects.bulk_create(
        [
            Reservation(
                store_id=pair[0], product_id=pair[1], quantity=qty, reference=reference, expires_at=expires_at, created_at=now
            )
            for pair, qty in sorted(wanted.items())
        ]
    )


def _reserve_in_one_statement(
    wanted: dict[Pair, int], *, reference: str, actor: str, expires_at: datetime | None, now: datetime
) -> list[Reservation] | dict[Pair, Stock] | None:
    """reserve_stock in one round trip (PostgreSQL): lock the rows in primary-key order (FOR UPDATE returns their
    latest committed quantities), check every line, and only if all can be served raise `reserved`, append the
    movements and insert the reservations. The same locks, order, rule and ledger as the general path.

    Returns the reservations; or the locked rows (as unsaved Stock objects, for the shortage details) when a line
    is short; or None when a row has an expired hold to release first (general path). Writes nothing unless it
    returns reservations."""
    pairs = sorted(wanted)
    params = {
        "stores": [s for s, _ in pairs],
        "products": [p for _, p in pairs],
        "qty": [wanted[pair] for pair in pairs],
        "now": now,
        "expires_at": expires_at,
        "reason": MovementReason.RESERVE.value,
        "reference": reference[:120],
        "actor": actor[:150],
    }
    stock_t, movement_t, hold_t = Stock._meta.db_table, StockMovement._meta.db_table, Reservation._meta.db_table
    sql = f"""
        WITH wanted AS (
            SELECT * FROM unnest(%(stores)s::bigint[], %(products)s::bigint[], %(qty)s::bigint[])
                AS w(store_id, product_id, qty)
        ), locked AS MATERIALIZED (
            SELECT st.id, st.store_id, st.product_id, st.on_hand, st.reserved, st.safety, st.unavailable
            FROM {stock_t} st JOIN wanted w ON w.store_id = st.store_id AND w.product_id = st.product_id
            ORDER BY st.id
            FOR UPDATE OF st
        ), checked AS MATERIALIZED (
            SELECT w.store_id, w.product_id, w.qty, l.id, l.on_hand, l.reserved, l.safety, l.unavailable,
                   (SELECT count(*) FROM {hold_t} h
                    WHERE h.product_id = w.product_id AND h.store_id = w.store_id AND h.expires_at <= %(now)s) AS expired
            FROM wanted w LEFT JOIN locked l ON l.store_id = w.store_id AND l.product_id = w.product_id
        ), verdict AS MATERIALIZED (
            SELECT bool_and(id IS NOT NULL AND expired = 0
                            AND on_hand - reserved - safety - unavailable >= qty) AS ok FROM checked
        ), raised AS (
            UPDATE {stock_t} st SET reserved = st.reserved + c.qty, updated_at = %(now)s
            FROM checked c, verdict v WHERE v.ok AND st.id = c.id
        ), moved AS (
            INSERT INTO {movement_t} (store_id, product_id, reason, delta_on_hand, delta_reserved, delta_safety,
                                      delta_unavailable, reference, idempotency_key, actor, note, created_at)
            SELECT c.store_id, c.product_id, %(reason)s, 0, c.qty, 0, 0, %(reference)s, NULL, %(actor)s, '', %(now)s
            FROM checked c, verdict v WHERE v.ok ORDER BY c.store_id, c.product_id
        ), held AS (
            INSERT INTO {hold_t} (store_id, product_id, quantity, reference, expires_at, created_at)
            SELECT c.store_id, c.product_id, c.qty, %(reference)s, %(expires_at)s::timestamptz, %(now)s::timestamptz
            FROM checked c, verdict v WHERE v.ok ORDER BY c.store_id, c.product_id
            RETURNING id, store_id, product_id
        )
        SELECT c.store_id, c.product_id, c.id, c.on_hand, c.reserved, c.safety, c.unavailable, c.expired, v.ok, h.id
        FROM checked c CROSS JOIN verdict v
        LEFT JOIN held h ON h.store_id = c.store_id AND h.product_id = c.product_id
        ORDER BY c.store_id, c.product_id
    """
    with prepared.cursor() as cursor:
        # Take the row locks in a statement of their own first. With the locks taken inside the writing statement
        # itself, a mixed race of multi-line carts, till sales and releases let a cart through that no longer fit
        # (the CHECK refused reserved > on_hand; tests/inventory/test_concurrency.py reproduces it): READ COMMITTED
        # re-reads a row changed concurrently when it locks it, but the rest of a statement keeps the snapshot it
        # started with. The next statement starts after the locks, from every locked row's latest version.
        cursor.execute(
            f"""SELECT st.id FROM {stock_t} st
                JOIN unnest(%(stores)s::bigint[], %(products)s::bigint[]) AS w(store_id, product_id)
                  ON w.store_id = st.store_id AND w.product_id = st.product_id
                ORDER BY st.id FOR UPDATE OF st""",
            params,
        )
        cursor.execute(sql, params)
        result = cursor.fetchall()
    if result[0][8]:
        held = []
        for store_id, product_id, *_, hold_id in result:
            hold = Reservation(
                pk=hold_id, store_id=store_id, product_id=product_id, quantity=wanted[(store_id, product_id)],
                reference=reference[:120], expires_at=expires_at, created_at=now,
            )
            hold._state.adding, hold._state.db = False, connection.alias
            held.append(hold)
        return held
    if any(expired for *_, expired, _ok, _hold in result):
        return None
    return {
        (store_id, product_id): Stock(
            pk=stock_id, store_id=store_id, product_id=product_id, on_hand=on_hand, reserved=reserved, safety=safety,
            unavailable=unavailable,
        )
        for store_id, product_id, stock_id, on_hand, reserved, safety, unavailable, *_ in result
        if stock_id is not None
    }


def _lock_reservations(reference: str, *, now: datetime) -> tuple[dict[Pair, Stock], list[Reservation]]:
    pairs = set(Reservation.objects.filter(reference=reference).values_list("store_id", "product_id"))
    rows = lock_stock_rows(pairs, now=now)  # releases expired holds of this reference too
    reservations = list(Reservation.objects.filter(reference=reference).order_by("pk"))
    return rows, reservations


@transaction.atomic
def release_reservations(*, reference: str, actor: str, reason: str = MovementReason.RELEASE, note: str = "") -> int:
    """Give reserved units back to sale (cancelled order, released hold). Returns the units released; 0 if none
    were live (releasing twice is harmless)."""
    now = timezone.now()
    rows, reservations = _lock_reservations(reference, now=now)
    if not reservations:
        return 0
    per_pair: dict[Pair, int] = defaultdict(int)
    for r in reservations:
        per_pair[(r.store_id, r.product_id)] += r.quantity
    Reservation.objects.filter(pk__in=[r.pk for r in reservations]).delete()
    apply_movements(
        rows,
        [(pair, StockDelta(reserved=-qty)) for pair, qty in sorted(per_pair.items())],
        reason=reason,
        reference=reference,
        actor=actor,
        note=note,
        now=now,
    )
    return sum(per_pair.values())


@transaction.atomic
def commit_reservations(
    *, reference: str, actor: str, quantities: dict[int, int] | None = None, note: str = ""
) -> dict[int, int]:
    """Goods leave the store: on-hand and reserved go down together.

    `quantities` (product_id -> units) commits part of what is reserved (the rest stays reserved for the caller to
    release or re-route); by default everything reserved under `reference` is committed. Returns what was committed.
    """
    now = timezone.now()
    rows, reservations = _lock_reservations(reference, now=now)
    if not reservations:
        raise ReservationNotFound(details={"reference": reference})
    remaining = dict(quantities) if quantities is not None else None
    committed: dict[Pair, int] = defaultdict(int)
    for r in reservations:
        take = r.quantity if remaining is None else min(r.quantity, remaining.get(r.product_id, 0))
        if take <= 0:
            continue
        if remaining is not None:
            remaining[r.product_id] -= take
        committed[(r.store_id, r.product_id)] += take
        if take == r.quantity:
            r.delete()
        else:
            Reservation.objects.filter(pk=r.pk).update(quantity=F("quantity") - take)
    if remaining and any(v > 0 for v in remaining.values()):
        raise InvalidStockChange(
            "Cannot commit more than is reserved.", details={"over": {k: v for k, v in remaining.items() if v > 0}}
        )
    apply_movements(
        rows,
        [(pair, StockDelta(on_hand=-qty, reserved=-qty)) for pair, qty in sorted(committed.items())],
        reason=MovementReason.COMMIT,
        reference=reference,
        actor=actor,
        note=note,
        now=now,
    )
    return {pair[1]: qty for pair, qty in committed.items()}


def release_expired_holds(*, now: datetime | None = None, batch_size: int = 200) -> int:
    """The periodic clean-up: release every hold whose expiry has passed, a batch of stock rows per transaction.
    Readers already ignore expired holds; this puts the release into the ledger and deletes the rows."""
    now = now or timezone.now()
    released = 0
    while True:
        pairs = list(
            Reservation.objects.filter(expires_at__lte=now)
            .values_list("store_id", "product_id")
            .distinct()
            .order_by("store_id", "product_id")[:batch_size]
        )
        if not pairs:
            return released
        with transaction.atomic():
            rows = lock_stock_rows(pairs, now=now, release_expired=False)
            released += _release_expired_on_locked(rows, now=now)


# --- adjustments ---------------------------------------------------------------------------------------------------


@transaction.atomic
def adjust_stock(
    *,
    store: Store,
    product: Product,
    reason: str,
    actor: str,
    on_hand: int = 0,
    unavailable: int = 0,
    safety: int = 0,
    reference: str = "",
    note: str = "",
    idempotency_key: str | None = None,
) -> StockMovement:
    """Change one stock row by deltas (a goods receipt, a damage, a correction). Refused with InvalidStockChange if
    the row would become impossible (e.g. less on hand than reserved). With an idempotency key, a replay returns
    the first movement and changes nothing."""
    if reason not in MovementReason.values:
        raise InvalidStockChange(f"Unknown reason {reason!r}.")
    delta = StockDelta(on_hand=on_hand, unavailable=unavailable, safety=safety)
    if delta.is_zero():
        raise InvalidStockChange("The adjustment changes nothing.")
    pair = (store.pk, product.pk)
    rows = lock_stock_rows([pair], create_missing=True)
    if idempotency_key:
        # Checked under the row lock, so a concurrent replay of the same call waits and then finds the first.
        first = StockMovement.objects.filter(idempotency_key=idempotency_key).first()
        if first is not None:
            return first
    try:
        with transaction.atomic():
            (movement,) = apply_movements(
                rows,
                [(pair, delta)],
                reason=reason,
                reference=reference,
                actor=actor,
                note=note,
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        # Only a concurrent call with the same idempotency key gets here (the row lock serialises the rest).
        first = StockMovement.objects.filter(idempotency_key=idempotency_key).first()
        if first is None:
            raise
        return first
    return movement


@transaction.atomic
def set_stock_levels(
    *,
    store: Store,
    product: Product,
    actor: str,
    reason: str = MovementReason.COUNT,
    on_hand: int | None = None,
    safety: int | None = None,
    target: int | None = None,
    expected_on_hand: int | None = None,
    reference: str = "",
    note: str = "",
) -> StockMovement | None:
    """Set absolute levels (a count, a new safety stock). `expected_on_hand` makes it a compare-and-set: refused
    with StaleStockQuantity when the ledger has moved since the caller looked. Returns None if nothing changed."""
    for name, value in (("on_hand", on_hand), ("safety", safety), ("target", target)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise InvalidStockChange(f"{name} must be a whole number ≥ 0.")
    pair = (store.pk, product.pk)
    rows = lock_stock_rows([pair], create_missing=True)
    row = rows[pair]
    if expected_on_hand is not None and row.on_hand != expected_on_hand:
        raise StaleStockQuantity(details={"expected_on_hand": expected_on_hand, "on_hand": row.on_hand})
    if target is not None and target != row.target:
        Stock.objects.filter(pk=row.pk).update(target=target)
    delta = StockDelta(
        on_hand=(on_hand - row.on_hand) if on_hand is not None else 0,
        safety=(safety - row.safety) if safety is not None else 0,
    )
    if delta.is_zero():
        return None
    if delta.on_hand == 0 and reason == MovementReason.COUNT:
        reason = MovementReason.SAFETY_CHANGE
    (movement,) = apply_movements(rows, [(pair, delta)], reason=reason, reference=reference, actor=actor, note=note)
    return movement


# --- bulk loading --------------------------------------------------------------------------------------------------


def load_opening_balances(*, rows: Iterable[tuple[int, int, int, int, int]], actor: str, batch_size: int = 5000) -> int:
    """Create stock rows (store_id, product_id, on_hand, safety, target) for pairs that have none, each with its
    opening-balance movement. For a new chain or new products; existing rows are left alone. Returns rows created."""
    now = timezone.now()
    created = 0
    batch: list[tuple[int, int, int, int, int]] = []

    def flush() -> int:
        with transaction.atomic():
            existing = set(
                Stock.objects.filter(_pairs_filter((s, p) for s, p, *_ in batch)).values_list("store_id", "product_id")
            )
            fresh = [r for r in batch if (r[0], r[1]) not in existing]
            Stock.objects.bulk_create(
                [Stock(store_id=s, product_id=p, on_hand=oh, safety=sf, target=tg, updated_at=now) for s, p, oh, sf, tg in fresh]
            )
            StockMovement.objects.bulk_create(
                [
                    StockMovement(
                        store_id=s,
                        product_id=p,
                        reason=MovementReason.OPENING_BALANCE,
                        delta_on_hand=oh,
                        delta_safety=sf,
                        reference="opening balance",
                        actor=actor,
                        created_at=now,
                    )
                    for s, p, oh, sf, _tg in fresh
                    if oh or sf
                ]
            )
            return len(fresh)

    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            created += flush()
            batch = []
    if batch:
        created += flush()
    return created


def load_synthetic_stock_postgres(
    *,
    store_ids: Sequence[int],
    seed: int,
    actor: str,
    scarce_share: float = 0.2,
    product_ids: Sequence[int] | None = None,
) -> int:
    """PostgreSQL fast path of the chain generator: a stock row and its opening-balance movement for every product
    (or every one of `product_ids`) at the given stores, generated server-side by INSERT ... SELECT. Quantities come
    from a hash of the seed, the store code and the SKU, so they are the same whatever the batch order and whatever
    ids the rows get (a regenerated chain has the same stock). About `scarce_share` of SKUs are scarce (0–2 units);
    the rest hold 0–40; safety 0–2. Pairs that already have a stock row are left alone, so the ledger audit holds.
    Returns the stock rows created.

    One transaction per call, committed without waiting for the WAL flush (a crash loses the whole batch, never
    half of it). When the stores have no stock yet, two plain INSERTs are used (a concurrent writer makes the batch
    fail on the unique constraint rather than double-count). As a superuser, and only if the tables carry no
    triggers of their own, the per-row foreign-key triggers are replaced by locking the referenced stores and
    products FOR KEY SHARE up front — the same guarantee (they exist and cannot go away before commit) for two
    statements instead of four trigger calls per pair, which is most of the cost at 10 M rows."""
    if connection.vendor != "postgresql":
        raise RuntimeError("load_synthetic_stock_postgres needs PostgreSQL")
    stock_table = Stock._meta.db_table
    movement_table = StockMovement._meta.db_table
    product_table = Product._meta.db_table
    store_table = Store._meta.db_table
    params = {
        "seed": str(seed),
        "seed_int": seed % (2**63),
        "scarce": int(scarce_share * 1000),
        "store_ids": list(store_ids),
        "all_products": product_ids is None,
        "product_ids": list(product_ids or []),
        "actor": actor,
    }
    # Per-store and per-product hashes are computed once; each pair is then mixed with one integer hash.
    generated = f"""
        WITH st AS (
            SELECT s.id, hashtext(%(seed)s || ':s:' || s.code)::bigint AS h
            FROM {store_table} s WHERE s.id = ANY(%(store_ids)s::bigint[])
        ), pr AS (
            SELECT p.id, hashtext(%(seed)s || ':p:' || p.sku)::bigint AS h,
                   (hashtext(%(seed)s || ':scarce:' || p.sku)::bigint + 2147483648) %% 1000 < %(scarce)s AS scarce
            FROM {product_table} p
            WHERE %(all_products)s OR p.id = ANY(%(product_ids)s::bigint[])
        ), pairs AS (
            SELECT st.id AS store_id, pr.id AS product_id, pr.scarce,
                   hashint8extended((st.h << 32) | (pr.h & 4294967295), %(seed_int)s) AS h
            FROM st CROSS JOIN pr
        ), generated AS (
            SELECT store_id, product_id,
                   CASE WHEN scarce THEN ((h %% 3) + 3) %% 3 ELSE ((h %% 41) + 41) %% 41 END AS on_hand,
                   (((h >> 32) %% 3) + 3) %% 3 AS safety
            FROM pairs
        )"""
    stock_columns = "store_id, product_id, on_hand, reserved, safety, unavailable, target, needs_count, updated_at"
    stock_values = "store_id, product_id, on_hand, 0, safety, 0, 20, false, now()"
    movement_columns = (
        "store_id, product_id, reason, delta_on_hand, delta_reserved, delta_safety, delta_unavailable, reference, "
        "idempotency_key, actor, note, created_at"
    )
    movement_values = (
        "store_id, product_id, 'opening_balance', on_hand, 0, safety, 0, 'opening balance', NULL, %(actor)s, '', now()"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        # Only this bulk transaction: durability of the batch is not worth a WAL flush wait (see docstring).
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(
            """SELECT current_setting('is_superuser') = 'on'
                      AND NOT EXISTS (SELECT 1 FROM pg_trigger
                                      WHERE tgrelid IN (%s::regclass, %s::regclass) AND NOT tgisinternal)""",
            [stock_table, movement_table],
        )
        if cursor.fetchone()[0]:
            cursor.execute(f"SELECT 1 FROM {store_table} WHERE id = ANY(%(store_ids)s::bigint[]) FOR KEY SHARE", params)
            cursor.execute(
                f"""SELECT 1 FROM {product_table} WHERE %(all_products)s OR id = ANY(%(product_ids)s::bigint[])
                    FOR KEY SHARE""",
                params,
            )
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {stock_table} WHERE store_id = ANY(%(store_ids)s::bigint[]))", params)
        if not cursor.fetchone()[0]:
            cursor.execute(
                f"{generated} INSERT INTO {stock_table} ({stock_columns}) "
                f"SELECT {stock_values} FROM generated ORDER BY product_id, store_id",
                params,
            )
            created = cursor.rowcount
            cursor.execute(
                f"{generated} INSERT INTO {movement_table} ({movement_columns}) "
                f"SELECT {movement_values} FROM generated WHERE on_hand <> 0 OR safety <> 0 ORDER BY product_id, store_id",
                params,
            )
        else:
            cursor.execute(
                f"""{generated}, inserted AS (
                        INSERT INTO {stock_table} ({stock_columns})
                        SELECT {stock_values} FROM generated ORDER BY product_id, store_id
                        ON CONFLICT DO NOTHING
                        RETURNING store_id, product_id, on_hand, safety
                    ), moved AS (
                        INSERT INTO {movement_table} ({movement_columns})
                        SELECT {movement_values} FROM inserted WHERE on_hand <> 0 OR safety <> 0
                    )
                    SELECT count(*) FROM inserted""",
                params,
            )
            created = cursor.fetchone()[0]
        cursor.execute("SET LOCAL session_replication_role = origin")
        return created


@dataclass(frozen=True)
class Hold:
    reference: str
    expires_at: datetime
    reservations: list[Reservation]


def hold_stock(*, store: Store, quantities: dict[Product, int], ttl_seconds: int, actor: str) -> Hold:
    """A checkout hold: units set aside at one store until `ttl_seconds` from now, then back on sale by themselves."""
    import uuid

    if ttl_seconds <= 0:
        raise InvalidStockChange("A hold needs a positive time to live.")
    reference = f"hold:{uuid.uuid4().hex}"
    expires_at = timezone.now() + timedelta(seconds=ttl_seconds)
    reservations = reserve_stock(
        lines=[StockLine(store.pk, product.pk, qty) for product, qty in quantities.items()],
        reference=reference,
        actor=actor,
        expires_at=expires_at,
    )
    return Hold(reference, expires_at, reservations)
