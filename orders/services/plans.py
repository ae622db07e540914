"""A routed order's plan and how it is applied: fulfillments with their lines, reservations and pickup codes, and the
routing decision that explains it. Placement, re-routes and waves all apply plans through here.

A plan is also what an order's price depends on (price_plan): the selling store (the pickup store, or a delivery's
first shipment's store) gives the prices and promotions in force, and a delivery's farthest shipment the fee. Promise
options and placement price through the same function, so an order placed from an option is priced as it showed."""

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction

from inventory import services as stock
from inventory.models import Store
from orders import fast_paths, promises
from orders.exceptions import (
    InvalidPlan,
)
from orders.models import (
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    Method,
    Order,
    PickupCode,
    RoutingDecision,
)
from orders.pricing import engine
from orders.pricing import selectors as pricing_selectors
from orders.pricing import services as pricing
from orders.routing import check_plan
from orders.services.cart import Cart

log = logging.getLogger(__name__)
S = FulfillmentStatus


@dataclass
class PlannedShipment:
    store_id: int
    code: str
    distance_km: float | None
    lines: dict[int, int]
    time_zone: str | None = None  # the store's, when the plan read it (None: read with the city when needed)
    city: str | None = None


@dataclass
class PlannedOrder:
    """Where an order goes, when it is promised, and the routing record that explains it."""

    shipments: list[PlannedShipment]
    promised_by: datetime
    option_id: str
    decision: dict = field(default_factory=dict)  # kind, plan_status, problem, plan, candidates, reason, solve_ms


def planned_from_routed(routed: promises.Routed, *, cart: Cart) -> PlannedOrder:
    option = promises.option_json(routed, skus=cart.skus, lines=cart.wanted, at=routed.window_start)
    return PlannedOrder(
        shipments=[
            PlannedShipment(s.candidate.store_id, s.candidate.code, s.candidate.distance_km, s.lines,
                            time_zone=s.candidate.time_zone)
            for s in routed.shipments
        ],
        promised_by=routed.window_end,
        option_id=routed.option_id,
        decision=decision_from_option(option),
    )


def decision_from_option(option: dict) -> dict:
    routing = option.get("routing", {})
    return {
        "plan_status": routing.get("plan", {}).get("status", ""),
        "problem": routing.get("problem", {}),
        "plan": routing.get("plan", {}),
        "candidates": routing.get("candidates", []),
        "reason": routing.get("reason", ""),
        "solve_ms": routing.get("solve_ms", 0),
    }


def check_planned(planned: PlannedOrder) -> None:
    """A plan is checked against the stock and capacity of its own problem before it is applied."""
    problem, plan = planned.decision.get("problem"), planned.decision.get("plan")
    if problem and plan:
        violations = check_plan(problem, plan)
        if violations:
            raise InvalidPlan(details={"violations": violations[:20]})


def new_pickup_code(fulfillment: Fulfillment, order_number: str) -> PickupCode:
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


def create_fulfillments(
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
            new_pickup_code(f, order.number)
        created.append(f)
    return created


def record_decision(
    *, order: Order, kind: str, decision: dict, now: datetime, cause: str = "", applied: bool = True
) -> RoutingDecision:
    """Store a routing decision. `cause`: the store event behind it (its ledger reference), if any; `applied`:
    False for a decision that moved nothing (nothing to re-route to, a change offered to the customer)."""
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
        applied=applied,
        cause=cause[:120],
        created_at=now,
    )


def decision_row(*, kind: str, decision: dict, now: datetime) -> RoutingDecision:
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


# --- the price of a plan ----------------------------------------------------------------------------------------------


def pricing_reference(order_number: str) -> str:
    """What an order's codes, budgets and promotion results are recorded under (orders.pricing.services)."""
    return f"order:{order_number}"


def current_policy(cart: Cart) -> engine.Policy:
    """The price policy in force (the process's cached copy: one version read), read again when it does not know the
    cart's products at their prices: a product added or repriced since this process cached the policy."""
    policy = pricing_selectors.active_policy()
    base = policy.base_prices
    if any(base.get(p.sku) != p.price_vnd for p in cart.products.values()):
        pricing_selectors.forget_cached_policy()
        policy = pricing_selectors.active_policy()
    return policy


def farthest_km(method: str, distances: list[float | None]) -> float | None:
    """The distance a delivery's fee is priced on: its farthest shipment's. None for pickup (no delivery, no fee)."""
    if method == Method.PICKUP:
        return None
    return max((d or 0.0 for d in distances), default=0.0)


def selling_store(planned: PlannedOrder, *, pickup_store: Store | None, policy: engine.Policy) -> Store:
    """The store whose prices and promotions an order gets: the pickup store, or its first shipment's store. Its
    city (a delivery fee's zone) is read only when some fee rule is zoned by city and the plan does not carry it."""
    if pickup_store is not None:
        return pickup_store
    first = planned.shipments[0]
    time_zone, city = first.time_zone, first.city
    if time_zone is None or (city is None and any(rule.city for rule in policy.fee_rules)):
        time_zone, city = fast_paths.store_place(first.store_id)
    return Store(pk=first.store_id, code=first.code, timezone=time_zone, city=city or "")


def price_plan(
    *, channel: str, lines: dict[str, int], store: Store, farthest: float | None, member_phone: str | None,
    codes: list[str], at: datetime, policy: engine.Policy, strict_codes: bool = True,
) -> engine.PricedCart:
    """The cart priced at its selling store, with the delivery fee of its farthest shipment (none for pickup) in the
    store's city. Raises the 422s of orders.pricing.services.price (unknown SKU, codes)."""
    delivery = None if farthest is None else engine.Delivery(distance_km=farthest, city=store.city or "")
    return pricing.price(
        channel=channel, lines=lines, store=store, member_phone=member_phone, codes=codes, at=at, delivery=delivery,
        policy=policy, strict_codes=strict_codes,
    )
