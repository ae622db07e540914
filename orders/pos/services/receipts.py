"""Goods receipts: a supplier's delivery note booked at the till (or imported from a file)."""



from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory.models import MovementReason, Store
from inventory.services import (
    StockDelta,
    apply_movements,
)
from orders.pos.models import (
    GoodsReceipt,
)
from orders.pos.services.common import _lock_rows, _products_for, first_answer, sku_lines, till_actor


def goods_receipt_matches(receipt: GoodsReceipt, *, lines: dict[str, int]) -> bool:
    """Whether a delivery note already booked under this id is the one given again: the same units per SKU (the
    source is a description: a head-office file may name the supplier differently from the till). See
    count_matches for why the content hash alone cannot tell."""
    return receipt.lines == sku_lines(lines)


@transaction.atomic
def receive_goods(
    *, store: Store, receipt_id: str, source: str, lines: dict[str, int], content_hash: str, till: str = "",
    actor: str | None = None,
) -> tuple[dict, bool]:
    """Book a delivery into the store's stock (on hand up). Returns (result, replayed). `actor` (e.g. "staff:lan"
    for an admin import) replaces the till as the ledger's actor."""
    now = timezone.now()
    first = GoodsReceipt.objects.filter(store=store, receipt_id=receipt_id).first()
    if first is not None:
        return first_answer(first, content_hash=content_hash, lines=lines, details={"receipt_id": receipt_id})
    products = _products_for(lines)
    rows = _lock_rows(store, [p.pk for p in products.values()], now=now, create_missing=True)
    try:
        with transaction.atomic():
            receipt = GoodsReceipt.objects.create(
                store=store, receipt_id=receipt_id, content_hash=content_hash, source=source[:120], received_at=now,
                lines=sku_lines(lines),
            )
    except IntegrityError:  # the same id booked meanwhile (a concurrent resend)
        first = GoodsReceipt.objects.get(store=store, receipt_id=receipt_id)
        return first_answer(first, content_hash=content_hash, lines=lines, details={"receipt_id": receipt_id})
    apply_movements(
        rows,
        [((store.pk, products[sku].pk), StockDelta(on_hand=qty)) for sku, qty in sorted(lines.items())],
        reason=MovementReason.GOODS_RECEIPT, reference=f"goods:{store.code}:{receipt_id}", actor=actor or till_actor(store, till),
        note=source[:300], now=now,
    )
    result = {"receipt_id": receipt_id, "source": source, "received_at": now.isoformat(), "lines": sku_lines(lines)}
    GoodsReceipt.objects.filter(pk=receipt.pk).update(result=result)
    return result, False
