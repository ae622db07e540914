"""Every write of returns: a return at a till (opened, received and refunded at once), a courier collection opened by
the website (routed to a receiving store) and received later by that store, its cancellation, and the inspection of
quarantined units.

Locks, always in this order (the same as orders and POS, so no two actions deadlock): the original purchase (the
Order or TillReceipt row), then the return, then the per-line counters, then stock rows (inventory.services, one
row per call, in product order), then the member (loyalty.services). The counters are the guard against returning
more than was bought: they change only under the purchase's lock, with a conditional UPDATE, under a CHECK
constraint.

Money. The refund of a line is what was paid for it after discounts: an order's discount (subtotal - total) is
spread over its lines in proportion to their value (largest remainder, so the lines add up to the total); a till
line's own discount is already in its net value. Amounts are cumulative per purchase: the k-th returned unit of a
line refunds floor(net × k / qty) - floor(net × (k-1) / qty), so returning everything in parts refunds exactly what
was paid. The refund is split by tender in proportion: the money part is recorded as one Refund row per original
money tender (paying it out is the payment provider's or the till's job), the points part is given back as points
(loyalty.refund_redemption). Points earned on the goods are reversed in proportion (loyalty.reverse_earning; its
shortfall policy applies). Points are computed on the cumulative value too, against what the ledger shows was
already reversed or given back for the purchase (by earlier returns and by refunds at the till), so rounding never
drifts over several partial returns.
"""

import math
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from inventory import services as stock
from inventory.exceptions import UnknownSku
from inventory.models import MovementReason, Product, Stock, Store
from inventory.selectors import stores_near
from loyalty import services as loyalty
from loyalty.exceptions import NothingToReverse
from loyalty.models import Posting, PostingKind
from o2o.domain_errors import InvalidInput
from o2o.models import SalesChannel
from o2o.outbox import emit
from orders.loyalty_tender import handed_over_vnd
from orders.models import SUCCESS, FulfillmentLine, Order, OrderLine, PaymentState
from orders.pos.exceptions import ReceiptIdReused, ReceiptNotFound, RefundExceedsSale
from orders.pos.models import TillReceipt, TillReceiptLine, TillRefund
from orders.returns import policy
from orders.returns.exceptions import (
    NoReceivingStore,
    NotHandedOver,
    NotReturnable,
    OtherStoreReceiptRefused,
    PurchaseNotFound,
    ReceiptVoided,
    ReturnExceedsPurchase,
    ReturnNotFound,
    ReturnNotOpen,
    ReturnWindowClosed,
    StoreNotAcceptingReturns,
)
from orders.returns.models import (
    Condition,
    Disposition,
    Refund,
    ReturnedOrderLine,
    ReturnedTillLine,
    ReturnLine,
    ReturnRoutingDecision,
    ReturnStatus,
)
from orders.returns.models import Return as ReturnModel
from orders.routing.returns import route_returns

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
    net_vnd: int  # paid for `qty` units after discounts
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
    total_vnd: int
    money_vnd: int
    money_tenders: list[tuple[str, int]]  # (tender, amount paid with it)
    points_redeemed: int
    earn_posting_id: int | None
    redeem_posting_id: int | None
    refunded_before_vnd: int  # value already refunded on this purchase (returns and till refunds)
    earn_basis_vnd: int  # the value paid for what the earning was earned on
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


