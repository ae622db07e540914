"""The purchase a return draws on (an online order or a till receipt), locked, with the checks and the per-line
counters that keep returns within what was bought. See orders.returns.services for the lock order and the money.

What a line cost is what the pricing engine charged for it: qty × unit price less the line's share of every
promotion and code (OrderLine.discount_vnd, TillReceiptLine.discount_vnd). An order's delivery fee is part of no
line, so a return of goods never refunds it (refunding a fee is a customer-service decision, outside returns)."""

import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F, Sum

from inventory.exceptions import UnknownSku
from inventory.models import Product
from o2o.domain_errors import InvalidInput
from o2o.models import SalesChannel
from orders.models import SUCCESS, FulfillmentLine, Order, OrderLine, PaymentState
from orders.pos.models import TillReceipt, TillReceiptLine, TillRefund
from orders.returns import policy
from orders.returns.exceptions import (
    NotHandedOver,
    NotReturnable,
    PurchaseNotFound,
    ReceiptVoided,
    ReturnExceedsPurchase,
    ReturnWindowClosed,
)
from orders.returns.models import (
    Condition,
    ReturnedOrderLine,
    ReturnedTillLine,
    ReturnLine,
    ReturnStatus,
)
from orders.returns.models import Return as ReturnModel

MONEY_TENDERS = ("cash", "card", "ewallet")
TillRefundId = tuple[str, str]  # (the till's refund id, the hash of the request it came in)
REFUSALS = {"not_returnable": NotReturnable, "return_window_closed": ReturnWindowClosed}


@dataclass(frozen=True)
class ReturnItem:
    """One line as the customer brings it back."""

    sku: str
    qty: int
    condition: str = Condition.RESELLABLE


@dataclass
class _Line:
    """One original purchase line, locked: what it was bought for and how much of it is still returnable."""

    product: Product
    handed_over_at: datetime
    net_vnd: int  # paid for `qty` units after discounts (the line's share of promotions and codes)
    qty: int  # units the net value is for (ordered or sold)
    returnable: int  # handed over and not yet returned
    returned: int  # units already returned (or counted for a return on its way)
    refunded: int  # units already refunded: the cumulative basis of the next refund
    order_line: OrderLine | None = None
    counter: ReturnedOrderLine | None = None
    till_line: TillReceiptLine | None = None


@dataclass
class _Purchase:
    order: Order | None
    receipt: TillReceipt | None
    lines: dict[int, list[_Line]]  # product id -> its lines
    goods_vnd: int  # what the goods cost after discounts: the most returns can refund (no delivery fee)
    money_vnd: int  # the part of goods_vnd paid with money (the rest with points)
    points_paid_vnd: int  # everything paid with points (an order's fee included, when points paid part of it)
    money_tenders: list[tuple[str, int]]  # (tender, amount paid with it)
    points_redeemed: int
    earn_posting_id: int | None
    redeem_posting_id: int | None
    refunded_before_vnd: int  # value already refunded on this purchase (returns and till refunds)
    points_back_before: int | None  # points given back by earlier returns; None: read it from the ledger

    @property
    def channel(self) -> SalesChannel | None:
        return self.order.channel if self.order else None

    @property
    def aggregate(self) -> str:
        if self.order:
            return f"order:{self.order.number}"
        return f"receipt:{self.receipt.store.code}:{self.receipt.receipt_id}"


def _new_number() -> str:
    return f"RT-{secrets.token_hex(4).upper()}"


def _check_items(items: list[ReturnItem]) -> dict[str, Product]:
    if not items:
        raise InvalidInput("A return needs at least one line.")
    for item in items:
        if isinstance(item.qty, bool) or not isinstance(item.qty, int) or item.qty <= 0:
            raise InvalidInput("Quantities must be positive whole numbers.", details={"sku": item.sku, "qty": item.qty})
        if item.condition not in Condition.values:
            raise InvalidInput("Unknown condition.", details={"sku": item.sku, "condition": item.condition})
    skus = {item.sku for item in items}
    products = {p.sku: p for p in Product.objects.filter(sku__in=skus)}
    if skus - products.keys():
        raise UnknownSku(sorted(skus - products.keys()))
    return products


# --- the original purchase, locked ----------------------------------------------------------------------------------


def _lock_order(*, number: str, channel: SalesChannel | None) -> Order:
    orders = Order.objects.select_for_update(of=("self",)).select_related("channel")
    if channel is not None:
        orders = orders.filter(channel=channel)  # a channel sees only its own orders
    order = orders.filter(number=number).first()
    if order is None:
        raise PurchaseNotFound(details={"order": number})
    return order


