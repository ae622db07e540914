"""Reservations: units held for checkouts and placed orders, released, committed when goods leave, expired."""


from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from inventory.exceptions import (
    InsufficientStock,
    InvalidStockChange,
    ReservationNotFound,
)
from inventory.models import MovementReason, Product, Reservation, Stock, StockMovement, Store
from inventory.services.ledger import (
    Pair,
    StockDelta,
    StockLine,
    _merge_lines,
    _release_expired_on_locked,
    _shortage_details,
    apply_movements,
    lock_stock_rows,
)
from o2o import prepared


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
