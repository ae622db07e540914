"""Every write of the orders app: promises, placement, cancellation, the fulfilment state machine, short picks and
re-routing, released pickups and waves.

Stock moves only through inventory.services, one reservation reference per fulfillment (`fulfillment:<id>`):
reserved at placement, committed when goods leave the store (handed to the courier, collected), released on cancel,
not-collected or re-route. Locks are always taken in one order: orders (by pk), then their fulfillments (by pk), then
stock rows (inventory.services, by pk), so two actions on the same orders cannot deadlock. Events go to the outbox in
the same transaction.
"""

import functools
import json
import logging
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Exists, F, Max, OuterRef
from django.utils import timezone
from geopy.distance import great_circle

from inventory import services as stock
from inventory.exceptions import InsufficientStock, InvalidStockChange, UnknownSku
from inventory.models import MovementReason, Product, Store
from inventory.selectors import products_by_sku
from loyalty.phones import normalize_phone  # the one normaliser, for customers and members alike
from o2o import prepared
from o2o.domain_errors import DomainError, IdempotencyKeyReused, InvalidInput
from o2o.models import SalesChannel
from o2o.outbox import emit, emit_many
from orders import loyalty_tender, promises
from orders import problem as problems
from orders.exceptions import (
    FulfillmentNotFound,
    InvalidPlan,
    InvalidShortPick,
    InvalidTransition,
    OrderNotCancellable,
    OrderNotFound,
    OrderNotReroutable,
    OutOfDeliveryArea,
    PickupNotOffered,
    PickupNotReroutable,
    PromiseExpired,
    PromiseMismatch,
    PromiseNotFound,
    RerouteReasonRequired,
    RerouteUnserved,
    UnknownPickupStore,
)
from orders.models import (
    LEFT_STORE,
    NOT_STARTED,
    OPEN_STATUSES,
    SUCCESS,
    TRANSITIONS,
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    Method,
    Order,
    OrderLine,
    OrderStatus,
    PaymentState,
    PickupCode,
    Promise,
    RoutingDecision,
    RoutingKind,
)
from orders.routing import check_plan, route

log = logging.getLogger(__name__)
S = FulfillmentStatus
SYSTEM = "system:orders"


# --- input helpers --------------------------------------------------------------------------------------------------


@dataclass
class Cart:
    wanted: dict[int, int]  # product_id -> qty
    skus: dict[int, str]  # product_id -> sku
    products: dict[int, Product]

    @property
    def by_sku(self) -> dict[str, int]:
        return {self.skus[pid]: qty for pid, qty in sorted(self.wanted.items(), key=lambda kv: self.skus[kv[0]])}


def load_cart(lines: dict[str, int]) -> Cart:
    """Products of a cart {sku: qty}. Raises InvalidInput for an empty cart or a quantity ≤ 0, UnknownSku (422)."""
    if not lines:
        raise InvalidInput("The cart is empty.")
    bad = {sku: qty for sku, qty in lines.items() if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0}
    if bad:
        raise InvalidInput("Quantities must be whole numbers ≥ 1.", details={"lines": bad})
    found = _active_products(lines.keys()) if connection.vendor == "postgresql" else products_by_sku(lines.keys())
    products = {p.pk: p for p in found.values()}
    return Cart({found[sku].pk: qty for sku, qty in lines.items()}, {p.pk: p.sku for p in products.values()}, products)


def _active_products(skus: Iterable[str]) -> dict[str, Product]:
    """products_by_sku in one written-out statement: the same instances (Model.from_db) and the same UnknownSku,
    without the queryset compiler, which cost more CPU than the query on every placement and promise."""
    skus = set(skus)
    names = _product_columns()
    with prepared.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(connection.ops.quote_name(c) for c in names.values())} FROM {Product._meta.db_table}"
            " WHERE sku = ANY(%s) AND is_active",
            [list(skus)],
        )
        rows = cursor.fetchall()
    fields = list(names)
    found = {p.sku: p for p in (Product.from_db(connection.alias, fields, row) for row in rows)}
    missing = skus - found.keys()
    if missing:
        raise UnknownSku(sorted(missing))
    return found


@functools.cache
def _product_columns() -> dict[str, str]:
    return {f.attname: f.column for f in Product._meta.concrete_fields}


def _pickup_store(code: str) -> Store:
    store = Store.objects.filter(code=code, is_active=True).first()
    if store is None:
        raise UnknownPickupStore(details={"store": code})
    if not store.offers_pickup:
        raise PickupNotOffered(details={"store": code})
    return store


def _shortage(cart: Cart, candidates: list[problems.Candidate]) -> InsufficientStock:
    best = {pid: max((c.stock.get(pid, 0) for c in candidates), default=0) for pid in cart.wanted}
    return InsufficientStock(
        [
            {"sku": cart.skus[pid], "requested": qty, "available": best[pid]}
            for pid, qty in sorted(cart.wanted.items())
        ],
        "No store that can serve this cart has the units or the picking capacity now.",
    )


def _any_store_delivers(lat: float, lon: float) -> bool:
    radius = settings.O2O_ROUTING_SEARCH_RADIUS_KM
    south, north, west, east = problems._bounding_box(lat, lon, radius)
    for s_lat, s_lon, s_radius in Store.objects.filter(
        is_active=True, offers_delivery=True, lat__gte=south, lat__lte=north, lon__gte=west, lon__lte=east
    ).values_list("lat", "lon", "delivery_radius_km"):
        if great_circle((lat, lon), (s_lat, s_lon)).km <= s_radius:
            return True
    return False


# --- promises -------------------------------------------------------------------------------------------------------


def quote_promise(
    *,
    channel: SalesChannel,
    lines: dict[str, int],
    lat: float | None = None,
    lon: float | None = None,
    address: str = "",
    pickup_store_code: str | None = None,
    allow_split: bool = True,
    at: datetime | None = None,
) -> Promise:
    """The options the chain can keep now for this cart, stored for O2O_PROMISE_TTL_SECONDS.

    With `pickup_store_code`: only pickup at that store. With a destination: express 1 h / 2 h delivery (or the
    scheduled fallback) and pickup at the nearby stores that can serve the whole cart. Raises UnknownSku (422),
    PickupNotOffered (422), OutOfDeliveryArea (422) or InsufficientStock (409) when there is no option at all."""
    at = at or timezone.now()
    cart = load_cart(lines)
    options: list[promises.Routed] = []
    pickup_store = None
    if pickup_store_code:
        pickup_store = _pickup_store(pickup_store_code)
        cands = problems.load_candidates(
            lat=pickup_store.lat, lon=pickup_store.lon, lines=cart.wanted, method="pickup", at=at,
            only_store_ids=[pickup_store.pk], only_whole_cart=True,
        )
        for c in cands:
            routed = promises.pickup_at(lines=cart.wanted, candidate=c, skus=cart.skus, at=at)
            if routed.served:
                options.append(routed)
        if not options:
            raise _shortage(cart, cands)
    else:
        if lat is None or lon is None:
            raise InvalidInput("Give a destination (lat and lon, or an address) or a pickup store.")
        delivery = problems.load_candidates(lat=lat, lon=lon, lines=cart.wanted, method="delivery", at=at)
        options += promises.fastest_delivery(
            lines=cart.wanted, candidates=delivery, skus=cart.skus, lat=lat, lon=lon, allow_split=allow_split, at=at,
            all_tiers=True,
        )
        pickups = problems.load_candidates(
            lat=lat, lon=lon, lines=cart.wanted, method="pickup", at=at, radius_km=settings.O2O_PICKUP_SEARCH_RADIUS_KM,
            k=settings.O2O_PICKUP_OPTIONS, only_whole_cart=True,
        )
        for c in pickups:
            if c.capacity(promises.TIER_SLOT_HOURS["pickup"]) < len(cart.wanted):
                continue
            routed = promises.pickup_at(lines=cart.wanted, candidate=c, skus=cart.skus, at=at)
            if routed.served:
                options.append(routed)
        if not options:
            if not delivery and not pickups and not _any_store_delivers(lat, lon):
                raise OutOfDeliveryArea(details={"lat": lat, "lon": lon})
            raise _shortage(cart, delivery + pickups)
    return Promise.objects.create(
        channel=channel,
        cart=cart.by_sku,
        destination_lat=lat if not pickup_store else None,
        destination_lon=lon if not pickup_store else None,
        destination_address=address[:300],
        pickup_store=pickup_store,
        options=[promises.option_json(r, skus=cart.skus, lines=cart.wanted, at=at) for r in options],
        created_at=at,
        expires_at=at + timedelta(seconds=settings.O2O_PROMISE_TTL_SECONDS),
    )


