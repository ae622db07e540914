"""Transfers between stores: shipped (stock leaves the sender) and received (it arrives at the receiver)."""



from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory.models import EventKind, MovementReason, Store
from inventory.services import (
    ShopFloor,
    StockDelta,
    apply_movements,
)
from o2o.domain_errors import InvalidInput
from orders.pos.exceptions import (
    ReceiptIdReused,
    TransferAlreadyReceived,
    TransferNotFound,
)
from orders.pos.models import (
    StockTransfer,
    StockTransferLine,
)
from orders.pos.services.common import _lock_rows, _products_for, till_actor
from orders.services import reconcile_taken, takeable


def transfer_result(transfer: StockTransfer) -> dict:
    return {
        "id": transfer.pk,
        "transfer_id": transfer.transfer_id,
        "from_store": transfer.from_store.code,
        "to_store": transfer.to_store.code,
        "status": transfer.status,
        "shipped_at": transfer.shipped_at.isoformat(),
        "received_at": transfer.received_at.isoformat() if transfer.received_at else None,
        "lines": [
            {"sku": line.product.sku, "shipped_qty": line.shipped_qty, "received_qty": line.received_qty,
             "discrepancy": line.discrepancy}
            for line in transfer.lines.select_related("product").order_by("id")
        ],
    }


def ship_transfer(
    *, store: Store, to_store_code: str, transfer_id: str, lines: dict[str, int], content_hash: str, till: str = "",
    note: str = "",
) -> tuple[dict, bool]:
    """Ship units to another store: the goods have left, so the shipment is recorded as it happened (issue #18): on
    hand down here by the units the ledger had free, then by units taken from online reservations (their holders
    reconciled right after the commit, as for a till sale), the rest a shortfall (the row flagged for a count). In
    transit until the other store receives them. Returns (result, replayed)."""
    taken: list[int] = []
    out = _ship_transfer(store=store, to_store_code=to_store_code, transfer_id=transfer_id, lines=lines,
                         content_hash=content_hash, till=till, note=note, taken=taken)
    reconcile_taken(ids=taken)
    return out


@transaction.atomic
def _ship_transfer(
    *, store: Store, to_store_code: str, transfer_id: str, lines: dict[str, int], content_hash: str, till: str,
    note: str, taken: list[int],
) -> tuple[dict, bool]:
    now = timezone.now()
    first = StockTransfer.objects.filter(from_store=store, transfer_id=transfer_id).first()
    if first is not None:
        if first.content_hash != content_hash:
            raise ReceiptIdReused(details={"transfer_id": transfer_id})
        return transfer_result(first), True
    to_store = Store.objects.filter(code=to_store_code, is_active=True).exclude(pk=store.pk).first()
    if to_store is None:
        raise InvalidInput("Unknown destination store.", details={"to_store": to_store_code})
    products = _products_for(lines)
    rows = _lock_rows(store, [p.pk for p in products.values()], now=now, create_missing=True)
    try:
        with transaction.atomic():
            transfer = StockTransfer.objects.create(
                from_store=store, to_store=to_store, transfer_id=transfer_id, content_hash=content_hash, shipped_at=now,
                note=note[:300],
            )
    except IntegrityError:
        first = StockTransfer.objects.get(from_store=store, transfer_id=transfer_id)
        if first.content_hash != content_hash:
            raise ReceiptIdReused(details={"transfer_id": transfer_id}) from None
        return transfer_result(first), True
    StockTransferLine.objects.bulk_create(
        [StockTransferLine(transfer=transfer, product=products[sku], shipped_qty=qty) for sku, qty in sorted(lines.items())]
    )
    floor = ShopFloor(rows, takeable=takeable)
    takes = [floor.take((store.pk, products[sku].pk), qty, cause=transfer.reference) for sku, qty in sorted(lines.items())]
    actor = till_actor(store, till)
    apply_movements(rows, [(t.pair, t.leaving()) for t in takes], reason=MovementReason.TRANSFER_OUT,
                    reference=transfer.reference, actor=actor, note=f"to {to_store.code}", now=now)
    taken.extend(floor.write(kind=EventKind.TRANSFER, actor=actor))
    return transfer_result(transfer), False


@transaction.atomic
def receive_transfer(
    *, store: Store, transfer_pk: int, received: dict[str, int], content_hash: str, till: str = ""
) -> tuple[dict, bool]:
    """Book what arrived of a transfer to this store: on hand up by the units received; shipped minus received is
    recorded per line as the discrepancy (SKUs not listed arrived with 0). Returns (result, replayed)."""
    now = timezone.now()
    transfer = (
        StockTransfer.objects.select_for_update().select_related("from_store", "to_store")
        .filter(pk=transfer_pk, to_store=store).first()
    )
    if transfer is None:
        raise TransferNotFound(details={"transfer": transfer_pk})
    if transfer.status == StockTransfer.Status.RECEIVED:
        if transfer.receive_hash != content_hash:
            raise TransferAlreadyReceived(details={"transfer": transfer_pk})
        return transfer_result(transfer), True
    lines = {line.product.sku: line for line in transfer.lines.select_related("product")}
    extra = set(received) - lines.keys()
    if extra:
        raise InvalidInput("These SKUs were not shipped in this transfer.", details={"skus": sorted(extra)})
    rows = _lock_rows(store, [line.product_id for line in lines.values()], now=now, create_missing=True)
    changes = []
    discrepancies = []
    for sku, line in sorted(lines.items()):
        qty = received.get(sku, 0)
        StockTransferLine.objects.filter(pk=line.pk).update(received_qty=qty)
        if qty:
            changes.append(((store.pk, line.product_id), StockDelta(on_hand=qty)))
        if qty != line.shipped_qty:
            discrepancies.append(f"{sku}: shipped {line.shipped_qty}, received {qty}")
    apply_movements(
        rows, changes, reason=MovementReason.TRANSFER_IN, reference=transfer.reference, actor=till_actor(store, till),
        note=("discrepancy " + "; ".join(discrepancies)) if discrepancies else f"from {transfer.from_store.code}",
        now=now,
    )
    StockTransfer.objects.filter(pk=transfer.pk).update(
        status=StockTransfer.Status.RECEIVED, received_at=now, receive_hash=content_hash
    )
    transfer.refresh_from_db()
    return transfer_result(transfer), False
