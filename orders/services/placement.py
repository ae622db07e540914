"""Placing an order: check the input, plan it (from the customer's promise, or routed now), price it, write its rows,
reserve its stock, capture a points tender, record the codes and promotions it took, and emit order.placed and
order.routed, in one transaction.

The price: the cart priced at the plan's selling store with the delivery fee of its farthest shipment
(orders.services.plans.price_plan), for the order's member (loyalty.phone, else the customer's phone: tier and
per-member caps) with its codes (those of the promise when the body gives none). Placed from a promise, the price
must be the option's, or the order is refused (409 price_changed with the new breakdown) and nothing is written."""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from inventory import services as stock
from inventory.exceptions import InsufficientStock
from inventory.models import Store
from loyalty.phones import normalize_phone  # the one normaliser, for customers and members alike
from o2o.domain_errors import InvalidInput
from o2o.fast_paths import use_sql
from o2o.models import SalesChannel
from o2o.outbox import emit_many
from orders import fast_paths, loyalty_tender, promises, routing_input
from orders.exceptions import (
    OutOfDeliveryArea,
    PromiseExpired,
    PromiseMismatch,
    PromiseNotFound,
)
from orders.models import (
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    Method,
    Order,
    OrderLine,
    PaymentState,
    PickupCode,
    Promise,
    RoutingKind,
)
from orders.pricing import engine
from orders.pricing import services as pricing
from orders.pricing.exceptions import PriceChanged
from orders.services.cart import Cart, any_store_delivers, load_cart, open_pickup_store, shortage
from orders.services.plans import (
    PlannedOrder,
    PlannedShipment,
    check_planned,
    current_policy,
    decision_from_option,
    decision_row,
    farthest_km,
    new_pickup_code,
    planned_from_routed,
    price_plan,
    pricing_reference,
    selling_store,
)

log = logging.getLogger(__name__)
S = FulfillmentStatus


def _plan_from_promise(
    *, channel: SalesChannel, promise_id, option_id: str | None, cart: Cart, method: str, lat, lon,
    pickup_store_code: str | None, at: datetime,
) -> tuple[PlannedOrder, Promise, dict]:
    promise = Promise.objects.filter(pk=promise_id, channel=channel).first()
    if promise is None:
        raise PromiseNotFound(details={"promise": str(promise_id)})
    if promise.expires_at <= at:
        raise PromiseExpired(details={"promise": str(promise.pk), "expired_at": promise.expires_at.isoformat()})
    if promise.cart != cart.by_sku:
        raise PromiseMismatch("The cart differs from the promised one.", details={"promised": promise.cart})
    option = next((o for o in promise.options if o["id"] == option_id), None)
    if option is None:
        raise PromiseMismatch(
            "Choose one of the promise's options.", details={"options": [o["id"] for o in promise.options]}
        )
    if option["method"] != method:
        raise PromiseMismatch("The method differs from the promised option.", details={"option": option_id})
    if method == Method.PICKUP and pickup_store_code and option["shipments"][0]["store"] != pickup_store_code:
        raise PromiseMismatch("The pickup store differs from the promised option.", details={"option": option_id})
    if method == Method.DELIVERY and lat is not None and lon is not None:
        if abs(lat - promise.destination_lat) > 1e-4 or abs(lon - promise.destination_lon) > 1e-4:
            raise PromiseMismatch("The destination differs from the promised one.")
    stores = {
        code: (pk, time_zone, city)
        for code, pk, time_zone, city in Store.objects.filter(code__in=[s["store"] for s in option["shipments"]])
        .values_list("code", "pk", "timezone", "city")
    }
    pid_of = {sku: pid for pid, sku in cart.skus.items()}
    shipments = []
    for s in option["shipments"]:
        pk, time_zone, city = stores[s["store"]]
        shipments.append(PlannedShipment(
            pk, s["store"], s.get("distance_km"), {pid_of[line["sku"]]: line["qty"] for line in s["lines"]},
            time_zone=time_zone, city=city,
        ))
    promised_by = datetime.fromisoformat(option["window_end"])
    return PlannedOrder(shipments, promised_by, option_id, decision_from_option(option)), promise, option