# --- placement ------------------------------------------------------------------------------------------------------


@dataclass
class PlannedShipment:
    store_id: int
    code: str
    distance_km: float | None
    lines: dict[int, int]


@dataclass
class PlannedOrder:
    """Where an order goes, when it is promised, and the routing record that explains it."""

    shipments: list[PlannedShipment]
    promised_by: datetime
    option_id: str
    decision: dict = field(default_factory=dict)  # kind, plan_status, problem, plan, candidates, reason, solve_ms


def _planned_from_routed(routed: promises.Routed, *, cart: Cart) -> PlannedOrder:
    option = promises.option_json(routed, skus=cart.skus, lines=cart.wanted, at=routed.window_start)
    return PlannedOrder(
        shipments=[
            PlannedShipment(s.candidate.store_id, s.candidate.code, s.candidate.distance_km, s.lines)
            for s in routed.shipments
        ],
        promised_by=routed.window_end,
        option_id=routed.option_id,
        decision=_decision_from_option(option),
    )


def _decision_from_option(option: dict) -> dict:
    routing = option.get("routing", {})
    return {
        "plan_status": routing.get("plan", {}).get("status", ""),
        "problem": routing.get("problem", {}),
        "plan": routing.get("plan", {}),
        "candidates": routing.get("candidates", []),
        "reason": routing.get("reason", ""),
        "solve_ms": routing.get("solve_ms", 0),
    }


def _plan_from_promise(
    *, channel: SalesChannel, promise_id, option_id: str | None, cart: Cart, method: str, lat, lon,
    pickup_store_code: str | None, at: datetime,
) -> tuple[PlannedOrder, Promise]:
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
    stores = dict(Store.objects.filter(code__in=[s["store"] for s in option["shipments"]]).values_list("code", "pk"))
    pid_of = {sku: pid for pid, sku in cart.skus.items()}
    shipments = [
        PlannedShipment(
            stores[s["store"]], s["store"], s.get("distance_km"), {pid_of[line["sku"]]: line["qty"] for line in s["lines"]}
        )
        for s in option["shipments"]
    ]
    promised_by = datetime.fromisoformat(option["window_end"])
    return PlannedOrder(shipments, promised_by, option_id, _decision_from_option(option)), promise


def _plan_now(
    *, cart: Cart, method: str, lat, lon, pickup_store: Store | None, allow_split: bool, at: datetime
) -> PlannedOrder:
    """Route an order without a promise: pickup at its store, or the fastest delivery tier that can serve it."""
    if method == Method.PICKUP:
        cands = problems.load_candidates(
            lat=pickup_store.lat, lon=pickup_store.lon, lines=cart.wanted, method="pickup", at=at,
            only_store_ids=[pickup_store.pk], only_whole_cart=True,
        )
        routed = promises.pickup_at(lines=cart.wanted, candidate=cands[0], skus=cart.skus, at=at) if cands else None
        if routed is None or not routed.served:
            raise _shortage(cart, cands)
        return _planned_from_routed(routed, cart=cart)
    candidates = problems.load_candidates(lat=lat, lon=lon, lines=cart.wanted, method="delivery", at=at)
    served = promises.fastest_delivery(
        lines=cart.wanted, candidates=candidates, skus=cart.skus, lat=lat, lon=lon, allow_split=allow_split, at=at,
        tiers=("express_2h", "scheduled"),
    )
    if not served:
        if not candidates and not _any_store_delivers(lat, lon):
            raise OutOfDeliveryArea(details={"lat": lat, "lon": lon})
        raise _shortage(cart, candidates)
    return _planned_from_routed(served[0], cart=cart)


def _new_pickup_code(fulfillment: Fulfillment, order_number: str) -> PickupCode:
    for _ in range(10):
        code = "".join(secrets.choice(PickupCode.ALPHABET) for _ in range(6))
        try:
            with transaction.atomic():
                return PickupCode.objects.create(
                    fulfillment=fulfillment, code=code, qr_payload=f"o2o:pickup:{order_number}:{code}"
                )
        except IntegrityError:
            continue  # a live pickup already has this code: draw again
    raise RuntimeError("could not draw a free pickup code")


def _create_fulfillments(
    *, order: Order, planned: PlannedOrder, round_no: int, actor: str, now: datetime
) -> list[Fulfillment]:
    """Fulfillments, their lines, reservations and pickup codes for a plan. Stores in id order (lock order)."""
    created = []
    for shipment in sorted(planned.shipments, key=lambda s: s.store_id):
        f = Fulfillment.objects.create(
            order=order, store_id=shipment.store_id, round=round_no, method=order.method,
            promised_by=planned.promised_by, distance_km=shipment.distance_km, created_at=now, status_changed_at=now,
            line_count=len(shipment.lines),
        )
        FulfillmentLine.objects.bulk_create(
            [FulfillmentLine(fulfillment=f, product_id=pid, qty=qty) for pid, qty in sorted(shipment.lines.items())]
        )
        stock.reserve_stock(
            lines=[stock.StockLine(shipment.store_id, pid, qty) for pid, qty in sorted(shipment.lines.items())],
            reference=f.reference,
            actor=actor,
        )
        if order.method == Method.PICKUP:
            _new_pickup_code(f, order.number)
        created.append(f)
    return created


