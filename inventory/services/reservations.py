"""Reservations: units held for checkouts and placed orders, released, committed when goods leave, expired."""


from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from inventory import fast_paths
from inventory.exceptions import InvalidStockChange, ReservationNotFound
from inventory.models import MovementReason, Product, Reservation, Stock, Store
from inventory.services.ledger import (
    Pair,
    StockDelta,
    StockLine,
    _merge_lines,
    _release_expired_on_locked,
    apply_movements,
    lock_stock_rows,
)
from o2o.models import SalesChannel


def reserve_stock(
    *,
    lines: Iterable[StockLine],
    reference: str,
    actor: str,
    expires_at: datetime | None = None,
    channel: SalesChannel | None = None,
) -> list[Reservation]:
    """Set units aside for a checkout hold (with `expires_at`) or an order (without). All lines or none. `channel`:
    the website whose checkout hold this is (Reservation.channel), told when a store event takes the hold's units.

    Raises InsufficientStock listing every short line when any store cannot spare the units online
    (on_hand - reserved - safety - unavailable, live holds only; nothing while the row's shortfall waits for a count).

    On PostgreSQL this is one statement that writes nothing unless every line can be served, so it needs no
    savepoint of its own and a refusal leaves the caller's transaction usable; rows carrying expired holds (which
    must first be released into the ledger) and other databases take the general path (inventory/fast_paths.py:
    reserve, its two twins side by side).
    """
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise InvalidStockChange("A hold must expire in the future.")
    wanted = _merge_lines(lines)
    if not wanted:
        raise InvalidStockChange("Nothing to reserve.")
    return fast_paths.reserve(wanted, reference=reference, actor=actor, expires_at=expires_at, now=now,
                              channel_id=channel.pk if channel is not None else None)


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


def hold_stock(
    *, store: Store, quantities: dict[Product, int], ttl_seconds: int, actor: str, channel: SalesChannel | None = None
) -> Hold:
    """A checkout hold: units set aside at one store until `ttl_seconds` from now, then back on sale by themselves.
    `channel`: the website holding them (stored on each reservation; a store event that takes them tells it)."""
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
        channel=channel,
    )
    return Hold(reference, expires_at, reservations)
