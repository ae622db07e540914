"""Stock counts: `counted - ledger on-hand as of counted_at` becomes a count movement (late receipts are not
counted twice; see orders.pos.services)."""


from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from inventory.exceptions import StaleStockQuantity
from inventory.models import EventKind, MovementReason, StockMovement, Store
from inventory.services import (
    ShopFloor,
    StockDelta,
    apply_movements,
    flag_for_count,
)
from o2o.domain_errors import InvalidInput
from orders.pos.exceptions import ReceiptIdReused
from orders.pos.models import (
    StockCount,
    StockCountLine,
    TillReceipt,
    TillReceiptLine,
)
from orders.pos.services.common import _lock_rows, _products_for, till_actor
from orders.services import reconcile_taken, takeable


@dataclass(frozen=True)
class CountLine:
    sku: str
    counted: int
    expected_on_hand: int | None = None


def ledger_on_hand_as_of(*, store: Store, product_ids, at: datetime) -> dict[int, int]:
    """The ledger's on-hand per product as of `at`: till sales placed at their time of sale, every other movement
    at the time it was recorded (see the module docstring)."""
    ids = list(product_ids)
    totals: dict[int, int] = defaultdict(int)
    moved = (
        StockMovement.objects.filter(store_id=store.pk, product_id__in=ids, created_at__lte=at)
        .exclude(reason=MovementReason.SALE)
        .values("product_id")
        .annotate(n=Sum("delta_on_hand"))
        .values_list("product_id", "n")
    )
    for pid, n in moved:
        totals[pid] += n
    sold = (
        TillReceiptLine.objects.filter(receipt__store_id=store.pk, product_id__in=ids, receipt__sold_at__lte=at)
        .values("product_id")
        .annotate(n=Sum("taken"))
        .values_list("product_id", "n")
    )
    for pid, n in sold:
        totals[pid] -= n
    return {pid: totals.get(pid, 0) for pid in ids}


def count_matches(count: StockCount, *, counted_at: datetime, lines: list[CountLine]) -> bool:
    """Whether a count already booked under this id is the one given again: the same instant and the same units per
    SKU. The content hash alone cannot tell, since each way in hashes its own form (the till its request body, the
    admin import its rows): a count sent by the till and then imported from a file, or sent again with its lines in
    another order, is the same count. `expected_on_hand` is a precondition checked when it was booked, not content."""
    if count.counted_at != counted_at:
        return False
    booked = sorted(count.lines.values_list("product__sku", "counted"))
    return booked == sorted((line.sku, line.counted) for line in lines)


def shortfall_sold_after(*, store: Store, product_ids, at: datetime) -> dict[int, int]:
    """Units sold beyond the ledger (receipt lines' shortfall) by sales made after `at`, not voided, per product:
    a count at `at` still had them on the shelf."""
    return dict(
        TillReceiptLine.objects.filter(
            receipt__store_id=store.pk, product_id__in=list(product_ids), receipt__sold_at__gt=at, shortfall__gt=0
        )
        .exclude(receipt__status=TillReceipt.Status.VOIDED)
        .values("product_id")
        .annotate(n=Sum("shortfall"))
        .values_list("product_id", "n")
    )


@dataclass(frozen=True)
class CountEffect:
    """What a count line does to its row (see record_count): on hand after it, the shortfall left, and where the
    units it did not find came from."""

    on_hand_after: int
    shortfall: int
    from_reserved: int = 0
    from_quarantine: int = 0
    kept_for_packed: int = 0


def count_effect(
    *, on_hand: int, reserved: int, unavailable: int, counted: int, as_of: int, sold_after: int,
    take: Callable[[int], int],
) -> CountEffect:
    """The one rule of a count line, shared by record_count and the admin import's preview. `take(units)` takes up
    to `units` from the row's takeable reservations and returns how many it took (the preview only counts them).

    What is on the shelf now: what was counted, moved by everything recorded since counted_at, less what sales made
    after the count sold beyond the ledger (the shelf had those units at counted_at). Still more sold than counted
    is a shortfall the ledger cannot follow yet. Units missing from what is set aside come out of the takeable
    reservations, then the quarantine; the rest is reserved for packed orders, in their bags, and stays on hand."""
    after = on_hand + counted - as_of - sold_after
    shortfall = max(0, -after)
    after = max(0, after)
    missing = reserved + unavailable - after
    if missing <= 0:
        return CountEffect(on_hand_after=after, shortfall=shortfall)
    from_reserved = take(min(missing, reserved))
    from_quarantine = min(missing - from_reserved, unavailable)
    kept_for_packed = missing - from_reserved - from_quarantine
    return CountEffect(on_hand_after=after + kept_for_packed, shortfall=shortfall, from_reserved=from_reserved,
                       from_quarantine=from_quarantine, kept_for_packed=kept_for_packed)