def _record_decision(*, order: Order, kind: str, decision: dict, now: datetime) -> RoutingDecision:
    problem = decision.get("problem", {})
    return RoutingDecision.objects.create(
        order=order,
        kind=kind,
        plan_status=decision.get("plan_status", "")[:16],
        problem=problem,
        plan=decision.get("plan", {}),
        candidates=decision.get("candidates", []),
        reason=decision.get("reason", ""),
        solve_ms=decision.get("solve_ms", 0) or 0,
        created_at=now,
    )


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
) -> Order:
    """Reserve the stock and route the order in one transaction.

    With `loyalty`, the order earns for that member when it completes, and a points hold named in it is captured
    as a tender in the same transaction (see orders.loyalty_tender).

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
    tender = loyalty_tender.check_tender(
        channel_code=channel.code, loyalty_input=loyalty, customer_phone=phone, now=at,
        subtotal_vnd=sum(cart.products[pid].price_vnd * qty for pid, qty in cart.wanted.items()),
    )
    pickup_store = None
    if method == Method.PICKUP:
        if not pickup_store_code:
            raise InvalidInput("A pickup order needs a pickup store.")
        pickup_store = _pickup_store(pickup_store_code)
    elif promise_id is None and (lat is None or lon is None):
        raise InvalidInput("A delivery order needs a destination (lat and lon, or an address) or a promise.")

    promise = None
    attempts = 1 if promise_id else 2
    for attempt in range(attempts):
        if promise_id:
            planned, promise = _plan_from_promise(
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
            _check_plan(planned)
        write = dict(
            channel=channel, cart=cart, planned=planned, customer_name=customer_name.strip()[:200], phone=phone,
            method=method, lat=lat, lon=lon, address=address, pickup_store=pickup_store, promise=promise,
            payment_state=payment_state, allow_split=allow_split, actor=actor, at=at, tender=tender,
        )
        try:
            if connection.in_atomic_block and connection.vendor == "postgresql" and _single_reservation(planned, method):
                # Inside the caller's transaction (the idempotency record's): no savepoint. If the one reservation
                # fails, reserve_stock has rolled back its own savepoint and _write_order deletes the rows it wrote.
                return _write_order(**write)
            with transaction.atomic():  # own transaction, or a savepoint around several reservations
                return _write_order(**write)
        except InsufficientStock:
            if attempt + 1 >= attempts:
                raise
            at = timezone.now()  # another order took the units between routing and reserving: route again
    raise AssertionError("unreachable")


def _check_plan(planned: PlannedOrder) -> None:
    """A plan is checked against the stock and capacity of its own problem before it is applied."""
    problem, plan = planned.decision.get("problem"), planned.decision.get("plan")
    if problem and plan:
        violations = check_plan(problem, plan)
        if violations:
            raise InvalidPlan(details={"violations": violations[:20]})


def _single_reservation(planned: PlannedOrder, method: str) -> bool:
    return len(planned.shipments) == 1 and method == Method.DELIVERY


def _write_order(
    *, channel, cart: Cart, planned: PlannedOrder, customer_name, phone, method, lat, lon, address, pickup_store,
    promise, payment_state, allow_split, actor, at, tender=None,
) -> Order:
    """Write a routed order: the order, its lines, fulfillments, fulfillment lines and routing decision, then the
    reservations (row locks on stock, held to commit, so taken last), then the two events.

    On PostgreSQL the rows are written in one statement (_insert_placement); elsewhere through the ORM."""
    subtotal = sum(cart.products[pid].price_vnd * qty for pid, qty in cart.wanted.items())
    shipments = sorted(planned.shipments, key=lambda s: s.store_id)  # stores in id order (lock order)
    order = Order(
        number="", channel=channel, customer_name=customer_name, customer_phone=phone,
        method=method, destination_lat=lat if method == Method.DELIVERY else None,
        destination_lon=lon if method == Method.DELIVERY else None, destination_address=address[:300],
        pickup_store=pickup_store, promise=promise, promise_option=planned.option_id[:64], allow_split=allow_split,
        payment_state=payment_state, subtotal_vnd=subtotal, total_vnd=subtotal, created_at=at, updated_at=at,
    )
    lines = [
        OrderLine(product=cart.products[pid], qty=qty, unit_price_vnd=cart.products[pid].price_vnd)
        for pid, qty in sorted(cart.wanted.items())
    ]
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
    decision = _decision_row(kind=RoutingKind.INITIAL, decision=planned.decision, now=at)
    prefix = (channel.code[:3] or "ORD").upper()
    if connection.vendor == "postgresql":
        _insert_placement(order, prefix, lines, fulfillments, f_lines, decision)
    else:
        order.number = f"tmp-{uuid.uuid4().hex[:24]}"
        order.save(force_insert=True)
        order.number = f"{prefix}-{order.pk:06d}"
        Order.objects.filter(pk=order.pk).update(number=order.number)
        for line in lines:
            line.order = order
        OrderLine.objects.bulk_create(lines)
        for f, fl in zip(fulfillments, f_lines, strict=True):
            f.order = order
            f.save(force_insert=True)
            for line in fl:
                line.fulfillment = f
            FulfillmentLine.objects.bulk_create(fl)
        decision.order = order
        decision.save(force_insert=True)
    try:
        for f, sh in zip(fulfillments, shipments, strict=True):
            stock.reserve_stock(
                lines=[stock.StockLine(sh.store_id, pid, qty) for pid, qty in sorted(sh.lines.items())],
                reference=f.reference,
                actor=actor,
            )
    except Exception:
        if connection.vendor == "postgresql" and not connection.needs_rollback:
            try:  # the rows were never visible to anyone: undo them within the caller's transaction
                _delete_placement(order, fulfillments)
            except DatabaseError:
                log.exception("could not undo a placement whose reservation failed (the transaction must roll back)")
        raise
    loyalty_tender.apply_tender(order=order, tender=tender, actor=actor, now=at)  # member row locked after stock
    codes: dict[int, PickupCode] = {}
    if method == Method.PICKUP:
        for f in fulfillments:
            codes[f.pk] = _new_pickup_code(f, order.number)
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


def _decision_row(*, kind: str, decision: dict, now: datetime) -> RoutingDecision:
    return RoutingDecision(
        kind=kind,
        plan_status=decision.get("plan_status", "")[:16],
        problem=decision.get("problem", {}),
        plan=decision.get("plan", {}),
        candidates=decision.get("candidates", []),
        reason=decision.get("reason", ""),
        solve_ms=decision.get("solve_ms", 0) or 0,
        created_at=now,
    )


def _columns(model, obj, *, skip: tuple[str, ...] = ()) -> tuple[list[str], list[str], list]:
    """Column names, placeholders and values of a model instance as Django's INSERT would send them (defaults,
    JSON adaptation, ...), every concrete field but the primary key and `skip`."""
    names, marks, values = [], [], []
    for f, name, null in _insert_fields(model, skip):
        value = f.get_db_prep_save(f.pre_save(obj, True), connection)
        names.append(name)
        if value is None:
            marks.append(null)
        else:
            marks.append("%s")
            values.append(value)
    return names, marks, values


@functools.cache
def _insert_fields(model, skip: tuple[str, ...]) -> tuple[tuple[Any, str, str], ...]:
    """(field, quoted column, typed NULL) of the columns _columns writes: fixed per model, and looking them up
    (quote_name, db_type) for every field of every row was a measurable share of a placement's CPU."""
    return tuple(
        (f, connection.ops.quote_name(f.column), f"NULL::{f.db_type(connection)}")
        for f in model._meta.concrete_fields
        if not f.primary_key and f.name not in skip
    )


def _recordset(model, objs, *, skip, extra: dict[str, tuple[str, list]] | None = None) -> tuple[list[str], str, str]:
    """Several instances of one model as one JSON parameter for jsonb_to_recordset(): (quoted column names, the
    record's column definitions, the JSON text). One parameter per table whatever the number of rows: the statement
    keeps one text (one prepared statement for any cart) and few parameters (psycopg caches its parsing), and
    json.dumps writes the rows faster than psycopg adapts a parameter per cell or an array per column. `extra`:
    columns that are not the model's (name -> (SQL type, one value per row)), e.g. the store to join on."""
    fields = _insert_fields(model, skip)
    names, definitions = _record_columns(model, skip)
    extra = extra or {}
    rows = []
    for i, obj in enumerate(objs):
        row = {f.column: f.get_db_prep_save(f.pre_save(obj, True), connection) for f, _name, _null in fields}
        for name, (_type, values) in extra.items():
            row[name] = values[i]
        rows.append(row)
    extra_definitions = "".join(f", {name} {sql_type}" for name, (sql_type, _values) in extra.items())
    return names, definitions + extra_definitions, json.dumps(rows, default=_json_value)


