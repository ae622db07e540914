"""Receiving returned goods: the units back on hand (or quarantined) at the receiving store, the Return row, its
events, then the refund. Shared by returns at a till and courier collections received later."""

import math
from datetime import datetime

from django.db import IntegrityError, transaction

from inventory import services as stock
from inventory.models import MovementReason, Stock, Store
from o2o.outbox import emit
from orders.returns.models import (
    Condition,
    Disposition,
    ReturnLine,
    ReturnStatus,
)
from orders.returns.models import Return as ReturnModel
from orders.returns.services.purchases import TillRefundId, _new_number, _Purchase
from orders.returns.services.refunds import _refund


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
