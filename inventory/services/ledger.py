"""The stock ledger's machinery: rows locked in one fixed order, movements appended and applied, checked against
the stock rules. The public doors here are what the tills (orders.pos) use to write stock. The batch writer's
PostgreSQL statements (and COPY, services.copy_insert) are in inventory/fast_paths.py, beside their ORM twin."""


from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F, Q
from django.utils import timezone

from inventory import fast_paths
from inventory.exceptions import InvalidStockChange
from inventory.models import MovementReason, Product, Reservation, Stock, StockMovement, Store

Pair = tuple[int, int]  # (store_id, product_id)


@dataclass(frozen=True)
class StockLine:
    """A quantity of one product at one store."""

    store_id: int
    product_id: int
    quantity: int


@dataclass
class StockDelta:
    """The change of each state of one stock row (a movement's deltas). `shortfall`: units an event took beyond what
    the ledger had on hand (a till sale, a transfer shipped); a positive one flags the row for a count."""

    on_hand: int = 0
    reserved: int = 0
    safety: int = 0
    unavailable: int = 0
    shortfall: int = 0

    def is_zero(self) -> bool:
        return not (self.on_hand or self.reserved or self.safety or self.unavailable or self.shortfall)

    def add(self, other: "StockDelta") -> None:
        """Add `other`'s deltas to these (a batch's total per row)."""
        self.on_hand += other.on_hand
        self.reserved += other.reserved
        self.safety += other.safety
        self.unavailable += other.unavailable
        self.shortfall += other.shortfall


def _apply_to_row(row: Stock, delta: StockDelta) -> bool:
    """Add `delta` to the locked row object; whether the row still keeps the stock rules (every state >= 0, the
    units set aside within on hand). A positive shortfall flags the row for a count (the database demands it)."""
    row.on_hand += delta.on_hand
    row.reserved += delta.reserved
    row.safety += delta.safety
    row.unavailable += delta.unavailable
    row.shortfall += delta.shortfall
    if delta.shortfall > 0:
        row.needs_count = True
    return (
        min(row.on_hand, row.reserved, row.safety, row.unavailable, row.shortfall) >= 0
        and row.reserved + row.unavailable <= row.on_hand
    )


def flag_for_count(*, store_id: int, product_ids: Iterable[int], flagged: bool = True) -> int:
    """Mark (or, after a count, clear) the rows whose ledger a till could not follow: a sale took more than the
    ledger had, so only a count can say what is on the shelf. The flag is advice to staff, not stock: no movement.

    Clearing leaves a row with a shortfall flagged: only a count movement that takes the shortfall back to zero
    (StockDelta(shortfall=-row.shortfall)) reconciles it, and it must come first. Returns the rows changed."""
    rows = Stock.objects.filter(store_id=store_id, product_id__in=list(product_ids))
    if not flagged:
        rows = rows.filter(shortfall=0)
    return rows.update(needs_count=flagged)


def online_available(row: Stock) -> int:
    """What the website may still sell of a locked row (may be below zero: safety over what is left): on_hand -
    reserved - safety - unavailable, and nothing at all while a shortfall waits for its count. The row's
    `reserved` counts every hold on it: lock_stock_rows released the expired ones first."""
    if row.shortfall > 0:
        return 0
    return row.on_hand - row.reserved - row.safety - row.unavailable


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
        if not _apply_to_row(row, delta):
            raise InvalidStockChange(
                details={
                    "store_id": pair[0],
                    "product_id": pair[1],
                    "would_be": {
                        "on_hand": row.on_hand,
                        "reserved": row.reserved,
                        "safety": row.safety,
                        "unavailable": row.unavailable,
                        "shortfall": row.shortfall,
                    },
                }
            )
        # A positive shortfall flags the row in the same UPDATE: the database refuses a shortfall without the flag.
        flag = {"needs_count": True} if delta.shortfall > 0 else {}
        Stock.objects.filter(pk=row.pk).update(
            on_hand=F("on_hand") + delta.on_hand,
            reserved=F("reserved") + delta.reserved,
            safety=F("safety") + delta.safety,
            unavailable=F("unavailable") + delta.unavailable,
            shortfall=F("shortfall") + delta.shortfall,
            updated_at=now,
            **flag,
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
                delta_shortfall=delta.shortfall,
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
    once per movement. A row that any change gave a positive shortfall is flagged for a count in that UPDATE, as
    apply_movements does. Rows must come from lock_stock_rows."""
    totals: dict[int, StockDelta] = {}
    flagged: set[int] = set()
    movements = []
    for change in changes:
        delta = change.delta
        if delta.is_zero():
            continue
        row = rows[change.pair]
        if not _apply_to_row(row, delta):
            raise InvalidStockChange(details={"store_id": change.pair[0], "product_id": change.pair[1]})
        totals.setdefault(row.pk, StockDelta()).add(delta)
        if delta.shortfall > 0:
            flagged.add(row.pk)
        movements.append(
            StockMovement(
                store_id=change.pair[0], product_id=change.pair[1], reason=reason, delta_on_hand=delta.on_hand,
                delta_reserved=delta.reserved, delta_safety=delta.safety, delta_unavailable=delta.unavailable,
                delta_shortfall=delta.shortfall, reference=change.reference[:120],
                idempotency_key=change.idempotency_key, actor=actor[:150], note=change.note[:300], created_at=now,
            )
        )
    return fast_paths.write_movement_batch(movements, totals, flagged=flagged, now=now)


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