def record_count(
    *, store: Store, count_id: str, counted_at: datetime, lines: list[CountLine], content_hash: str, till: str = "",
    actor: str | None = None,
) -> tuple[dict, bool]:
    """Apply a cycle count: per SKU, `counted - ledger on-hand as of counted_at` becomes a count movement, the row's
    shortfall is settled and its needs-count flag cleared. All lines or none. Returns (result, replayed). `actor`
    (e.g. "staff:lan" for an admin import) replaces the till as the ledger's actor.

    The shelf is the truth (issue #18): a count below what is reserved and quarantined is recorded, not refused.
    The units missing come out of the reservations first (in orders.services.takeable's order; their holders are
    reconciled right after the commit, as after a till sale), then out of the quarantine; units still reserved for
    packed orders are in their bags, not on the shelf, and stay on hand for them (`kept_for_packed`)."""
    taken: list[int] = []
    out = _record_count(store=store, count_id=count_id, counted_at=counted_at, lines=lines,
                        content_hash=content_hash, till=till, actor=actor, taken=taken)
    reconcile_taken(ids=taken)
    return out


@transaction.atomic
def _record_count(
    *, store: Store, count_id: str, counted_at: datetime, lines: list[CountLine], content_hash: str, till: str,
    actor: str | None, taken: list[int],
) -> tuple[dict, bool]:
    now = timezone.now()
    actor = actor or till_actor(store, till)
    first = StockCount.objects.filter(store=store, count_id=count_id).first()
    if first is not None:
        if first.content_hash != content_hash and not count_matches(first, counted_at=counted_at, lines=lines):
            raise ReceiptIdReused(details={"count_id": count_id})
        return first.result, True
    if counted_at > now:
        raise InvalidInput("A count cannot be in the future.", details={"counted_at": counted_at.isoformat()})
    products = _products_for(line.sku for line in lines)
    rows = _lock_rows(store, [p.pk for p in products.values()], now=now, create_missing=True)
    # Under the row locks: a concurrent resend of the same count waits here, then finds it (or fails on the index).
    first = StockCount.objects.filter(store=store, count_id=count_id).first()
    if first is not None:
        if first.content_hash != content_hash and not count_matches(first, counted_at=counted_at, lines=lines):
            raise ReceiptIdReused(details={"count_id": count_id})
        return first.result, True
    pids = [p.pk for p in products.values()]
    as_of = ledger_on_hand_as_of(store=store, product_ids=pids, at=counted_at)
    sold_after = shortfall_sold_after(store=store, product_ids=pids, at=counted_at)
    floor = ShopFloor(rows, takeable=takeable)
    cause = f"count:{store.code}:{count_id}"
    stale, changes, out = [], [], []
    for line in lines:
        pid = products[line.sku].pk
        row = rows[(store.pk, pid)]
        if line.expected_on_hand is not None and line.expected_on_hand != row.on_hand:
            stale.append({"sku": line.sku, "expected_on_hand": line.expected_on_hand, "on_hand": row.on_hand})
        effect = count_effect(
            on_hand=row.on_hand, reserved=row.reserved, unavailable=row.unavailable, counted=line.counted,
            as_of=as_of[pid], sold_after=sold_after.get(pid, 0),
            take=lambda units, pid=pid: floor.take((store.pk, pid), units, cause=cause, use_free=False).reserved,
        )
        after, shortfall = effect.on_hand_after, effect.shortfall
        from_reserved, from_quarantine, kept_for_packed = (
            effect.from_reserved, effect.from_quarantine, effect.kept_for_packed
        )
        delta = StockDelta(on_hand=after - row.on_hand, reserved=-from_reserved, unavailable=-from_quarantine,
                           shortfall=shortfall - row.shortfall)
        changes.append(((store.pk, pid), delta))
        out.append({"sku": line.sku, "counted": line.counted, "ledger_as_of": as_of[pid], "on_hand_before": row.on_hand,
                    "adjustment": delta.on_hand, "on_hand_after": after, "taken_from_online": from_reserved,
                    "from_quarantine": from_quarantine, "kept_for_packed": kept_for_packed,
                    "shortfall_before": row.shortfall, "shortfall_after": shortfall})
    if stale:
        raise StaleStockQuantity(details={"lines": stale})
    try:
        with transaction.atomic():
            count = StockCount.objects.create(
                store=store, count_id=count_id, content_hash=content_hash, counted_at=counted_at, received_at=now
            )
    except IntegrityError:
        raise ReceiptIdReused(details={"count_id": count_id}) from None
    apply_movements(rows, changes, reason=MovementReason.COUNT, reference=cause, actor=actor,
                    note=f"counted at {counted_at.isoformat()}", now=now)
    taken.extend(floor.write(kind=EventKind.COUNT, actor=actor))
    StockCountLine.objects.bulk_create(
        [StockCountLine(count=count, product=products[o["sku"]], counted=o["counted"], ledger_as_of=o["ledger_as_of"],
                        adjustment=o["adjustment"]) for o in out]
    )
    flag_for_count(store_id=store.pk, product_ids=pids, flagged=False)  # rows left with a shortfall stay flagged
    result = {"count_id": count_id, "counted_at": counted_at.isoformat(), "lines": out}
    StockCount.objects.filter(pk=count.pk).update(result=result)
    return result, False
