"""The money and the points of a return: cumulative per line (see orders.returns.services)."""

import math
from datetime import datetime
from fractions import Fraction

from django.db.models import Sum

from inventory.models import Store
from loyalty import services as loyalty
from loyalty.exceptions import NothingToReverse
from loyalty.models import Posting, PostingKind
from orders.models import Order
from orders.pos.models import TillRefund
from orders.pricing.engine import cumulative_share, prorate
from orders.returns.models import (
    Condition,
    Refund,
    ReturnLine,
    ReturnStatus,
)
from orders.returns.models import Return as ReturnModel
from orders.returns.services.purchases import TillRefundId, _order_purchase, _Purchase


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
            value += cumulative_share(line.net_vnd, before, n, line.qty)
            basis[key] = before + n
        ReturnLine.objects.filter(pk=row.pk).update(refund_vnd=value)
        total += value
    return total


def _already(posting_id: int | None, kind: str) -> tuple[int, int, int]:
    """(points of the original posting, its VND, points already corrected by `kind`) from the loyalty ledger. An
    earning's VND is the money it was earned on."""
    if not posting_id:
        return 0, 0, 0
    points, amount = Posting.objects.filter(pk=posting_id).values_list("points", "amount_vnd").first() or (0, 0)
    done = Posting.objects.filter(original_id=posting_id, kind=kind).aggregate(n=Sum("points", default=0))["n"]
    return points, amount, done


def _money_of(purchase: _Purchase, refunded_vnd: int) -> int:
    """The money part of the first `refunded_vnd` of the goods refunded (cumulative, so parts add up)."""
    if purchase.goods_vnd <= 0:
        return 0
    return cumulative_share(purchase.money_vnd, 0, refunded_vnd, purchase.goods_vnd)


def _reversal_target(purchase: _Purchase, *, earned: int, earned_on_vnd: int, refunded_vnd: int) -> int:
    """The points of the earning reversed in all once `refunded_vnd` of the goods is refunded: the earning's share of
    the money refunded (points are earned on money, so the points part of a refund reverses nothing), never more
    than the money it was earned on. An order's earning may include its delivery fee, which returns never refund:
    the points on it stay."""
    if earned_on_vnd <= 0 or purchase.goods_vnd <= 0:
        return 0
    money = Fraction(purchase.money_vnd * refunded_vnd, purchase.goods_vnd)
    return math.floor(earned * min(money, earned_on_vnd) / earned_on_vnd)


def reverse_for_earlier_returns(*, order: Order, actor: str, now: datetime) -> int:
    """Take back, as soon as an order earns, the points on goods already returned before it completed (a split
    order whose first parcel came back while the second was still on its way): those returns found no earning to
    reverse. The same cumulative rule as _refund, so a later return of the order reverses only what is left.
    Called by orders.loyalty_tender in the completing transaction; returns the points reversed."""
    purchase = _order_purchase(order)
    if not purchase.earn_posting_id or purchase.refunded_before_vnd <= 0:
        return 0
    earned, earned_on, done = _already(purchase.earn_posting_id, PostingKind.REVERSE)
    target = _reversal_target(purchase, earned=earned, earned_on_vnd=earned_on, refunded_vnd=purchase.refunded_before_vnd)
    if target - done <= 0:
        return 0
    money = _money_of(purchase, purchase.refunded_before_vnd)
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
    goods = purchase.goods_vnd
    before, after = purchase.refunded_before_vnd, purchase.refunded_before_vnd + value
    money = max(0, min(_money_of(purchase, after) - _money_of(purchase, before), value))
    source = loyalty.PostingSource(
        channel=purchase.order.channel.code if purchase.order else "pos", store=store.code, reference=ret.number,
        actor=actor,
    )
    given_back = reversed_points = 0
    if purchase.redeem_posting_id and goods > 0:
        redeemed, _, done = _already(purchase.redeem_posting_id, PostingKind.REFUND)
        if purchase.points_back_before is not None:
            done = purchase.points_back_before  # the order's own give-back (goods never handed over) is not ours
        # The points paid for the goods first (an order's fee is paid with money unless the points paid more than
        # the goods cost), so all goods back gives back every point that paid for them.
        target = math.ceil(Fraction(redeemed * after, max(purchase.points_paid_vnd, goods)))
        if target - done > 0:
            try:
                given_back = loyalty.refund_redemption(
                    redemption=purchase.redeem_posting_id, points=target - done, source=source,
                    idempotency_key=f"return:{ret.number}:refund", now=now,
                ).points
            except NothingToReverse:
                given_back = 0
    if purchase.earn_posting_id:
        earned, earned_on, done = _already(purchase.earn_posting_id, PostingKind.REVERSE)
        target = _reversal_target(purchase, earned=earned, earned_on_vnd=earned_on, refunded_vnd=after)
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
    for (tender, _), amount in zip(tenders, prorate(money, [a for _, a in tenders]), strict=True):
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
