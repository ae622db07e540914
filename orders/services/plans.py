"""A routed order's plan and how it is applied: fulfillments with their lines, reservations and pickup codes, and the
routing decision that explains it. Placement, re-routes and waves all apply plans through here."""

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction

from inventory import services as stock
from orders import promises
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
            PlannedShipment(s.candidate.store_id, s.candidate.code, s.candidate.distance_km, s.lines)
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