@functools.cache
def _record_columns(model, skip: tuple[str, ...]) -> tuple[list[str], str]:
    fields = _insert_fields(model, skip)
    return [name for _f, name, _null in fields], ", ".join(f"{name} {f.db_type(connection)}" for f, name, _null in fields)


def _json_value(value):
    if isinstance(value, datetime):
        return value.isoformat()  # with its offset: jsonb_to_recordset reads it as timestamptz
    raise TypeError(f"{type(value).__name__} is not a column value placement writes")


def _insert_placement(
    order: Order, prefix: str, lines: list[OrderLine], fulfillments: list[Fulfillment],
    f_lines: list[list[FulfillmentLine]], decision: RoutingDecision,
) -> None:
    """Insert a placed order with its lines, fulfillments, fulfillment lines and routing decision in one
    statement; the order number (PREFIX-000123) comes from the order's id in the same statement. Sets the primary
    keys on the instances."""
    o_cols, o_marks, o_params = _columns(Order, order, skip=("number",))
    ol_cols, ol_defs, ol_rows = _recordset(OrderLine, lines, skip=("order",))
    f_cols, f_defs, f_rows = _recordset(Fulfillment, fulfillments, skip=("order",))
    flat = [line for fl in f_lines for line in fl]
    stores = [f.store_id for f, fl in zip(fulfillments, f_lines, strict=True) for _ in fl]
    fl_cols, fl_defs, fl_rows = _recordset(FulfillmentLine, flat, skip=("fulfillment",), extra={"store": ("bigint", stores)})
    d_cols, d_marks, d_params = _columns(RoutingDecision, decision, skip=("order",))
    t = {m: m._meta.db_table for m in (Order, OrderLine, Fulfillment, FulfillmentLine, RoutingDecision)}
    sql = f"""
        WITH n AS (SELECT nextval(pg_get_serial_sequence('{t[Order]}', 'id')) AS id),
        o AS (
            INSERT INTO {t[Order]} (id, number, {", ".join(o_cols)})
            SELECT n.id, %s || '-' || CASE WHEN n.id < 1000000 THEN lpad(n.id::text, 6, '0') ELSE n.id::text END,
                   {", ".join(o_marks)}
            FROM n RETURNING id, number
        ),
        ol AS (
            INSERT INTO {t[OrderLine]} (order_id, {", ".join(ol_cols)})
            SELECT o.id, {", ".join("v." + c for c in ol_cols)}
            FROM o, jsonb_to_recordset(%s::jsonb) AS v ({ol_defs}) ORDER BY v.product_id
        ),
        f AS (
            INSERT INTO {t[Fulfillment]} (order_id, {", ".join(f_cols)})
            SELECT o.id, {", ".join("v." + c for c in f_cols)}
            FROM o, jsonb_to_recordset(%s::jsonb) AS v ({f_defs}) ORDER BY v.store_id
            RETURNING id, store_id
        ),
        fl AS (
            INSERT INTO {t[FulfillmentLine]} (fulfillment_id, {", ".join(fl_cols)})
            SELECT f.id, {", ".join("v." + c for c in fl_cols)}
            FROM f JOIN jsonb_to_recordset(%s::jsonb) AS v ({fl_defs}) ON v.store = f.store_id
            ORDER BY f.id, v.product_id
        ),
        d AS (
            INSERT INTO {t[RoutingDecision]} (order_id, {", ".join(d_cols)})
            SELECT o.id, {", ".join(d_marks)} FROM o RETURNING id
        )
        SELECT o.id, o.number, (SELECT array_agg(ARRAY[f.store_id, f.id]) FROM f), (SELECT id FROM d) FROM o
    """
    with prepared.cursor() as cursor:  # one prepared statement whatever the number of lines and stores
        cursor.execute(sql, [prefix, *o_params, ol_rows, f_rows, fl_rows, *d_params])
        order_id, number, f_ids, decision_id = cursor.fetchone()
    order.pk, order.number = order_id, number
    order._state.adding, order._state.db = False, connection.alias
    by_store = dict(f_ids)
    for f, fl in zip(fulfillments, f_lines, strict=True):
        f.pk, f.order = by_store[f.store_id], order
        f._state.adding, f._state.db = False, connection.alias
        for line in fl:
            line.fulfillment = f
    for line in lines:
        line.order = order
    decision.pk, decision.order = decision_id, order
    decision._state.adding, decision._state.db = False, connection.alias


def _delete_placement(order: Order, fulfillments: list[Fulfillment]) -> None:
    """Undo _insert_placement inside the same transaction (the reservation failed; nothing else saw the rows)."""
    t = {m: m._meta.db_table for m in (Order, OrderLine, Fulfillment, FulfillmentLine, RoutingDecision)}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH fl AS (DELETE FROM {t[FulfillmentLine]} WHERE fulfillment_id = ANY(%(fids)s)),
            f AS (DELETE FROM {t[Fulfillment]} WHERE order_id = %(id)s),
            ol AS (DELETE FROM {t[OrderLine]} WHERE order_id = %(id)s),
            d AS (DELETE FROM {t[RoutingDecision]} WHERE order_id = %(id)s)
            DELETE FROM {t[Order]} WHERE id = %(id)s
            """,
            {"id": order.pk, "fids": [f.pk for f in fulfillments]},
        )


# --- order status and cancellation ----------------------------------------------------------------------------------


def _sync_order_status(order: Order, *, now: datetime) -> str:
    """Keep Order.status in step with its fulfillments (the caller holds the order's lock)."""
    if order.status == OrderStatus.CANCELLED:
        return order.status
    statuses = set(order.fulfillments.values_list("status", flat=True))
    live = statuses - {S.CANCELLED}
    if not live:
        new = OrderStatus.CANCELLED
    elif live & OPEN_STATUSES:
        new = OrderStatus.OPEN
    elif live & SUCCESS:
        new = OrderStatus.COMPLETED
    else:
        new = OrderStatus.FAILED
    if new != order.status:
        Order.objects.filter(pk=order.pk).update(status=new, updated_at=now)
        order.status = new
        loyalty_tender.on_status(order=order, status=new, actor=SYSTEM, now=now)  # earn, or give points back
    return new


def _lock_order(order_id: int) -> Order:
    return Order.objects.select_for_update(of=("self",)).select_related("channel").get(pk=order_id)


def _retire_pickup_code(fulfillment: Fulfillment) -> None:
    PickupCode.objects.filter(fulfillment=fulfillment, is_live=True).update(is_live=False)


def _set_status(f: Fulfillment, to: str, *, now: datetime, **extra) -> None:
    changed = Fulfillment.objects.filter(pk=f.pk, status=f.status).update(status=to, status_changed_at=now, **extra)
    if changed != 1:  # cannot happen under the row lock; kept as the last line of defence
        raise InvalidTransition(details={"fulfillment": f.pk, "from": f.status, "to": to})
    f.status = to
    f.status_changed_at = now
    for name, value in extra.items():
        setattr(f, name, value)


@transaction.atomic
def cancel_order(*, order: Order, actor: str, reason: str = "") -> Order:
    """Cancel an order whose goods have not left any store: release every reservation. Cancelling twice is a no-op.
    Raises OrderNotCancellable (409) once something was handed to a courier or collected."""
    now = timezone.now()
    order = _lock_order(order.pk)
    if order.status == OrderStatus.CANCELLED:
        return order
    fulfillments = list(order.fulfillments.select_for_update().order_by("pk"))
    if any(f.status in LEFT_STORE for f in fulfillments):
        raise OrderNotCancellable(details={"order": order.number})
    for f in fulfillments:
        if f.status in OPEN_STATUSES:
            stock.release_reservations(reference=f.reference, actor=actor, note=reason or "order cancelled")
            _set_status(f, S.CANCELLED, now=now)
            _retire_pickup_code(f)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.CANCELLED, updated_at=now)
    order.status = OrderStatus.CANCELLED
    loyalty_tender.on_status(order=order, status=OrderStatus.CANCELLED, actor=actor, now=now)  # points back
    emit(
        topic="order.cancelled", aggregate=order.aggregate, channel=order.channel,
        payload={"order": order.number, "reason": reason},
    )
    return order