def _spread(total: int, weights: list[int]) -> list[int]:
    """Split `total` in proportion to `weights` (largest remainder, ties to the earlier weight): parts add up."""
    whole = sum(weights)
    if whole <= 0:
        return [0] * len(weights)
    parts = [total * w // whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


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
    nets = _spread(order.total_vnd, [line.qty * line.unit_price_vnd for line in order_lines])
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
    money = order.total_vnd - order.points_tender_vnd
    tender = "cod" if order.payment_state == PaymentState.COD else "online"
    before = ReturnModel.objects.filter(order=order, status=ReturnStatus.REFUNDED).aggregate(
        v=Sum("refund_vnd", default=0), p=Sum("points_given_back", default=0)
    )
    # The order earned on the money part of what was handed over (orders.loyalty_tender), and gave back the points
    # that paid for what was not; returns work on the handed-over part only.
    share = min(Fraction(handed_over_vnd(order), order.subtotal_vnd), Fraction(1)) if order.subtotal_vnd else 0
    return _Purchase(
        order=order, receipt=None, lines=lines, total_vnd=order.total_vnd, money_vnd=money,
        money_tenders=[(tender, money)], points_redeemed=order.points_redeemed, earn_posting_id=order.earn_posting_id,
        redeem_posting_id=order.redeem_posting_id, refunded_before_vnd=before["v"],
        earn_basis_vnd=math.floor(order.total_vnd * share), points_back_before=before["p"],
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
        order=None, receipt=receipt, lines=dict(lines), total_vnd=receipt.total_vnd, money_vnd=receipt.money_vnd,
        money_tenders=sorted(tenders.items()), points_redeemed=receipt.points_redeemed,
        earn_posting_id=receipt.earn_posting_id, redeem_posting_id=receipt.redeem_posting_id,
        refunded_before_vnd=before, earn_basis_vnd=receipt.total_vnd, points_back_before=None,
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


# --- refund ------------------------------------------------------------------------------------------------------------


def _line_values(purchase: _Purchase, ret: ReturnModel) -> int:
    """Each return line's refund (cumulative per original line, see the module docstring). Returns the total."""
    total = 0
    basis: dict[int, int] = {}  # original line key -> units refunded before this line
    for row in ret.lines.order_by("pk"):
        lines = purchase.lines[row.product_id]
        if lines[0].till_line is not None:
            took = {t.till_line_id: t.qty for t in row.till_lines.all()}
            pairs = [(line, took[line.till_line.pk]) for line in lines if line.till_line.pk in took]
        else:
            pairs = [(lines[0], row.qty)]
        value = 0
        for line, n in pairs:
            key = line.till_line.pk if line.till_line is not None else -line.order_line.pk
            before = basis.get(key, line.refunded)
            value += math.floor(line.net_vnd * (before + n) / line.qty) - math.floor(line.net_vnd * before / line.qty)
            basis[key] = before + n
        ReturnLine.objects.filter(pk=row.pk).update(refund_vnd=value)
        total += value
    return total


def _already(posting_id: int | None, kind: str) -> tuple[int, int]:
    """(points of the original posting, points already corrected by `kind`) from the loyalty ledger."""
    if not posting_id:
        return 0, 0
    original = Posting.objects.filter(pk=posting_id).values_list("points", flat=True).first() or 0
    done = Posting.objects.filter(original_id=posting_id, kind=kind).aggregate(n=Sum("points", default=0))["n"]
    return original, done


def reverse_for_earlier_returns(*, order: Order, actor: str, now: datetime) -> int:
    """Take back, as soon as an order earns, the points on goods already returned before it completed (a split
    order whose first parcel came back while the second was still on its way): those returns found no earning to
    reverse. The same cumulative rule as _refund, so a later return of the order reverses only what is left.
    Called by orders.loyalty_tender in the completing transaction; returns the points reversed."""
    purchase = _order_purchase(order)
    if not purchase.earn_posting_id or purchase.earn_basis_vnd <= 0 or purchase.refunded_before_vnd <= 0:
        return 0
    earned, done = _already(purchase.earn_posting_id, PostingKind.REVERSE)
    target = math.floor(Fraction(earned * min(purchase.refunded_before_vnd, purchase.earn_basis_vnd),
                                 purchase.earn_basis_vnd))
    if target - done <= 0:
        return 0
    money = purchase.money_vnd * purchase.refunded_before_vnd // purchase.total_vnd if purchase.total_vnd else 0
    try:
        return loyalty.reverse_earning(
            earning=purchase.earn_posting_id, points=target - done, amount_vnd=money, now=now,
            source=loyalty.PostingSource(channel=order.channel.code, reference=order.number, actor=actor),
            idempotency_key=f"order-earn-returned:{order.number}",
        ).points
    except NothingToReverse:
        return 0


def _refund(purchase: _Purchase, ret: ReturnModel, *, store: Store, actor: str, now: datetime,
            till_refund: TillRefundId | None = None) -> dict:
    value = _line_values(purchase, ret)
    total = purchase.total_vnd
    before, after = purchase.refunded_before_vnd, purchase.refunded_before_vnd + value
    if total <= 0:
        money = 0
    else:
        money = purchase.money_vnd * after // total - purchase.money_vnd * before // total
    money = max(0, min(money, value))
    source = loyalty.PostingSource(
        channel=purchase.order.channel.code if purchase.order else "pos", store=store.code, reference=ret.number,
        actor=actor,
    )
    given_back = reversed_points = 0
    if purchase.redeem_posting_id and total > 0:
        redeemed, done = _already(purchase.redeem_posting_id, PostingKind.REFUND)
        if purchase.points_back_before is not None:
            done = purchase.points_back_before  # the order's own give-back (goods never handed over) is not ours
        target = math.ceil(Fraction(redeemed * after, total))
        if target - done > 0:
            try:
                given_back = loyalty.refund_redemption(
                    redemption=purchase.redeem_posting_id, points=target - done, source=source,
                    idempotency_key=f"return:{ret.number}:refund", now=now,
                ).points
            except NothingToReverse:
                given_back = 0
    if purchase.earn_posting_id and purchase.earn_basis_vnd > 0:
        earned, done = _already(purchase.earn_posting_id, PostingKind.REVERSE)
        target = math.floor(Fraction(earned * min(after, purchase.earn_basis_vnd), purchase.earn_basis_vnd))
        if target - done > 0:
            try:
                reversed_points = loyalty.reverse_earning(
                    earning=purchase.earn_posting_id, points=target - done, amount_vnd=money, source=source,
                    idempotency_key=f"return:{ret.number}:reverse", now=now,
                ).points
            except NothingToReverse:
                reversed_points = 0
    refunds = []
    tenders = [t for t in purchase.money_tenders if t[1] > 0]
    for (tender, _), amount in zip(tenders, _spread(money, [a for _, a in tenders]), strict=True):
        if amount:
            refunds.append(Refund(ret=ret, tender=tender, amount_vnd=amount, created_at=now))
    if value - money > 0 or given_back:
        refunds.append(Refund(ret=ret, tender="points", amount_vnd=value - money, points=given_back, created_at=now))
    Refund.objects.bulk_create(refunds)
    ReturnModel.objects.filter(pk=ret.pk).update(
        refund_vnd=value, refund_money_vnd=money, points_given_back=given_back, points_reversed=reversed_points,
        status=ReturnStatus.REFUNDED, refunded_at=now,
    )
    if purchase.receipt is not None:
        # The POS's record that goods of this receipt were refunded: a later void at the selling till is then
        # refused (receipt_refunded) instead of undoing the sale a second time. A refund the till asked for keeps
        # the till's id (its idempotency key) and answers in the till contract's shape.
        lines = [{"sku": line.product.sku, "qty": line.qty, "resellable": line.condition == Condition.RESELLABLE}
                 for line in ret.lines.select_related("product").order_by("pk")]
        points = {"reversed": reversed_points, "given_back": given_back}
        if till_refund is None:
            refund_id, content_hash = f"return:{ret.number}", ""
            result = {"return": ret.number, "received_at_store": store.code, "amount_vnd": value, "points": points}
        else:
            refund_id, content_hash = till_refund
            result = {"receipt_id": purchase.receipt.receipt_id, "refund_id": refund_id, "kind": "refund",
                      "amount_vnd": value, "lines": lines, "points": points}
        TillRefund.objects.create(
            store=store, receipt=purchase.receipt, refund_id=refund_id, kind=TillRefund.Kind.REFUND,
            content_hash=content_hash, amount_vnd=value, created_at=now, lines=lines, result=result,
        )
    return {"value": value, "money": money, "given_back": given_back, "reversed": reversed_points,
            "refunds": [{"tender": r.tender, "amount_vnd": r.amount_vnd, "points": r.points} for r in refunds]}


# --- receiving the goods -------------------------------------------------------------------------------------------


def _restock(ret: ReturnModel, *, store: Store, actor: str, now: datetime) -> None:
    """Resellable units back on sale at the receiving store; damaged ones on hand there but unavailable."""
    lines = list(ret.lines.select_related("product"))
    # One stock row per call, taken in the stock rows' primary-key order (the inventory's lock order; rows that do
    # not exist yet are created, after the others), so a return never waits in a cycle with a reservation.
    row_pk = dict(Stock.objects.filter(store=store, product_id__in=[line.product_id for line in lines]).values_list(
        "product_id", "pk"))
    for line in sorted(lines, key=lambda line: (row_pk.get(line.product_id, math.inf), line.product_id, line.pk)):
        quarantine = line.condition != Condition.RESELLABLE
        stock.adjust_stock(
            store=store, product=line.product, reason=MovementReason.RETURN, actor=actor, on_hand=line.qty,
            unavailable=line.qty if quarantine else 0, reference=f"return:{ret.number}",
            note=f"{line.condition} ({ret.reason})"[:300] if ret.reason else line.condition,
            idempotency_key=f"return:{ret.number}:line:{line.pk}",
        )
        ReturnLine.objects.filter(pk=line.pk).update(
            disposition=Disposition.QUARANTINED if quarantine else Disposition.ON_SALE, disposition_at=now
        )


def _receive_and_refund(purchase: _Purchase, ret: ReturnModel, *, store: Store, actor: str, now: datetime,
                        till_refund: TillRefundId | None = None) -> dict:
    _restock(ret, store=store, actor=actor, now=now)
    ReturnModel.objects.filter(pk=ret.pk).update(received_at=now)
    emit(topic="return.received", aggregate=purchase.aggregate, channel=purchase.channel,
         payload=_event(ret, store=store, status="received"))
    money = _refund(purchase, ret, store=store, actor=actor, now=now, till_refund=till_refund)
    emit(topic="return.refunded", aggregate=purchase.aggregate, channel=purchase.channel,
         payload={**_event(ret, store=store, status=ReturnStatus.REFUNDED),
                  "refund_vnd": money["value"], "refund_money_vnd": money["money"], "refunds": money["refunds"],
                  "points_given_back": money["given_back"], "points_reversed": money["reversed"]})
    return money


def _event(ret: ReturnModel, *, store: Store, status: str) -> dict:
    return {
        "return": ret.number, "status": status, "store": store.code,
        "order": ret.order.number if ret.order_id else None,
        "receipt": ret.receipt.receipt_id if ret.receipt_id else None,
        "lines": [{"sku": line.product.sku, "qty": line.qty, "condition": line.condition}
                  for line in ret.lines.select_related("product").order_by("pk")],
    }


def _create(purchase: _Purchase, *, store: Store, via: str, reason: str, actor: str, now: datetime,
            number: str | None = None, **extra) -> ReturnModel:
    for _ in range(5):
        try:
            with transaction.atomic():
                return ReturnModel.objects.create(
                    number=number or _new_number(), order=purchase.order, receipt=purchase.receipt, channel=purchase.channel,
                    opened_via=via, receiving_store=store, reason=reason[:300], actor=actor[:150], created_at=now,
                    **extra,
                )
        except IntegrityError:  # a number collision (1 in 4 billion): draw again
            number = None
            continue
    raise RuntimeError("could not draw a free return number")


def _lock_purchase(*, order_number: str | None, receipt_store: str | None, receipt_id: str | None,
                   channel: SalesChannel | None) -> _Purchase:
    if bool(order_number) == bool(receipt_id):
        raise InvalidInput("Name either an order number or a till receipt (store and receipt id).")
    if order_number:
        return _order_purchase(_lock_order(number=order_number, channel=channel))
    if not receipt_store:
        raise InvalidInput("A till receipt is named by its store code and receipt id.")
    return _receipt_purchase(_lock_receipt(store_code=receipt_store, receipt_id=receipt_id))


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


# --- courier collections -------------------------------------------------------------------------------------------


def _route(ret_number: str, items: list[ReturnItem], *, lat: float, lon: float) -> tuple[Store, dict, dict]:
    """Build the returns problem from the database (stores accepting returns near the collection point, their stock
    and targets of the returned SKUs) and solve it with the pure router."""
    near = stores_near(lat=lat, lon=lon, radius_km=settings.RETURNS_COLLECTION_MAX_KM, service="returns",
                       limit=settings.RETURNS_ROUTING_CANDIDATES)
    if not near:
        raise NoReceivingStore(details={"lat": lat, "lon": lon, "max_km": settings.RETURNS_COLLECTION_MAX_KM})
    stores = {n.store.code: n.store for n in near}
    skus = sorted({item.sku for item in items})
    rows = Stock.objects.filter(store__in=[n.store for n in near], product__sku__in=skus).values_list(
        "store__code", "product__sku", "on_hand", "unavailable", "target"
    )
    problem = {
        "kind": "returns",
        "stores": [{"id": n.store.code, "lat": n.store.lat, "lon": n.store.lon, "accepts_returns": True} for n in near],
        "stock": [{"store": s, "sku": sku, "qty": max(0, on_hand - unavailable), "target": target}
                  for s, sku, on_hand, unavailable, target in sorted(rows)],
        "returns": [{"id": ret_number, "lat": lat, "lon": lon,
                     "lines": [{"sku": i.sku, "qty": i.qty, "resellable": i.condition == Condition.RESELLABLE}
                               for i in items]}],
        "settings": {"max_km": settings.RETURNS_COLLECTION_MAX_KM,
                     "prefer_shortage_km": settings.RETURNS_PREFER_SHORTAGE_KM,
                     "time_limit_s": settings.RETURNS_ROUTER_TIME_LIMIT_S},
    }
    plan = route_returns(problem)
    if not plan["assignments"]:
        raise NoReceivingStore(details={"lat": lat, "lon": lon, "unassigned": plan["unassigned"]})
    return stores[plan["assignments"][0]["store"]], problem, plan


@transaction.atomic
def open_collection(
    *,
    channel: SalesChannel,
    order_number: str,
    items: list[ReturnItem],
    lat: float,
    lon: float,
    actor: str,
    address: str = "",
    reason: str = "",
) -> ReturnModel:
    """The website asks for a courier to collect goods of one of its orders. The units are counted as returned at
    once (no second return of them meanwhile); the return router picks the receiving store, whose till receives
    the parcel later (receive_return). The decision is stored with its candidates and reason."""
    now = timezone.now()
    products = _check_items(items)
    purchase = _lock_purchase(order_number=order_number, receipt_store=None, receipt_id=None, channel=channel)
    _check_policy(purchase, items, products, now=now)
    number = _new_number()
    started = timezone.now()
    store, problem, plan = _route(number, items, lat=lat, lon=lon)
    solve_ms = (timezone.now() - started).total_seconds() * 1000
    ret = _create(purchase, store=store, via="website", reason=reason, actor=actor, now=now, number=number,
                  collection_lat=lat, collection_lon=lon, collection_address=address[:300])
    # After a number collision (1 in 4 billion) the stored problem keeps the first number drawn as the return's id.
    assignment = plan["assignments"][0]
    ReturnRoutingDecision.objects.create(
        ret=ret, plan_status=plan["status"], problem=problem, plan=plan, candidates=assignment["candidates"],
        reason=assignment["reason"], solve_ms=solve_ms, created_at=now,
    )
    _take_units(purchase, ret, items, products)
    emit(topic="return.opened", aggregate=purchase.aggregate, channel=purchase.channel,
         payload={**_event(ret, store=store, status=ReturnStatus.OPENED), "collection": {"lat": lat, "lon": lon,
                  "address": address}, "routing_reason": assignment["reason"]})
    return ReturnModel.objects.get(pk=ret.pk)


def _lock_return_with_purchase(*, number: str, store: Store | None = None, channel: SalesChannel | None = None):
    """Lock the purchase, then the return (the module's lock order). Another store's or channel's return is not
    found."""
    found = ReturnModel.objects.filter(number=number)
    if store is not None:
        found = found.filter(receiving_store=store)
    if channel is not None:
        found = found.filter(channel=channel)
    head = found.values_list("order__number", "receipt__store__code", "receipt__receipt_id").first()
    if head is None:
        raise ReturnNotFound(details={"return": number})
    order_number, receipt_store, receipt_id = head
    purchase = _lock_purchase(order_number=order_number, receipt_store=receipt_store, receipt_id=receipt_id,
                              channel=None)
    ret = ReturnModel.objects.select_for_update(of=("self",)).select_related("receiving_store").get(number=number)
    return purchase, ret


@transaction.atomic
def receive_return(
    *, store: Store, number: str, actor: str, conditions: dict[str, str] | None = None
) -> tuple[ReturnModel, bool]:
    """The receiving store gets a collected parcel: stock in (resellable on sale, the rest quarantined) and the
    refund recorded. `conditions` (sku -> condition) corrects what the customer declared. Receiving again returns
    the first result (replayed=True)."""
    now = timezone.now()
    purchase, ret = _lock_return_with_purchase(number=number, store=store)
    if ret.status == ReturnStatus.REFUNDED:
        return ret, True
    if ret.status != ReturnStatus.OPENED:
        raise ReturnNotOpen(details={"return": number, "status": ret.status})
    for sku, condition in (conditions or {}).items():
        if condition not in Condition.values:
            raise InvalidInput("Unknown condition.", details={"sku": sku, "condition": condition})
        lines = list(ret.lines.filter(product__sku=sku))
        if not lines:
            raise InvalidInput("This SKU is not part of the return.", details={"sku": sku})
        if len(lines) > 1:
            raise InvalidInput("This SKU has lines in several conditions; they cannot be merged.", details={"sku": sku})
        ReturnLine.objects.filter(pk=lines[0].pk).update(condition=condition)
    # Returned units were counted at opening; the refund's cumulative basis is what was returned before them.
    _receive_and_refund(purchase, ret, store=store, actor=actor, now=now)
    return ReturnModel.objects.get(pk=ret.pk), False


@transaction.atomic
def cancel_return(*, channel: SalesChannel, number: str, actor: str) -> ReturnModel:
    """The customer no longer sends the parcel: the units become returnable again. Only before it is received."""
    purchase, ret = _lock_return_with_purchase(number=number, channel=channel)
    if ret.status == ReturnStatus.CANCELLED:
        return ret
    if ret.status != ReturnStatus.OPENED:
        raise ReturnNotOpen(details={"return": number, "status": ret.status})
    _release_units(ret)
    ReturnModel.objects.filter(pk=ret.pk).update(status=ReturnStatus.CANCELLED)
    emit(topic="return.cancelled", aggregate=purchase.aggregate, channel=purchase.channel,
         payload=_event(ret, store=ret.receiving_store, status=ReturnStatus.CANCELLED))
    return ReturnModel.objects.get(pk=ret.pk)


# --- inspection of quarantined units ---------------------------------------------------------------------------------


@transaction.atomic
def dispose_quarantined(*, line: ReturnLine | int, write_off: bool, actor: str) -> ReturnLine:
    """After inspection: write the quarantined units off (gone from on-hand) or put them back on sale (no longer
    unavailable), at the store that received them. Only a quarantined line; doing it twice is refused."""
    now = timezone.now()
    pk = line.pk if isinstance(line, ReturnLine) else line
    row = ReturnLine.objects.select_for_update().select_related("ret__receiving_store", "product").filter(pk=pk).first()
    if row is None:
        raise ReturnNotFound(details={"line": pk})
    if row.disposition != Disposition.QUARANTINED:
        raise ReturnNotOpen("Only quarantined units can be written off or released.",
                            details={"line": pk, "disposition": row.disposition})
    store = row.ret.receiving_store
    if write_off:
        stock.adjust_stock(store=store, product=row.product, reason=MovementReason.WRITE_OFF, actor=actor,
                           on_hand=-row.qty, unavailable=-row.qty, reference=f"return:{row.ret.number}",
                           idempotency_key=f"return:{row.ret.number}:line:{row.pk}:write_off")
    else:
        stock.adjust_stock(store=store, product=row.product, reason=MovementReason.RELEASE_FROM_QUARANTINE, actor=actor,
                           unavailable=-row.qty, reference=f"return:{row.ret.number}",
                           idempotency_key=f"return:{row.ret.number}:line:{row.pk}:release")
    ReturnLine.objects.filter(pk=row.pk).update(
        disposition=Disposition.WRITTEN_OFF if write_off else Disposition.RELEASED, disposition_at=now
    )
    row.refresh_from_db()
    return row


__all__ = [
    "ReturnItem", "cancel_return", "dispose_quarantined", "open_collection", "receive_return", "return_at_store",
]
