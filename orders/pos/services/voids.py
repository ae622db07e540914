"""Voids: a receipt entered in error is cancelled, its stock, points and promotions undone."""


from collections import defaultdict
from datetime import datetime
from fractions import Fraction

from django.db import transaction
from django.utils import timezone

from inventory.models import MovementReason, Store
from inventory.services import (
    StockDelta,
    apply_movements,
)
from loyalty import services as loyalty
from loyalty.exceptions import NothingToReverse
from orders.pos.exceptions import (
    ReceiptAlreadyRefunded,
    ReceiptNotFound,
)
from orders.pos.models import (
    TillReceipt,
    TillRefund,
)
from orders.pos.services.common import _lock_rows, _source, till_actor
from orders.pricing import services as pricing


def _lock_receipt(store: Store, receipt_id: str) -> TillReceipt:
    receipt = TillReceipt.objects.select_for_update().filter(store=store, receipt_id=receipt_id).first()
    if receipt is None:
        raise ReceiptNotFound(details={"receipt_id": receipt_id})
    return receipt


def _reverse_points(*, receipt: TillReceipt, fraction: Fraction, key: str, source, now: datetime) -> dict:
    out = {"reversed": 0, "given_back": 0}
    if receipt.earn_posting_id:
        try:
            posting = loyalty.reverse_earning(
                earning=receipt.earn_posting_id, fraction=fraction, source=source, idempotency_key=f"{key}:reverse",
                now=now,
            )
            out["reversed"] = posting.points
        except NothingToReverse:
            pass
    if receipt.redeem_posting_id:
        try:
            posting = loyalty.refund_redemption(
                redemption=receipt.redeem_posting_id, fraction=fraction, source=source,
                idempotency_key=f"{key}:refund", now=now,
            )
            out["given_back"] = posting.points
        except NothingToReverse:
            pass
    return out


@transaction.atomic
def void_receipt(*, store: Store, receipt_id: str, till: str = "") -> dict:
    """Cancel a receipt entered in error: the sale's ledger effect is undone (the units it took go back on hand),
    earned points are reversed and redeemed points given back, and the promotions the policy applied to it leave
    the promotions' results and give their budgets back (a code it consumed stays used: it was given at the till).
    Voiding twice returns the first answer. A receipt with refunds cannot be voided (ReceiptAlreadyRefunded)."""
    now = timezone.now()
    actor = till_actor(store, till)
    receipt = _lock_receipt(store, receipt_id)
    if receipt.status == TillReceipt.Status.VOIDED:
        return TillRefund.objects.get(receipt=receipt, kind=TillRefund.Kind.VOID).result
    if receipt.refunds.exists():
        raise ReceiptAlreadyRefunded(details={"receipt_id": receipt_id})
    lines = list(receipt.lines.all())
    per_product: dict[int, int] = defaultdict(int)
    beyond: dict[int, int] = defaultdict(int)
    for line in lines:
        per_product[line.product_id] += line.taken
        beyond[line.product_id] += line.shortfall
    rows = _lock_rows(store, per_product.keys(), now=now, create_missing=False)
    reference = f"pos:{store.code}:{receipt_id}"
    # The units the sale took go back on hand (free: the reservations it took were re-routed meanwhile); what it
    # sold beyond the ledger no longer is a shortfall, unless a count settled it already.
    deltas = {
        pid: StockDelta(on_hand=qty, shortfall=-min(beyond[pid], rows[(store.pk, pid)].shortfall)
                        if (store.pk, pid) in rows else 0)
        for pid, qty in per_product.items()
    }
    apply_movements(
        rows,
        [((store.pk, pid), delta) for pid, delta in sorted(deltas.items()) if not delta.is_zero()],
        reason=MovementReason.SALE_VOID, reference=reference, actor=actor, note="receipt voided",
        idempotency_key=f"pos:{store.pk}:{receipt_id}:void", now=now,
    )
    points = _reverse_points(
        receipt=receipt, fraction=Fraction(1), key=f"pos:{store.pk}:{receipt_id}:void",
        source=_source(store, receipt_id, actor), now=now,
    )
    pricing.release(reference=reference, at=now)
    TillReceipt.objects.filter(pk=receipt.pk).update(status=TillReceipt.Status.VOIDED)
    result = {"receipt_id": receipt_id, "kind": "void", "amount_vnd": receipt.total_vnd, "points": points,
              "lines": [{"sku": line.product.sku, "qty": line.qty, "restocked": line.taken} for line in
                        receipt.lines.select_related("product")]}
    TillRefund.objects.create(
        store=store, receipt=receipt, refund_id=f"void:{receipt_id}", kind=TillRefund.Kind.VOID, content_hash="",
        amount_vnd=receipt.total_vnd, created_at=now, result=result,
    )
    return result