def _plan_now(
    *, cart: Cart, method: str, lat, lon, pickup_store: Store | None, allow_split: bool, at: datetime
) -> PlannedOrder:
    """Route an order without a promise: pickup at its store, or the fastest delivery tier that can serve it."""
    if method == Method.PICKUP:
        cands = routing_input.load_candidates(
            lat=pickup_store.lat, lon=pickup_store.lon, lines=cart.wanted, method="pickup", at=at,
            only_store_ids=[pickup_store.pk], only_whole_cart=True,
        )
        routed = promises.pickup_at(lines=cart.wanted, candidate=cands[0], skus=cart.skus, at=at) if cands else None
        if routed is None or not routed.served:
            raise shortage(cart, cands)
        return planned_from_routed(routed, cart=cart)
    candidates = routing_input.load_candidates(lat=lat, lon=lon, lines=cart.wanted, method="delivery", at=at)
    served = promises.fastest_delivery(
        lines=cart.wanted, candidates=candidates, skus=cart.skus, lat=lat, lon=lon, allow_split=allow_split, at=at,
        tiers=("express_2h", "scheduled"),
    )
    if not served:
        if not candidates and not any_store_delivers(lat, lon):
            raise OutOfDeliveryArea(details={"lat": lat, "lon": lon})
        raise shortage(cart, candidates)
    return planned_from_routed(served[0], cart=cart)


def place_order(
    *,
    channel: SalesChannel,
    lines: dict[str, int],
    customer_name: str,
    customer_phone: str,
    method: str,
    actor: str,
    lat: float | None = None,
    lon: float | None = None,
    address: str = "",
    pickup_store_code: str | None = None,
    promise_id: uuid.UUID | str | None = None,
    option_id: str | None = None,
    payment_state: str = PaymentState.PENDING,
    allow_split: bool = True,
    loyalty: loyalty_tender.LoyaltyInput | None = None,
    codes: list[str] | None = None,
) -> Order:
    """Reserve the stock and route the order in one transaction.

    With `loyalty`, the order earns for that member when it completes, and a points hold named in it is captured
    as a tender in the same transaction (see orders.loyalty_tender); the hold may pay up to the order's total
    (goods after discounts, plus the delivery fee).

    The order is priced as the module docstring says; `codes` (default: the promise's, else none) are reserved with
    the order (code_used_up 422 when another order or a till took a single-use code first; a promotion whose budget
    ran out meanwhile: 409 promotion_budget_exhausted) and released if it is cancelled or fails.

    With a promise (and one of its options), the order gets exactly the option's stores and window, or
    InsufficientStock (409) if stock moved since. Without one, it is routed now (pickup at its store; delivery in the
    fastest tier that can serve it) and routed again once if a concurrent order took the units first."""
    at = timezone.now()
    if method not in Method.values:
        raise InvalidInput("method must be delivery or pickup.", details={"method": method})
    if payment_state not in PaymentState.values:
        raise InvalidInput("Unknown payment state.", details={"payment_state": payment_state})
    if not customer_name.strip():
        raise InvalidInput("The customer's name is required.")
    phone = normalize_phone(customer_phone)
    cart = load_cart(lines)
    tender = loyalty_tender.check_tender(channel_code=channel.code, loyalty_input=loyalty, customer_phone=phone, now=at)
    member_phone = tender.phone if tender is not None else phone
    policy = current_policy(cart)
    pickup_store = None
    if method == Method.PICKUP:
        if not pickup_store_code:
            raise InvalidInput("A pickup order needs a pickup store.")
        pickup_store = open_pickup_store(pickup_store_code)
    elif promise_id is None and (lat is None or lon is None):
        raise InvalidInput("A delivery order needs a destination (lat and lon, or an address) or a promise.")

    promise = option = None
    attempts = 1 if promise_id else 2
    for attempt in range(attempts):
        if promise_id:
            planned, promise, option = _plan_from_promise(
                channel=channel, promise_id=promise_id, option_id=option_id, cart=cart, method=method, lat=lat, lon=lon,
                pickup_store_code=pickup_store_code, at=at,
            )
            if method == Method.DELIVERY and lat is None:
                lat, lon, address = promise.destination_lat, promise.destination_lon, address or promise.destination_address
            if method == Method.PICKUP:
                pickup_store = Store.objects.get(code=planned.shipments[0].code)
        else:
            planned = _plan_now(
                cart=cart, method=method, lat=lat, lon=lon, pickup_store=pickup_store, allow_split=allow_split, at=at
            )
            check_planned(planned)
        store = selling_store(planned, pickup_store=pickup_store, policy=policy)
        if codes is None and promise is not None:
            codes = list((promise.pricing_input or {}).get("codes") or [])
        priced = price_plan(
            channel=channel.code, lines=cart.by_sku, store=store, member_phone=member_phone, codes=codes or [], at=at,
            farthest=farthest_km(method, [s.distance_km for s in planned.shipments]), policy=policy,
        )
        breakdown = pricing.priced_json(priced)
        shown = option.get("pricing") if option is not None else None
        if shown is not None and not pricing.same_prices(shown, breakdown):
            # A promotion ended or ran out, a price list changed, the member or codes differ from the quote's:
            # the customer sees the new price before anything is written.
            raise PriceChanged(details={"promise": str(promise.pk), "option": option["id"], "pricing": breakdown})
        loyalty_tender.check_within_total(tender, total_vnd=priced.grand_total_vnd)
        write = dict(
            channel=channel, cart=cart, planned=planned, customer_name=customer_name.strip()[:200], phone=phone,
            method=method, lat=lat, lon=lon, address=address, pickup_store=pickup_store, promise=promise,
            payment_state=payment_state, allow_split=allow_split, actor=actor, at=at, tender=tender,
            priced=priced, breakdown=breakdown, store_code=store.code, member_phone=member_phone, policy=policy,
        )
        try:
            if (connection.in_atomic_block and use_sql() and _single_reservation(planned, method)
                    and not _takes_codes_or_budgets(priced, policy)):
                # Inside the caller's transaction (the idempotency record's): no savepoint. If the one reservation
                # fails, reserve_stock has rolled back its own savepoint and _write_order deletes the rows it wrote.
                # Codes and capped budgets are taken by conditional updates that can lose a race (a 422 or 409 after
                # the rows are written): such an order takes the savepoint below, so that it rolls back whole.
                return _write_order(**write)
            with transaction.atomic():  # own transaction, or a savepoint around several reservations
                return _write_order(**write)
        except InsufficientStock:
            if attempt + 1 >= attempts:
                raise
            at = timezone.now()  # another order took the units between routing and reserving: route again
    raise AssertionError("unreachable")