def _order_purchase(order: Order) -> _Purchase:
    order_lines = list(OrderLine.objects.filter(order=order).select_related("product").order_by("pk"))
    handed: dict[int, int] = defaultdict(int)
    handed_at: dict[int, datetime] = {}
    for pid, units_qty, picked, at in FulfillmentLine.objects.filter(
        fulfillment__order=order, fulfillment__status__in=SUCCESS
    ).values_list("product_id", "qty", "picked_qty", "fulfillment__status_changed_at"):
        handed[pid] += units_qty if picked is None else picked
        handed_at[pid] = max(at, handed_at.get(pid, at))
    ReturnedOrderLine.objects.bulk_create(
        [ReturnedOrderLine(order_line=line) for line in order_lines], ignore_conflicts=True
    )
    counters = {
        c.order_line_id: c for c in ReturnedOrderLine.objects.select_for_update().filter(order_line__in=order_lines).order_by("pk")
    }
    for line in order_lines:
        c = counters[line.pk]
        if c.handed_over_qty != handed[line.product_id]:
            ReturnedOrderLine.objects.filter(pk=c.pk).update(handed_over_qty=handed[line.product_id])
            c.handed_over_qty = handed[line.product_id]
    nets = [line.qty * line.unit_price_vnd - line.discount_vnd for line in order_lines]
    refunded = dict(
        ReturnLine.objects.filter(order_line__in=order_lines, ret__status=ReturnStatus.REFUNDED)
        .values("order_line_id").annotate(n=Sum("qty")).values_list("order_line_id", "n")
    )
    lines: dict[int, list[_Line]] = {}
    for line, net in zip(order_lines, nets, strict=True):
        c = counters[line.pk]
        lines[line.product_id] = [
            _Line(product=line.product, handed_over_at=handed_at.get(line.product_id, order.created_at), net_vnd=net,
                  qty=line.qty, returnable=c.handed_over_qty - c.returned_qty, returned=c.returned_qty,
                  refunded=refunded.get(line.pk, 0), order_line=line, counter=c)
        ]
    goods = sum(nets)
    # Points pay for the goods first and money pays the delivery fee: returning every unit gives back every point
    # spent (the fee, not refunded, stays paid in money), unless the points paid more than the goods cost.
    money = goods - min(order.points_tender_vnd, goods)
    tender = "cod" if order.payment_state == PaymentState.COD else "online"
    before = ReturnModel.objects.filter(order=order, status=ReturnStatus.REFUNDED).aggregate(
        v=Sum("refund_vnd", default=0), p=Sum("points_given_back", default=0)
    )
    return _Purchase(
        order=order, receipt=None, lines=lines, goods_vnd=goods, money_vnd=money,
        points_paid_vnd=order.points_tender_vnd, money_tenders=[(tender, money)], points_redeemed=order.points_redeemed,
        earn_posting_id=order.earn_posting_id, redeem_posting_id=order.redeem_posting_id,
        refunded_before_vnd=before["v"], points_back_before=before["p"],
    )


def _lock_receipt(*, store_code: str, receipt_id: str) -> TillReceipt:
    receipt = (
        TillReceipt.objects.select_for_update(of=("self",)).select_related("store")
        .filter(store__code=store_code, receipt_id=receipt_id).first()
    )
    if receipt is None:
        raise PurchaseNotFound(details={"store": store_code, "receipt_id": receipt_id})
    if receipt.status == TillReceipt.Status.VOIDED:
        raise ReceiptVoided(details={"store": store_code, "receipt_id": receipt_id})
    return receipt