# --- the fulfilment state machine -----------------------------------------------------------------------------------

EVENTS = {
    S.READY_FOR_PICKUP: "fulfillment.ready_for_pickup",
    S.HANDED_TO_COURIER: "fulfillment.out_for_delivery",
    S.DELIVERED: "fulfillment.delivered",
    S.DELIVERY_FAILED: "fulfillment.delivery_failed",
    S.RETURNED_TO_STORE: "fulfillment.returned_to_store",
    S.COLLECTED: "fulfillment.collected",
    S.NOT_COLLECTED: "fulfillment.not_collected",
    S.CANCELLED: "fulfillment.cancelled",
    S.PICKING: "fulfillment.picking",
    S.PACKED: "fulfillment.packed",
}


def allowed_transitions(f: Fulfillment) -> list[str]:
    allowed = set(TRANSITIONS[f.status])
    if f.method == Method.PICKUP:
        allowed -= {S.HANDED_TO_COURIER}
    else:
        allowed -= {S.READY_FOR_PICKUP}
    return sorted(allowed)


def _units(f: Fulfillment) -> dict[int, int]:
    return {line.product_id: line.units for line in f.lines.all() if line.units > 0}


@transaction.atomic
def transition_fulfillment(
    *, fulfillment: Fulfillment | int, to: str, actor: str, courier_name: str = "", courier_tracking: str = ""
) -> Fulfillment:
    """Move a fulfillment one step along the state machine. Refused with InvalidTransition (409) otherwise.

    Goods leaving the store (handed_to_courier, collected) commit the reservation; not_collected and cancelled
    release it; returned_to_store (after delivery_failed, once the goods are physically back) brings them back on
    hand at the store."""
    now = timezone.now()
    fid = fulfillment.pk if isinstance(fulfillment, Fulfillment) else fulfillment
    order_id = Fulfillment.objects.filter(pk=fid).values_list("order_id", flat=True).first()
    if order_id is None:
        raise FulfillmentNotFound(details={"fulfillment": fid})
    order = _lock_order(order_id)
    f = Fulfillment.objects.select_for_update(of=("self",)).select_related("store").get(pk=fid)
    if to not in allowed_transitions(f):
        raise InvalidTransition(
            f"A {f.method} fulfillment cannot go from {f.status} to {to}.",
            details={"fulfillment": f.pk, "from": f.status, "to": to, "allowed": allowed_transitions(f)},
        )
    extra: dict = {}
    if to == S.PACKED:
        FulfillmentLine.objects.filter(fulfillment=f, picked_qty__isnull=True).update(picked_qty=F("qty"))
    elif to == S.READY_FOR_PICKUP:
        extra["ready_at"] = now
    elif to in (S.HANDED_TO_COURIER, S.COLLECTED):
        units = _units(f)
        if units:
            stock.commit_reservations(reference=f.reference, actor=actor, quantities=units, note=to)
        stock.release_reservations(reference=f.reference, actor=actor, note="left over after commit")
        if to == S.HANDED_TO_COURIER:
            extra.update(courier_name=courier_name[:100], courier_tracking=courier_tracking[:100])
    elif to in (S.NOT_COLLECTED, S.CANCELLED):
        stock.release_reservations(reference=f.reference, actor=actor, note=to)
    elif to == S.RETURNED_TO_STORE:
        for pid, qty in sorted(_units(f).items()):
            stock.adjust_stock(
                store=f.store, product=Product(pk=pid), reason=MovementReason.DELIVERY_RETURNED, actor=actor,
                on_hand=qty, reference=f.reference, idempotency_key=f"{f.reference}:returned:{pid}",
            )
    _set_status(f, to, now=now, **extra)
    if to in (S.COLLECTED, S.NOT_COLLECTED, S.CANCELLED):
        _retire_pickup_code(f)
    _sync_order_status(order, now=now)
    payload = {"order": order.number, "fulfillment": f.pk, "store": f.store.code, "status": to, "order_status": order.status}
    if to == S.READY_FOR_PICKUP:
        code = PickupCode.objects.filter(fulfillment=f, is_live=True).first()
        payload.update(pickup_code=code.code if code else None, qr_payload=code.qr_payload if code else None)
    emit(topic=EVENTS[to], aggregate=order.aggregate, channel=order.channel, payload=payload)
    return f


# --- short picks and re-routing -------------------------------------------------------------------------------------


@transaction.atomic
def report_short_pick(*, fulfillment: Fulfillment | int, found: dict[int, int], actor: str) -> list[Fulfillment]:
    """The store found fewer units than expected: `found` maps product_id -> units actually found (lines not listed
    were found whole). The missing units are written off at this store (a stock adjustment, when the ledger allows
    it), the reservation shrinks to what was found, and the missing lines are re-routed to the next best store
    (delivery orders; a pickup order stays at its store, so its missing units are reported unfulfilled).
    Returns the new fulfillments."""
    now = timezone.now()
    fid = fulfillment.pk if isinstance(fulfillment, Fulfillment) else fulfillment
    order_id = Fulfillment.objects.filter(pk=fid).values_list("order_id", flat=True).first()
    if order_id is None:
        raise FulfillmentNotFound(details={"fulfillment": fid})
    order = _lock_order(order_id)
    f = Fulfillment.objects.select_for_update(of=("self",)).select_related("store").get(pk=fid)
    if f.status not in (S.ASSIGNED, S.PICKING):
        raise InvalidTransition(
            "Short picks are reported while picking.", details={"fulfillment": f.pk, "status": f.status}
        )
    lines = {line.product_id: line for line in f.lines.all()}
    missing: dict[int, int] = {}
    for pid, units in found.items():
        line = lines.get(pid)
        if line is None or not isinstance(units, int) or units < 0 or units > line.units:
            raise InvalidShortPick(details={"product_id": pid, "found": units})
        if units < line.units:
            missing[pid] = line.units - units
    if not missing:
        return []
    for pid, short in missing.items():
        FulfillmentLine.objects.filter(pk=lines[pid].pk).update(picked_qty=lines[pid].units - short)
        lines[pid].picked_qty = lines[pid].units - short
    # The reservation shrinks to what was found: release, then reserve the found units again (same reference).
    stock.release_reservations(reference=f.reference, actor=actor, note="short pick")
    keep = {pid: line.units for pid, line in lines.items() if line.units > 0}
    if keep:
        stock.reserve_stock(
            lines=[stock.StockLine(f.store_id, pid, qty) for pid, qty in sorted(keep.items())],
            reference=f.reference, actor=actor,
        )
    for pid, short in sorted(missing.items()):
        try:
            stock.adjust_stock(
                store=f.store, product=Product(pk=pid), reason=MovementReason.ADJUSTMENT, actor=actor, on_hand=-short,
                reference=f.reference, note="short pick: units not found",
            )
        except InvalidStockChange:
            log.warning("short pick on %s: could not write off %s × %s", f.reference, short, pid)
    if f.status == S.ASSIGNED:
        _set_status(f, S.PICKING, now=now)
    if not keep:
        _set_status(f, S.CANCELLED, now=now)
        _retire_pickup_code(f)
    created = _reroute(order=order, lines=missing, exclude_store_ids={f.store_id}, actor=actor, now=now, source=f)
    _sync_order_status(order, now=now)
    return created


