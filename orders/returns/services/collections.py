"""Courier collections opened by the website, routed to a receiving store and received there later; the
inspection of quarantined units."""


from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inventory import services as stock
from inventory.models import MovementReason, Stock, Store
from inventory.selectors import stores_near
from o2o.domain_errors import InvalidInput
from o2o.models import SalesChannel
from o2o.outbox import emit
from orders.returns.exceptions import (
    NoReceivingStore,
    ReturnNotFound,
    ReturnNotOpen,
)
from orders.returns.models import (
    Condition,
    Disposition,
    ReturnLine,
    ReturnRoutingDecision,
    ReturnStatus,
)
from orders.returns.models import Return as ReturnModel
from orders.returns.services.purchases import (
    ReturnItem,
    _check_items,
    _check_policy,
    _lock_purchase,
    _new_number,
    _release_units,
    _take_units,
)
from orders.returns.services.receiving import _create, _event, _receive_and_refund
from orders.routing.returns import route_returns


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