def _receipt_purchase(receipt: TillReceipt) -> _Purchase:
    lines: dict[int, list[_Line]] = defaultdict(list)
    for line in TillReceiptLine.objects.filter(receipt=receipt).select_related("product").order_by("pk"):
        lines[line.product_id].append(
            _Line(product=line.product, handed_over_at=receipt.sold_at, net_vnd=line.net_vnd, qty=line.qty,
                  returnable=line.qty - line.refunded_qty, returned=line.refunded_qty, refunded=line.refunded_qty,
                  till_line=line)
        )
    tenders: dict[str, int] = defaultdict(int)
    for t in receipt.tenders or []:
        if t.get("type") in MONEY_TENDERS and t.get("amount_vnd"):
            tenders[t["type"]] += int(t["amount_vnd"])
    # Till refunds and earlier returns (each also recorded as a TillRefund of the receipt) are already refunded.
    before = TillRefund.objects.filter(receipt=receipt, kind=TillRefund.Kind.REFUND).aggregate(
        v=Sum("amount_vnd", default=0)
    )["v"]
    return _Purchase(
        order=None, receipt=receipt, lines=dict(lines), goods_vnd=receipt.total_vnd, money_vnd=receipt.money_vnd,
        points_paid_vnd=receipt.total_vnd - receipt.money_vnd, money_tenders=sorted(tenders.items()),
        points_redeemed=receipt.points_redeemed, earn_posting_id=receipt.earn_posting_id,
        redeem_posting_id=receipt.redeem_posting_id, refunded_before_vnd=before, points_back_before=None,
    )


# --- checks and counters ---------------------------------------------------------------------------------------------


def _check_policy(purchase: _Purchase, items: list[ReturnItem], products: dict[str, Product], *, now: datetime) -> None:
    """Refuse the whole return on the first rule a line breaks: unknown to the purchase, not handed over, more than
    is left, not returnable, out of its window. Details name the line."""
    wanted: dict[int, int] = defaultdict(int)
    for item in items:
        wanted[products[item.sku].pk] += item.qty
    for pid, qty in sorted(wanted.items()):
        product = next(p for p in products.values() if p.pk == pid)
        lines = purchase.lines.get(pid)
        if not lines:
            raise ReturnExceedsPurchase(
                "This SKU is not part of the purchase.", details={"sku": product.sku, "bought": 0, "requested": qty}
            )
        left = sum(line.returnable for line in lines)
        if purchase.order is not None and left + sum(line.returned for line in lines) == 0:
            raise NotHandedOver(details={"sku": product.sku, "requested": qty})
        if qty > left:
            raise ReturnExceedsPurchase(details={"sku": product.sku, "returnable": left, "requested": qty})
        refusal = policy.check_line(
            sku=product.sku, category=product.category, handed_over_at=max(line.handed_over_at for line in lines), now=now
        )
        if refusal is not None:
            raise REFUSALS[refusal.code](details=refusal.details)


def _take_units(purchase: _Purchase, ret: ReturnModel, items: list[ReturnItem], products: dict[str, Product]) -> None:
    """Write the return's lines and count their units off the original lines (conditional UPDATEs under the CHECK
    constraints: a concurrent path that slipped past the checks above still cannot exceed the purchase)."""
    for item in items:
        product = products[item.sku]
        line_row = ReturnLine.objects.create(
            ret=ret, product=product, qty=item.qty, condition=item.condition,
            order_line=purchase.lines[product.pk][0].order_line,
        )
        left = item.qty
        for line in purchase.lines[product.pk]:
            n = min(left, line.returnable)
            if n <= 0:
                continue
            if line.counter is not None:
                changed = ReturnedOrderLine.objects.filter(
                    pk=line.counter.pk, returned_qty__lte=F("handed_over_qty") - n
                ).update(returned_qty=F("returned_qty") + n)
            else:
                changed = TillReceiptLine.objects.filter(pk=line.till_line.pk, refunded_qty__lte=F("qty") - n).update(
                    refunded_qty=F("refunded_qty") + n
                )
                ReturnedTillLine.objects.create(return_line=line_row, till_line=line.till_line, qty=n)
            if changed != 1:
                raise ReturnExceedsPurchase(details={"sku": item.sku})
            line.returnable -= n
            left -= n


def _release_units(ret: ReturnModel) -> None:
    """Give the units of a cancelled (never received) return back to the purchase's returnable count."""
    for line in ret.lines.all():
        if line.order_line_id:
            ReturnedOrderLine.objects.filter(order_line_id=line.order_line_id).update(returned_qty=F("returned_qty") - line.qty)


def _lock_purchase(*, order_number: str | None, receipt_store: str | None, receipt_id: str | None,
                   channel: SalesChannel | None) -> _Purchase:
    if bool(order_number) == bool(receipt_id):
        raise InvalidInput("Name either an order number or a till receipt (store and receipt id).")
    if order_number:
        return _order_purchase(_lock_order(number=order_number, channel=channel))
    if not receipt_store:
        raise InvalidInput("A till receipt is named by its store code and receipt id.")
    return _receipt_purchase(_lock_receipt(store_code=receipt_store, receipt_id=receipt_id))