def _single_reservation(planned: PlannedOrder, method: str) -> bool:
    return len(planned.shipments) == 1 and method == Method.DELIVERY


def _takes_codes_or_budgets(priced: engine.PricedCart, policy: engine.Policy) -> bool:
    """Does recording this priced cart take a code or count against a capped promotion's budget?"""
    if not priced.applied:
        return False
    if any(a.code for a in priced.applied):
        return True
    applied = {a.promotion for a in priced.applied}
    return any(
        p.code in applied and (p.max_uses is not None or p.max_discount_vnd is not None
                               or p.max_uses_per_member is not None)
        for p in policy.promotions
    )


def _write_order(
    *, channel, cart: Cart, planned: PlannedOrder, customer_name, phone, method, lat, lon, address, pickup_store,
    promise, payment_state, allow_split, actor, at, priced: engine.PricedCart, breakdown: dict, store_code: str,
    member_phone: str | None, tender=None, policy: engine.Policy | None = None,
) -> Order:
    """Write a routed order: the order, its lines, fulfillments, fulfillment lines and routing decision, then the
    reservations (row locks on stock, held to commit, so taken last), the points tender, the codes and promotion
    budgets the price took, then the two events.

    The rows go in through orders.fast_paths.write_placement (one statement on PostgreSQL)."""
    shipments = sorted(planned.shipments, key=lambda s: s.store_id)  # stores in id order (lock order)
    order = Order(
        number="", channel=channel, customer_name=customer_name, customer_phone=phone,
        method=method, destination_lat=lat if method == Method.DELIVERY else None,
        destination_lon=lon if method == Method.DELIVERY else None, destination_address=address[:300],
        pickup_store=pickup_store, promise=promise, promise_option=planned.option_id[:64], allow_split=allow_split,
        payment_state=payment_state, subtotal_vnd=priced.subtotal_vnd, discount_vnd=priced.discount_vnd,
        delivery_fee_vnd=priced.delivery_fee_vnd, total_vnd=priced.grand_total_vnd, pricing=breakdown,
        created_at=at, updated_at=at,
    )
    priced_lines = {line.sku: line for line in priced.lines}
    lines = []
    for pid, qty in sorted(cart.wanted.items()):
        line = priced_lines[cart.skus[pid]]
        lines.append(OrderLine(product=cart.products[pid], qty=qty, unit_price_vnd=line.unit_price_vnd,
                               discount_vnd=line.discount_vnd))
    fulfillments = [
        Fulfillment(
            store_id=sh.store_id, round=1, method=method, promised_by=planned.promised_by,
            distance_km=sh.distance_km, created_at=at, status_changed_at=at, line_count=len(sh.lines),
        )
        for sh in shipments
    ]
    f_lines = [
        [FulfillmentLine(product=cart.products[pid], qty=qty) for pid, qty in sorted(sh.lines.items())]
        for sh in shipments
    ]
    decision = decision_row(kind=RoutingKind.INITIAL, decision=planned.decision, now=at)
    prefix = (channel.code[:3] or "ORD").upper()
    fast_paths.write_placement(order, prefix, lines, fulfillments, f_lines, decision)
    try:
        for f, sh in zip(fulfillments, shipments, strict=True):
            stock.reserve_stock(
                lines=[stock.StockLine(sh.store_id, pid, qty) for pid, qty in sorted(sh.lines.items())],
                reference=f.reference,
                actor=actor,
            )
    except Exception:
        if use_sql() and not connection.needs_rollback:
            try:  # the rows were never visible to anyone: undo them within the caller's transaction
                fast_paths.undo_placement(order, fulfillments)
            except DatabaseError:
                log.exception("could not undo a placement whose reservation failed (the transaction must roll back)")
        raise
    loyalty_tender.apply_tender(order=order, tender=tender, actor=actor, now=at)  # member row locked after stock
    # Codes and capped budgets last (conditional updates; strict: a code or budget lost to a concurrent order or
    # till raises, and the savepoint or transaction around this rolls the whole order back).
    pricing.commit(
        priced=priced, reference=pricing_reference(order.number), channel=channel.code, store_code=store_code,
        member_phone=member_phone, at=at, strict=True, fresh=True, policy=policy,
    )
    codes: dict[int, PickupCode] = {}
    if method == Method.PICKUP:
        for f in fulfillments:
            codes[f.pk] = new_pickup_code(f, order.number)
    emit_many(
        [
            {
                "topic": "order.placed",
                "aggregate": order.aggregate,
                "channel": channel,
                "payload": {
                    "order": order.number,
                    "method": method,
                    "total_vnd": order.total_vnd,
                    "discount_vnd": order.discount_vnd,
                    "delivery_fee_vnd": order.delivery_fee_vnd,
                    "promised_by": planned.promised_by,
                    "lines": [{"sku": sku, "qty": qty} for sku, qty in cart.by_sku.items()],
                },
            },
            {
                "topic": "order.routed",
                "aggregate": order.aggregate,
                "channel": channel,
                "payload": {
                    "order": order.number,
                    "kind": decision.kind,
                    "fulfillments": [
                        {"id": f.pk, "store": sh.code, "promised_by": f.promised_by}
                        for f, sh in zip(fulfillments, shipments, strict=True)
                    ],
                    "reason": decision.reason,
                },
            },
        ]
    )
    order.placed = PlacedOrder(
        order=order,
        lines=lines,
        fulfillments=[
            PlacedFulfillment(
                id=f.pk, store=PlacedStore(sh.code, _store_name(planned, sh)), status=f.status, round=f.round,
                promised_by=f.promised_by, distance_km=f.distance_km, lines=fl, pickup_code=codes.get(f.pk),
            )
            for f, sh, fl in zip(fulfillments, shipments, f_lines, strict=True)
        ],
    )
    return order


@dataclass
class PlacedStore:
    code: str
    name: str


@dataclass
class PlacedFulfillment:
    id: int
    store: PlacedStore
    status: str
    round: int
    promised_by: datetime
    distance_km: float | None
    lines: list[FulfillmentLine]
    pickup_code: PickupCode | None = None


class PlacedOrder:
    """The order as placement wrote it, for the API's answer without reading it back: the order's own fields, its
    lines and fulfillments (each with its store, lines and pickup code) as lists, in the order the order detail
    lists them (lines and fulfillment lines by id, fulfillments by promise time then id)."""

    def __init__(self, *, order: Order, lines: list[OrderLine], fulfillments: list[PlacedFulfillment]):
        self.order = order
        self.lines = lines
        self.fulfillments = fulfillments

    def __getattr__(self, name):
        return getattr(self.order, name)


def _store_name(planned: PlannedOrder, shipment: PlannedShipment) -> str:
    for c in planned.decision.get("candidates", []):
        if c.get("store") == shipment.code and "name" in c:
            return c["name"]
    return Store.objects.filter(pk=shipment.store_id).values_list("name", flat=True).first() or ""
