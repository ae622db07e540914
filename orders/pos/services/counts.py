"""Stock counts: `counted - ledger on-hand as of counted_at` becomes a count movement (late receipts are not
counted twice; see orders.pos.services)."""


from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from inventory.exceptions import StaleStockQuantity
from inventory.models import MovementReason, StockMovement, Store
from inventory.services import (
    StockDelta,
    apply_movements,
    flag_for_count,
)
from o2o.domain_errors import InvalidInput
from orders.pos.exceptions import (
    CountBelowSetAside,
    ReceiptIdReused,
)
from orders.pos.models import (
    StockCount,
    StockCountLine,
    TillReceiptLine,
)
from orders.pos.services.common import _lock_rows, _products_for, till_actor


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


@transaction.atomic
def record_count(
    *, store: Store, count_id: str, counted_at: datetime, lines: list[CountLine], content_hash: str, till: str = "",
    actor: str | None = None,
) -> tuple[dict, bool]:
    """Apply a cycle count: per SKU, `counted - ledger on-hand as of counted_at` becomes a count movement, and the
    SKU's needs-count flag is cleared. All lines or none. Returns (result, replayed). `actor` (e.g. "staff:lan" for
    an admin import) replaces the till as the ledger's actor."""
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
    as_of = ledger_on_hand_as_of(store=store, product_ids=[p.pk for p in products.values()], at=counted_at)
    stale, below, changes, out = [], [], [], []
    for line in lines:
        pid = products[line.sku].pk
        row = rows[(store.pk, pid)]
        if line.expected_on_hand is not None and line.expected_on_hand != row.on_hand:
            stale.append({"sku": line.sku, "expected_on_hand": line.expected_on_hand, "on_hand": row.on_hand})
        adjustment = line.counted - as_of[pid]
        after = row.on_hand + adjustment
        if after < row.reserved + row.unavailable or after < 0:
            below.append({"sku": line.sku, "counted": line.counted, "on_hand_after": after, "reserved": row.reserved,
                          "unavailable": row.unavailable})
        changes.append(((store.pk, pid), StockDelta(on_hand=adjustment)))
        out.append({"sku": line.sku, "counted": line.counted, "ledger_as_of": as_of[pid], "on_hand_before": row.on_hand,
                    "adjustment": adjustment, "on_hand_after": after})
    if stale:
        raise StaleStockQuantity(details={"lines": stale})
    if below:
        raise CountBelowSetAside(details={"lines": below})
    try:
        with transaction.atomic():
            count = StockCount.objects.create(
                store=store, count_id=count_id, content_hash=content_hash, counted_at=counted_at, received_at=now
            )
    except IntegrityError:
        raise ReceiptIdReused(details={"count_id": count_id}) from None
    apply_movements(rows, changes, reason=MovementReason.COUNT, reference=f"count:{store.code}:{count_id}", actor=actor,
           note=f"counted at {counted_at.isoformat()}", now=now)
    StockCountLine.objects.bulk_create(
        [StockCountLine(count=count, product=products[o["sku"]], counted=o["counted"], ledger_as_of=o["ledger_as_of"],
                        adjustment=o["adjustment"]) for o in out]
    )
    flag_for_count(store_id=store.pk, product_ids=[p.pk for p in products.values()], flagged=False)
    result = {"count_id": count_id, "counted_at": counted_at.isoformat(), "lines": out}
    StockCount.objects.filter(pk=count.pk).update(result=result)
    return result, False
