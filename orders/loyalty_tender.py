"""Loyalty points in the online order flow: the member an order earns for, points as a tender at placement, points
given back when the order is cancelled or fails, and the earning when it completes.

The website holds points first (POST /api/v1/loyalty/redemptions/), then places the order naming the hold
(`"loyalty": {"hold_id": 17}`, optionally `"phone"` when the member is not the customer). Placement captures the
hold in the order's own transaction, so the order and the spent points commit together or not at all:

    check_tender()  before anything is written: the hold is this channel's, still held, not expired, the member's
                    (refused with 404/409/422, nothing written)
    check_within_total()  once the order is priced, still before anything is written: the hold is worth no more
                    than the order's total (goods after discounts, plus the delivery fee)
    apply_tender()  after the stock is reserved (the member's row is locked after the stock rows, as at the till):
                    captures the hold with the order number as reference and records it on the order
    on_status()     called by orders.services when the order's status changes (its row is locked):
                    completed -> earn on the money part of what was handed over (pending until the return window
                                 closes) and give back the points that paid for what was not;
                    cancelled or failed -> give the spent points back.

Every posting carries an idempotency key derived from the order number, so a replayed call changes nothing.
Money paid = total_vnd - points_tender_vnd. Points pay for the goods first and money pays the delivery fee (as
returns count them): the order earns on the money paid for the goods, (total - fee) - points, in the share of the
goods (at their prices after discounts) that was handed over.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from loyalty import conf as loyalty_conf
from loyalty import services as loyalty
from loyalty.exceptions import (
    NothingToReverse,
    PointsExceedTotal,
    RedemptionMemberMismatch,
    RedemptionNotFound,
    RedemptionNotHeld,
)
from loyalty.models import Member, RedemptionHold
from loyalty.phones import normalize_phone
from orders.models import SUCCESS, FulfillmentLine, Order, OrderLine, OrderStatus


@dataclass(frozen=True)
class LoyaltyInput:
    """What the order body says about loyalty: the member's phone (default: the customer's) and an optional hold."""

    phone: str | None = None
    hold_id: int | None = None


@dataclass(frozen=True)
class CheckedTender:
    phone: str  # E.164
    hold_id: int | None
    points: int
    value_vnd: int


def check_tender(*, channel_code: str, loyalty_input: LoyaltyInput | None, customer_phone: str,
                 now: datetime) -> CheckedTender | None:
    """Refuse a tender that cannot be captured, before the order writes anything (its value against the order's
    total: check_within_total, once the order is priced). Read-only; apply_tender checks again under the member's
    lock."""
    if loyalty_input is None:
        return None
    phone = normalize_phone(loyalty_input.phone) if loyalty_input.phone else customer_phone
    if loyalty_input.hold_id is None:
        return CheckedTender(phone=phone, hold_id=None, points=0, value_vnd=0)
    hold = (
        RedemptionHold.objects.select_related("member")
        .filter(pk=loyalty_input.hold_id, channel=channel_code).first()
    )
    if hold is None:  # another channel's hold is as good as unknown
        raise RedemptionNotFound(details={"hold_id": loyalty_input.hold_id})
    if hold.status != RedemptionHold.Status.HELD or hold.expires_at <= now:
        status = "expired" if hold.status == RedemptionHold.Status.HELD else hold.status
        raise RedemptionNotHeld(details={"hold_id": hold.pk, "status": status})
    owner = hold.member.merged_into_id or hold.member_id
    member = Member.objects.filter(phone=phone).values_list("pk", "merged_into_id").first()
    if member is None or owner != (member[1] or member[0]):
        raise RedemptionMemberMismatch(details={"hold_id": hold.pk, "phone": phone})
    value = hold.points * loyalty_conf.point_value_vnd()
    return CheckedTender(phone=phone, hold_id=hold.pk, points=hold.points, value_vnd=value)


def check_within_total(tender: CheckedTender | None, *, total_vnd: int) -> None:
    """Points may pay the order's total (goods after discounts, plus the delivery fee), not more."""
    if tender is not None and tender.hold_id is not None and tender.value_vnd > total_vnd:
        raise PointsExceedTotal(details={"hold_id": tender.hold_id, "value_vnd": tender.value_vnd,
                                         "total_vnd": total_vnd})