def _reroute(
    *, order: Order, lines: dict[int, int], exclude_store_ids: set[int], actor: str, now: datetime, source: Fulfillment
) -> list[Fulfillment]:
    skus = dict(Product.objects.filter(pk__in=lines).values_list("pk", "sku"))
    cart = Cart(lines, skus, {})
    served = []
    candidates: list[problems.Candidate] = []
    if order.method == Method.DELIVERY:
        candidates = problems.load_candidates(
            lat=order.destination_lat, lon=order.destination_lon, lines=lines, method="delivery", at=now,
            exclude_store_ids=exclude_store_ids,
        )
        served = promises.fastest_delivery(
            lines=lines, candidates=candidates, skus=skus, lat=order.destination_lat, lon=order.destination_lon,
            allow_split=order.allow_split, at=now,
        )
    created: list[Fulfillment] = []
    if served:
        planned = _planned_from_routed(served[0], cart=cart)
        _check_plan(planned)
        round_no = (order.fulfillments.aggregate(m=Max("round"))["m"] or 0) + 1
        created = _create_fulfillments(order=order, planned=planned, round_no=round_no, actor=actor, now=now)
        decision = _record_decision(order=order, kind=RoutingKind.REROUTE, decision=planned.decision, now=now)
        emit(
            topic="order.rerouted", aggregate=order.aggregate, channel=order.channel,
            payload={
                "order": order.number, "from_store": source.store.code,
                "fulfillments": [{"id": f.pk, "store_id": f.store_id, "promised_by": f.promised_by} for f in created],
                "reason": decision.reason,
            },
        )
    else:
        for pid, qty in lines.items():
            OrderLine.objects.filter(order=order, product_id=pid).update(unfulfilled_qty=F("unfulfilled_qty") + qty)
        reason = "pickup orders stay at their store" if order.method == Method.PICKUP else "no other store can serve"
        RoutingDecision.objects.create(
            order=order, kind=RoutingKind.REROUTE, plan_status="unserved", problem={}, plan={},
            candidates=[], reason=f"Short lines not re-routed: {reason}.", applied=False, created_at=now,
        )
        emit(
            topic="order.lines_unfulfilled", aggregate=order.aggregate, channel=order.channel,
            payload={"order": order.number, "lines": [{"sku": skus[p], "qty": q} for p, q in lines.items()],
                     "reason": reason},
        )
    return created


# --- re-routing by staff --------------------------------------------------------------------------------------------


@dataclass
class RerouteResult:
    """What reroute_order did. `changed` is False when the router kept the order where it was (nothing written);
    `replayed` is True when the idempotency key named an earlier re-route (its fulfillments are returned)."""

    order: Order
    changed: bool
    from_stores: list[str]
    fulfillments: list[Fulfillment]
    decision: RoutingDecision | None = None
    replayed: bool = False

    @property
    def stores(self) -> list[str]:
        return sorted({f.store.code for f in self.fulfillments})


def reroute_order(
    *,
    order: Order | int,
    reason: str,
    actor: str,
    exclude_store_ids: set[int] | None = None,
    avoid_current_stores: bool = False,
    within_store_ids: set[int] | None = None,
    idempotency_key: str = "",
    now: datetime | None = None,
) -> RerouteResult:
    """Route an order that no store has started picking again, with the stock of now, and move it if the router
    chooses other stores: the current fulfillments are cancelled and their reservations released, new ones are
    reserved, and a `manual` routing decision records the reason and the actor. `avoid_current_stores` (or
    `exclude_store_ids`) keeps the router away from stores; otherwise it may keep the same store(s), and then
    nothing changes. `within_store_ids` (a staff member's store scope) limits the stores it may choose. The same
    `idempotency_key` again returns the first re-route instead of a second; with another reason or other stores to
    avoid it is refused (IdempotencyKeyReused, 422).

    Raises RerouteReasonRequired (400), OrderNotFound (404), PickupNotReroutable (409: a pickup stays at the
    customer's store), OrderNotReroutable (409: closed, or a fulfillment is picking or beyond) and RerouteUnserved
    (409: no store can serve it now; nothing changed)."""
    reason = (reason or "").strip()
    if not reason:
        raise RerouteReasonRequired()
    order_id = order.pk if isinstance(order, Order) else order
    for attempt in range(2):
        try:
            with transaction.atomic():
                return _reroute_order(
                    order_id=order_id, reason=reason[:500], actor=actor, exclude=set(exclude_store_ids or ()),
                    avoid_current=avoid_current_stores, within=within_store_ids, idempotency_key=idempotency_key[:200],
                    now=now or timezone.now(),
                )
        except InsufficientStock as exc:
            # Another order took the units between routing and reserving (routing does not lock stock rows);
            # the savepoint undid everything, so route once more with the stock of now.
            if attempt == 1:
                raise RerouteUnserved(
                    "The stock moved while the order was re-routed; nothing was changed. Try again.",
                    details=exc.details,
                ) from exc
            now = None
    raise AssertionError("unreachable")


def reroute_refusal(*, order: Order, live: list[Fulfillment] | None = None) -> DomainError | None:
    """Why reroute_order would refuse this order now (the error it would raise), or None if it may be re-routed.
    `live`: its fulfillments that are not cancelled, if the caller has them (reroute_order, under its locks)."""
    if order.method == Method.PICKUP:
        return PickupNotReroutable(details={"order": order.number})
    if live is None:
        live = list(order.fulfillments.exclude(status=S.CANCELLED).select_related("store").order_by("pk"))
    if order.status != OrderStatus.OPEN or not live or any(f.status not in NOT_STARTED for f in live):
        return OrderNotReroutable(
            details={
                "order": order.number, "order_status": order.status,
                "fulfillments": [{"id": f.pk, "store": f.store.code, "status": f.status} for f in live],
            }
        )
    return None


