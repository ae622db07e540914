"""Returns at a till: any store takes back anything bought anywhere; the selling till refunds its own receipt."""


from django.db import transaction
from django.utils import timezone

from inventory.models import Store
from o2o.outbox import emit
from orders.pos.exceptions import ReceiptIdReused, ReceiptNotFound, RefundExceedsSale
from orders.pos.models import TillReceipt, TillRefund
from orders.returns import policy
from orders.returns.exceptions import (
    OtherStoreReceiptRefused,
    ReceiptVoided,
    StoreNotAcceptingReturns,
)
from orders.returns.models import Return as ReturnModel
from orders.returns.models import (
    ReturnStatus,
)
from orders.returns.services.purchases import (
    ReturnItem,
    _check_items,
    _check_policy,
    _lock_purchase,
    _receipt_purchase,
    _take_units,
)
from orders.returns.services.receiving import _create, _event, _receive_and_refund


@transaction.atomic
def return_at_store(
    *,
    store: Store,
    items: list[ReturnItem],
    actor: str,
    reason: str = "",
    order_number: str | None = None,
    receipt_store: str | None = None,
    receipt_id: str | None = None,
) -> ReturnModel:
    """The customer brings goods to a till: the return is opened, received and refunded in one transaction. The
    original purchase is an online order (its delivered or collected units) or a till receipt of any store.

    Raises PurchaseNotFound, ReceiptVoided, NotHandedOver, ReturnExceedsPurchase, NotReturnable, ReturnWindowClosed,
    OtherStoreReceiptRefused, StoreNotAcceptingReturns, UnknownSku."""
    now = timezone.now()
    if not store.offers_returns:
        raise StoreNotAcceptingReturns(details={"store": store.code})
    products = _check_items(items)
    purchase = _lock_purchase(order_number=order_number, receipt_store=receipt_store, receipt_id=receipt_id, channel=None)
    if purchase.receipt is not None and not policy.accepts_receipt_of(
        receiving_store_id=store.pk, selling_store_id=purchase.receipt.store_id
    ):
        raise OtherStoreReceiptRefused(details={"receipt_store": purchase.receipt.store.code, "store": store.code})
    _check_policy(purchase, items, products, now=now)
    ret = _create(purchase, store=store, via="till", reason=reason, actor=actor, now=now)
    _take_units(purchase, ret, items, products)
    emit(topic="return.opened", aggregate=purchase.aggregate, channel=purchase.channel,
         payload=_event(ret, store=store, status=ReturnStatus.OPENED))
    _receive_and_refund(purchase, ret, store=store, actor=actor, now=now)
    return ReturnModel.objects.get(pk=ret.pk)


@transaction.atomic
def refund_till_receipt(
    *, store: Store, receipt_id: str, refund_id: str, items: list[ReturnItem], content_hash: str, actor: str
) -> tuple[dict, bool]:
    """The selling till takes back goods of one of its own receipts (POST /api/v1/pos/sales/{id}/refunds/).

    The same door as every other return: a Return is opened, received and refunded at once, the money is
    cumulative per line (refunding a line unit by unit gives back exactly what was paid) and points are reversed and
    given back against what the ledger already shows for the receipt. What differs is the till contract: the
    receipt is this store's own, the till's `refund_id` is the idempotency key (the same id and content answers the
    first result, `replayed` True; other content is ReceiptIdReused), and the return policy (windows, categories) is
    not applied: the selling store decides at its own till, as it always did.

    Raises ReceiptNotFound, ReceiptIdReused, ReceiptVoided, RefundExceedsSale, UnknownSku, InvalidInput."""
    now = timezone.now()
    receipt = (
        TillReceipt.objects.select_for_update(of=("self",)).select_related("store")
        .filter(store=store, receipt_id=receipt_id).first()
    )
    if receipt is None:
        raise ReceiptNotFound(details={"receipt_id": receipt_id})
    first = TillRefund.objects.filter(store=store, refund_id=refund_id).first()
    if first is not None:
        if first.content_hash != content_hash or first.receipt_id != receipt.pk:
            raise ReceiptIdReused(details={"refund_id": refund_id})
        return first.result, True
    if receipt.status == TillReceipt.Status.VOIDED:
        raise ReceiptVoided("The receipt has been voided.", details={"receipt_id": receipt_id})
    purchase = _receipt_purchase(receipt)
    sold = {lines[0].product.sku: lines for lines in purchase.lines.values()}
    for item in items:
        if item.sku not in sold:
            raise RefundExceedsSale(details={"sku": item.sku, "sold": 0, "refund": item.qty})
    products = _check_items(items)
    for item in items:
        room = sum(line.returnable for line in sold[item.sku])
        if item.qty > room:
            raise RefundExceedsSale(details={"sku": item.sku, "refundable": room, "refund": item.qty})
    ret = _create(purchase, store=store, via="till", reason=f"till refund {refund_id}", actor=actor, now=now)
    _take_units(purchase, ret, items, products)
    emit(topic="return.opened", aggregate=purchase.aggregate, channel=purchase.channel,
         payload=_event(ret, store=store, status=ReturnStatus.OPENED))
    _receive_and_refund(purchase, ret, store=store, actor=actor, now=now, till_refund=(refund_id, content_hash))
    return TillRefund.objects.get(store=store, refund_id=refund_id).result, False