def apply_tender(*, order: Order, tender: CheckedTender | None, actor: str, now: datetime) -> None:
    """Name the order's member and capture its points hold, in the order's transaction. Sets the loyalty fields on
    `order` too (the API answers from it without reading it back)."""
    if tender is None:
        return
    member, _ = loyalty.get_or_create_member(
        phone=tender.phone, name=order.customer_name if tender.phone == order.customer_phone else None,
        channel=order.channel.code,
    )
    fields = {"member_id": member.pk}
    if tender.hold_id is not None:
        if tender.value_vnd > order.total_vnd:
            raise PointsExceedTotal(details={"hold_id": tender.hold_id, "value_vnd": tender.value_vnd,
                                             "total_vnd": order.total_vnd})
        posting = loyalty.capture_redemption(
            hold=tender.hold_id, reference=order.number, member=member, now=now,
            source=loyalty.PostingSource(channel=order.channel.code, reference=order.number, actor=actor),
        )
        fields.update(points_redeemed=posting.points, points_tender_vnd=posting.amount_vnd,
                      redeem_posting_id=posting.pk)
    Order.objects.filter(pk=order.pk).update(**fields)
    for name, value in fields.items():
        setattr(order, name, value)
    order.member = member


def on_status(*, order: Order, status: str, actor: str, now: datetime) -> None:
    """The loyalty side of an order reaching a final status (the caller holds the order's row lock)."""
    if status == OrderStatus.COMPLETED:
        _complete(order=order, actor=actor, now=now)
    elif status in (OrderStatus.CANCELLED, OrderStatus.FAILED):
        _give_back(order=order, fraction=Fraction(1), actor=actor, now=now, why=status)


def handed_over_vnd(order: Order) -> int:
    """The value, at the order's prices after discounts, of what was delivered or collected (short-picked and
    unserved units excluded); each unit of a line is worth its share of the line's net (the refund rule)."""
    lines = {pid: (qty, qty * price - discount) for pid, qty, price, discount in OrderLine.objects.filter(order=order)
             .values_list("product_id", "qty", "unit_price_vnd", "discount_vnd")}
    units: dict[int, int] = {}
    for pid, qty, picked in FulfillmentLine.objects.filter(
        fulfillment__order=order, fulfillment__status__in=list(SUCCESS)
    ).values_list("product_id", "qty", "picked_qty"):
        units[pid] = units.get(pid, 0) + (qty if picked is None else picked)
    value = 0
    for pid, n in units.items():
        if pid in lines:
            qty, net = lines[pid]
            value += net * min(n, qty) // qty
    return value


# Called in the transaction that earns an order's points, with (order=, actor=, now=). The returns app, which builds
# on this module, plugs in the reversal of points on goods returned before the order completed
# (orders.returns.apps.ReturnsConfig.ready): the arrow between the two stays returns -> orders.
AFTER_EARNING: list[Callable[..., object]] = []


def _complete(*, order: Order, actor: str, now: datetime) -> None:
    fields = Order.objects.filter(pk=order.pk).values(
        "member_id", "total_vnd", "delivery_fee_vnd", "points_tender_vnd", "redeem_posting_id", "earn_posting_id"
    ).get()
    goods = fields["total_vnd"] - fields["delivery_fee_vnd"]
    if fields["member_id"] is None or not goods:
        return
    share = min(Fraction(handed_over_vnd(order), goods), Fraction(1))
    source = loyalty.PostingSource(channel=order.channel.code, reference=order.number, actor=actor)
    if fields["earn_posting_id"] is None:
        money = goods - min(fields["points_tender_vnd"], goods)
        posting = loyalty.earn_points(
            member=Member(pk=fields["member_id"]), amount_paid_vnd=math.floor(money * share), source=source,
            idempotency_key=f"order-earn:{order.number}", vest_at=loyalty_conf.online_vest_at(now), now=now,
        )
        Order.objects.filter(pk=order.pk).update(earn_posting_id=posting.pk)
        order.earn_posting_id = posting.pk
        for after in AFTER_EARNING:
            after(order=order, actor=actor, now=now)
    if share < 1:  # the points paid for goods the customer never got: give that share back
        _give_back(order=order, fraction=1 - share, actor=actor, now=now, why="not handed over")


def _give_back(*, order: Order, fraction: Fraction, actor: str, now: datetime, why: str) -> None:
    redeem_id = Order.objects.filter(pk=order.pk).values_list("redeem_posting_id", flat=True).get()
    if redeem_id is None:
        return
    try:
        loyalty.refund_redemption(
            redemption=redeem_id, fraction=fraction, now=now, idempotency_key=f"order-points-back:{order.number}",
            source=loyalty.PostingSource(channel=order.channel.code, reference=order.number, actor=actor),
        )
    except NothingToReverse:  # already given back in full (e.g. by a return)
        pass


__all__ = [
    "CheckedTender", "LoyaltyInput", "apply_tender", "check_tender", "check_within_total", "handed_over_vnd",
    "on_status",
]