def _reroute_order(
    *, order_id: int, reason: str, actor: str, exclude: set[int], avoid_current: bool, within: set[int] | None,
    idempotency_key: str, now: datetime,
) -> RerouteResult:
    try:
        # The order's lock is what picking takes first too: a concurrent start of picking either committed before
        # (and is seen below) or waits until this re-route has committed (and then finds its fulfillment cancelled).
        order = _lock_order(order_id)
    except Order.DoesNotExist as exc:
        raise OrderNotFound(details={"order": order_id}) from exc
    if idempotency_key:
        earlier = (
            RoutingDecision.objects.filter(
                order=order, kind=RoutingKind.MANUAL, plan__manual__idempotency_key=idempotency_key
            )
            .order_by("pk")
            .first()
        )
        if earlier is not None:
            manual = earlier.plan.get("manual", {})
            asked = {"reason": reason, "avoid_current": avoid_current, "excluded_ids": sorted(exclude)}
            if {k: manual.get(k) for k in asked} != asked:
                raise IdempotencyKeyReused(details={"idempotency_key": idempotency_key, "order": order.number})
            return RerouteResult(
                order=order, changed=True, from_stores=manual.get("from_stores", []), decision=earlier, replayed=True,
                fulfillments=list(
                    Fulfillment.objects.filter(pk__in=manual.get("fulfillments", [])).select_related("store").order_by("pk")
                ),
            )
    live = list(
        Fulfillment.objects.select_for_update(of=("self",))
        .select_related("store")
        .prefetch_related("lines")
        .filter(order=order)
        .exclude(status=S.CANCELLED)
        .order_by("pk")
    )
    refusal = reroute_refusal(order=order, live=live)
    if refusal is not None:
        raise refusal
    lines: dict[int, int] = defaultdict(int)
    held_stock: dict[tuple[int, int], int] = defaultdict(int)
    held_lines: dict[int, int] = defaultdict(int)
    slot_end = now + timedelta(hours=2)  # load_candidates counts the lines promised within its 2 h slot
    for f in live:
        for line in f.lines.all():
            lines[line.product_id] += line.units
            held_stock[(f.store_id, line.product_id)] += line.units
            if f.promised_by < slot_end:
                held_lines[f.store_id] += 1
    lines = {pid: qty for pid, qty in lines.items() if qty > 0}
    from_stores = sorted({f.store.code for f in live})
    asked_exclude = sorted(exclude)
    if avoid_current:
        exclude |= {f.store_id for f in live}
    avoided = sorted(Store.objects.filter(pk__in=exclude).values_list("code", flat=True))
    if within is not None:
        exclude |= set(Store.objects.exclude(pk__in=within).values_list("pk", flat=True))
    skus = dict(Product.objects.filter(pk__in=lines).values_list("pk", "sku"))
    # What this order holds counts as available to it: the router may keep it where it is.
    candidates = problems.load_candidates(
        lat=order.destination_lat, lon=order.destination_lon, lines=lines, method="delivery", at=now,
        exclude_store_ids=exclude, extra_stock=held_stock, extra_capacity=held_lines,
    )
    served = promises.fastest_delivery(
        lines=lines, candidates=candidates, skus=skus, lat=order.destination_lat, lon=order.destination_lon,
        allow_split=order.allow_split, at=now,
    )
    if not served:
        raise RerouteUnserved(
            details={
                "order": order.number, "excluded_stores": avoided, "within_scope": within is not None,
                "candidates": [c.code for c in candidates],
            }
        )
    planned = _planned_from_routed(served[0], cart=Cart(lines, skus, {}))
    _check_plan(planned)
    current = {(f.store_id, tuple(sorted(_units(f).items()))) for f in live}
    if {(s.store_id, tuple(sorted(s.lines.items()))) for s in planned.shipments} == current:
        return RerouteResult(order=order, changed=False, from_stores=from_stores, fulfillments=live)
    for f in live:
        stock.release_reservations(reference=f.reference, actor=actor, note=f"re-routed: {reason}"[:200])
        _set_status(f, S.CANCELLED, now=now)
        _retire_pickup_code(f)
    round_no = (order.fulfillments.aggregate(m=Max("round"))["m"] or 0) + 1
    created = _create_fulfillments(order=order, planned=planned, round_no=round_no, actor=actor, now=now)
    created = list(Fulfillment.objects.filter(pk__in=[f.pk for f in created]).select_related("store").order_by("pk"))
    to_stores = sorted({f.store.code for f in created})
    decision = dict(planned.decision)
    decision["reason"] = (
        f"Re-routed by {actor} from {', '.join(from_stores)} to {', '.join(to_stores)}: {reason}. "
        f"{decision.get('reason', '')}"
    ).strip()
    decision["plan"] = {
        **decision.get("plan", {}),
        "manual": {
            "actor": actor, "reason": reason, "idempotency_key": idempotency_key, "from_stores": from_stores,
            "avoid_current": avoid_current, "excluded_ids": asked_exclude, "excluded_stores": avoided,
            "within_scope": within is not None, "cancelled": [f.pk for f in live],
            "fulfillments": [f.pk for f in created],
        },
    }
    record = _record_decision(order=order, kind=RoutingKind.MANUAL, decision=decision, now=now)
    Order.objects.filter(pk=order.pk).update(updated_at=now)
    _sync_order_status(order, now=now)
    emit(
        topic="order.rerouted", aggregate=order.aggregate, channel=order.channel,
        payload={
            "order": order.number, "kind": RoutingKind.MANUAL.value, "from_stores": from_stores,
            "fulfillments": [
                {"id": f.pk, "store_id": f.store_id, "store": f.store.code, "promised_by": f.promised_by}
                for f in created
            ],
            "reason": reason, "actor": actor, "routing_reason": record.reason,
        },
    )
    log.info("order %s re-routed by %s: %s -> %s", order.number, actor, from_stores, to_stores)
    return RerouteResult(order=order, changed=True, from_stores=from_stores, fulfillments=created, decision=record)


# --- uncollected pickups ----------------------------------------------------------------------------------------------


def release_uncollected_pickups(*, now: datetime | None = None, hold_days: float | None = None) -> int:
    """Pickups ready for longer than the hold go back on sale (not_collected), one transaction each."""
    now = now or timezone.now()
    hold = timedelta(days=hold_days if hold_days is not None else settings.O2O_PICKUP_HOLD_DAYS)
    ids = list(
        Fulfillment.objects.filter(status=S.READY_FOR_PICKUP, ready_at__lte=now - hold).values_list("pk", flat=True)
    )
    released = 0
    for fid in ids:
        try:
            transition_fulfillment(fulfillment=fid, to=S.NOT_COLLECTED, actor="task:release_uncollected_pickups")
            released += 1
        except InvalidTransition:
            continue  # collected meanwhile
    return released


def purge_expired_promises(*, older_than: timedelta = timedelta(days=1)) -> int:
    deleted, _ = Promise.objects.filter(expires_at__lt=timezone.now() - older_than).delete()
    return deleted


# --- waves ------------------------------------------------------------------------------------------------------------


@dataclass
class WaveResult:
    orders: int = 0
    current_shipments: int = 0
    new_shipments: int | None = None
    plan_status: str = ""
    reassigned: list[str] = field(default_factory=list)
    applied: bool = False
    note: str = ""


def _wave_orders(*, since: datetime) -> list[Order]:
    """Delivery orders placed since `since` whose every open fulfillment is still `assigned`, except those staff
    re-routed by hand (a wave must not move them back to a store they were taken away from)."""
    started = Fulfillment.objects.filter(order=OuterRef("pk"), status__in=OPEN_STATUSES - {S.ASSIGNED})
    by_hand = RoutingDecision.objects.filter(order=OuterRef("pk"), kind=RoutingKind.MANUAL)
    return list(
        Order.objects.filter(method=Method.DELIVERY, status=OrderStatus.OPEN, created_at__gte=since)
        .exclude(Exists(started))
        .exclude(Exists(by_hand))
        .filter(fulfillments__status=S.ASSIGNED)
        .distinct()
        .order_by("pk")
    )


def route_wave(*, now: datetime | None = None, window_seconds: int | None = None, time_limit_s: float | None = None,
               order_ids: Iterable[int] | None = None) -> WaveResult:
    """Re-optimise the delivery orders of the last window that have not started picking, together. The new plan is
    applied only if it serves every order and uses fewer shipments; orders whose picking started meanwhile are left
    alone (checked again under the locks)."""
    now = now or timezone.now()
    window = window_seconds if window_seconds is not None else settings.O2O_WAVE_WINDOW_SECONDS
    orders = _wave_orders(since=now - timedelta(seconds=window))
    if order_ids is not None:
        wanted = set(order_ids)
        orders = [o for o in orders if o.pk in wanted]
    result = WaveResult(orders=len(orders))
    if len(orders) < 2:
        result.note = "fewer than two orders in the wave"
        return result
    current = defaultdict(list)  # order id -> [Fulfillment]
    for f in (
        Fulfillment.objects.filter(order__in=orders, status=S.ASSIGNED).prefetch_related("lines").order_by("pk")
    ):
        current[f.order_id].append(f)
    held_stock: dict[tuple[int, int], int] = defaultdict(int)
    held_lines: dict[int, int] = defaultdict(int)
    order_lines: dict[int, dict[int, int]] = {}
    for order in orders:
        merged: dict[int, int] = defaultdict(int)
        for f in current[order.pk]:
            for line in f.lines.all():
                merged[line.product_id] += line.qty
                held_stock[(f.store_id, line.product_id)] += line.qty
                held_lines[f.store_id] += 1
        order_lines[order.pk] = dict(merged)
    all_pids = {pid for lines in order_lines.values() for pid in lines}
    skus = dict(Product.objects.filter(pk__in=all_pids).values_list("pk", "sku"))
    specs = []
    cands_of: dict[int, list[problems.Candidate]] = {}
    for order in orders:
        lines = order_lines[order.pk]
        tier = order.promise_option if order.promise_option in ("express_1h", "express_2h", "scheduled") else "express_2h"
        cands = problems.load_candidates(
            lat=order.destination_lat, lon=order.destination_lon, lines=lines, method="delivery", at=now,
            extra_stock=held_stock, extra_capacity=held_lines, slot_hours=promises.TIER_SLOT_HOURS[tier],
        )
        mine = {f.store_id for f in current[order.pk]}
        cands = [c for c in cands if c.store_id in mine or promises.tier_eligible(c, tier=tier, at=now)]
        cands_of[order.pk] = cands
        specs.append(
            problems.OrderSpec(
                id=order.number, method="delivery", lines=lines, candidates=cands, lat=order.destination_lat,
                lon=order.destination_lon, allow_split=order.allow_split,
            )
        )
    limit = time_limit_s if time_limit_s is not None else settings.O2O_WAVE_TIME_LIMIT_S
    problem = problems.build_problem(orders=specs, skus=skus, slot_hours=2, time_limit_s=limit)
    started = time.perf_counter()
    plan = route(problem, time_limit_s=limit)
    solve_ms = (time.perf_counter() - started) * 1000
    result.plan_status = plan.get("status", "")
    result.current_shipments = sum(len(current[o.pk]) for o in orders)
    if plan.get("unassigned"):
        result.note = "the wave plan leaves orders unserved; kept the current assignment"
        return result
    if check_plan(problem, plan):
        result.note = "the wave plan breaks a limit; kept the current assignment"
        return result
    new_by_order = {a["order"]: a["shipments"] for a in plan.get("assignments", [])}
    result.new_shipments = sum(len(s) for s in new_by_order.values())
    if result.new_shipments >= result.current_shipments:
        result.note = "no fewer shipments; kept the current assignment"
        return result
    pid_of = {sku: pid for pid, sku in skus.items()}
    changes: dict[int, PlannedOrder] = {}
    for order in orders:
        new = new_by_order.get(order.number, [])
        cands = {c.code: c for c in cands_of[order.pk]}
        new_set = {(s["store"], tuple(sorted((line["sku"], line["qty"]) for line in s["lines"]))) for s in new}
        old_set = set()
        codes = dict(Store.objects.filter(pk__in=[f.store_id for f in current[order.pk]]).values_list("pk", "code"))
        for f in current[order.pk]:
            old_set.add((codes[f.store_id], tuple(sorted((skus[line.product_id], line.qty) for line in f.lines.all()))))
        if new_set == old_set:
            continue
        shipments = [
            PlannedShipment(
                cands[s["store"]].store_id, s["store"], cands[s["store"]].distance_km,
                {pid_of[line["sku"]]: line["qty"] for line in s["lines"]},
            )
            for s in new
        ]
        chosen = {s["store"] for s in new}
        summary = problems.candidate_summary(
            cands_of[order.pk], lines=order_lines[order.pk], skus=skus, slot_hours=2, chosen=chosen
        )
        changes[order.pk] = PlannedOrder(
            shipments=shipments,
            promised_by=min(f.promised_by for f in current[order.pk]),
            option_id=order.promise_option,
            decision={
                "plan_status": plan.get("status", ""), "problem": problem, "plan": plan, "candidates": summary,
                "reason": (
                    f"Wave of {len(orders)} orders: {result.current_shipments} → {result.new_shipments} shipments; "
                    f"this order moves to {', '.join(sorted(chosen))}."
                ),
                "solve_ms": round(solve_ms, 3),
            },
        )
    try:
        result.reassigned = _apply_wave(changes=changes, now=now)
        result.applied = bool(result.reassigned)
    except InsufficientStock:
        result.note = "stock moved while the wave was solved; kept the current assignment"
    return result


@transaction.atomic
def _apply_wave(*, changes: dict[int, PlannedOrder], now: datetime) -> list[str]:
    locked = list(Order.objects.select_for_update(of=("self",)).select_related("channel").filter(pk__in=changes).order_by("pk"))
    fulfillments = defaultdict(list)
    for f in Fulfillment.objects.select_for_update().filter(order__in=locked, status__in=OPEN_STATUSES).order_by("pk"):
        fulfillments[f.order_id].append(f)
    movable = [o for o in locked if o.status == OrderStatus.OPEN and all(f.status == S.ASSIGNED for f in fulfillments[o.pk])]
    # Release every moving order first, so that one order's new store can take what another order gave back.
    for order in movable:
        for f in fulfillments[order.pk]:
            stock.release_reservations(reference=f.reference, actor=SYSTEM, note="wave re-assignment")
            _set_status(f, S.CANCELLED, now=now)
    moved = []
    for order in movable:
        round_no = (order.fulfillments.aggregate(m=Max("round"))["m"] or 0) + 1
        created = _create_fulfillments(order=order, planned=changes[order.pk], round_no=round_no, actor=SYSTEM, now=now)
        decision = _record_decision(order=order, kind=RoutingKind.WAVE, decision=changes[order.pk].decision, now=now)
        emit(
            topic="order.routed", aggregate=order.aggregate, channel=order.channel,
            payload={
                "order": order.number, "kind": "wave",
                "fulfillments": [{"id": f.pk, "store_id": f.store_id, "promised_by": f.promised_by} for f in created],
                "reason": decision.reason,
            },
        )
        moved.append(order.number)
    return moved
