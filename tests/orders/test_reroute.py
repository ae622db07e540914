"""Re-routing an order by hand (orders.services.reroute_order): before picking only, with a reason, through the
ledgers, one re-route per idempotency key, and never racing with the start of picking."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from inventory.models import Reservation, Stock
from o2o.domain_errors import DomainError, IdempotencyKeyReused
from o2o.models import OutboxEvent
from orders import services
from orders.exceptions import (
    InvalidTransition,
    OrderNotReroutable,
    PickupNotReroutable,
    RerouteReasonRequired,
    RerouteUnserved,
)
from orders.models import Fulfillment, Order, PickupCode, RoutingDecision, RoutingKind
from orders.services.waves import wave_orders
from tests.concurrency import run_concurrently
from tests.conftest import put_stock
from tests.orders.conftest import BEN_THANH, CUSTOMER

pytestmark = pytest.mark.django_db


def place(channel, lines, **kwargs):
    args = {
        "customer_name": CUSTOMER["name"],
        "customer_phone": CUSTOMER["phone"],
        "method": "delivery",
        "actor": "test",
        **BEN_THANH,
    }
    args.update(kwargs)
    if args["method"] == "pickup":
        args.pop("lat")
        args.pop("lon")
    return services.place_order(channel=channel, lines=lines, **args)


def _reserved(store, product) -> int:
    return Stock.objects.get(store=store, product=product).reserved


def _audit():
    call_command("inventory_audit", stdout=StringIO())  # raises when a quantity differs from the ledger


def _snapshot(order) -> tuple:
    return (
        sorted(Fulfillment.objects.filter(order=order).values_list("pk", "store_id", "status", "round")),
        sorted(Reservation.objects.values_list("store_id", "product_id", "quantity", "reference")),
        RoutingDecision.objects.filter(order=order).count(),
        OutboxEvent.objects.filter(topic="order.rerouted").count(),
    )


def test_reroute_moves_the_reservation_and_records_why(channel, chain):
    order = place(channel, {"AO-THUN-M": 1})
    old = order.fulfillments.get()
    assert old.store == chain["near"]
    result = services.reroute_order(
        order=order, reason="Q1 store closed for a water leak", actor="staff:lan", avoid_current_stores=True
    )
    assert result.changed and not result.replayed
    assert result.from_stores == ["HCM-Q1-001"] and result.stores == ["HCM-Q3-001"]
    old.refresh_from_db()
    assert old.status == "cancelled"
    new = Fulfillment.objects.get(order=order, status="assigned")
    assert new.store == chain["mid"] and new.round == 2 and new.lines.get().qty == 1
    assert _reserved(chain["near"], chain["shirt"]) == 0
    assert _reserved(chain["mid"], chain["shirt"]) == 1
    assert not Reservation.objects.filter(reference=old.reference).exists()
    decision = RoutingDecision.objects.get(order=order, kind=RoutingKind.MANUAL)
    assert decision.pk == result.decision.pk
    assert "water leak" in decision.reason and "staff:lan" in decision.reason
    assert decision.plan["manual"]["actor"] == "staff:lan"
    assert decision.plan["manual"]["excluded_stores"] == ["HCM-Q1-001"]
    assert [c["store"] for c in decision.candidates if c["chosen"]] == ["HCM-Q3-001"]
    assert "HCM-Q1-001" not in [c["store"] for c in decision.candidates]
    event = OutboxEvent.objects.get(topic="order.rerouted")
    assert event.payload["reason"] == "Q1 store closed for a water leak"
    assert event.payload["actor"] == "staff:lan" and event.payload["kind"] == "manual"
    assert event.payload["from_stores"] == ["HCM-Q1-001"]
    assert [f["store"] for f in event.payload["fulfillments"]] == ["HCM-Q3-001"]
    assert Order.objects.get(pk=order.pk).status == "open"
    _audit()
    # the new store picks and ships it as usual
    for step in ("picking", "packed", "handed_to_courier", "delivered"):
        services.transition_fulfillment(fulfillment=new, to=step, actor="test")
    assert Order.objects.get(pk=order.pk).status == "completed"
    _audit()


def test_router_keeping_the_same_store_changes_nothing(channel, chain):
    order = place(channel, {"AO-THUN-M": 1})
    before = _snapshot(order)
    result = services.reroute_order(order=order.pk, reason="customer asked", actor="staff:lan")
    assert not result.changed and result.stores == ["HCM-Q1-001"] == result.from_stores
    assert _snapshot(order) == before
    _audit()


def test_refused_once_picking_started(channel, chain):
    order = place(channel, {"AO-THUN-M": 1})
    f = order.fulfillments.get()
    services.transition_fulfillment(fulfillment=f, to="picking", actor="test")
    before = _snapshot(order)
    with pytest.raises(OrderNotReroutable) as caught:
        services.reroute_order(order=order, reason="too late", actor="staff:lan", avoid_current_stores=True)
    assert caught.value.status == 409 and caught.value.code == "order_not_reroutable"
    assert caught.value.details["fulfillments"] == [{"id": f.pk, "store": "HCM-Q1-001", "status": "picking"}]
    assert _snapshot(order) == before


def test_refused_for_a_cancelled_order(channel, chain):
    order = place(channel, {"AO-THUN-M": 1})
    services.cancel_order(order=order, actor="test")
    with pytest.raises(OrderNotReroutable):
        services.reroute_order(order=order, reason="why not", actor="staff:lan")


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_reason_is_required(channel, chain, reason):
    order = place(channel, {"AO-THUN-M": 1})
    before = _snapshot(order)
    with pytest.raises(RerouteReasonRequired) as caught:
        services.reroute_order(order=order, reason=reason, actor="staff:lan", avoid_current_stores=True)
    assert caught.value.status == 400 and caught.value.code == "reroute_reason_required"
    assert _snapshot(order) == before


def test_refused_when_no_other_store_can_serve(channel, chain):
    # 3 shirts: near is the only store with 3 besides mid; with both avoided nothing is left
    order = place(channel, {"AO-THUN-M": 3})
    assert order.fulfillments.get().store == chain["near"]
    before = _snapshot(order)
    with pytest.raises(RerouteUnserved) as caught:
        services.reroute_order(
            order=order,
            reason="both Q1 and Q3 short of staff",
            actor="staff:lan",
            avoid_current_stores=True,
            exclude_store_ids={chain["mid"].pk},
        )
    assert caught.value.status == 409 and caught.value.code == "reroute_unserved"
    assert caught.value.details["excluded_stores"] == ["HCM-Q1-001", "HCM-Q3-001"]
    assert _snapshot(order) == before
    assert _reserved(chain["near"], chain["shirt"]) == 3
    _audit()


def test_pickup_orders_stay_at_their_store(channel, chain):
    order = place(channel, {"AO-THUN-M": 1}, method="pickup", pickup_store_code="HCM-Q1-001")
    before = _snapshot(order)
    with pytest.raises(PickupNotReroutable) as caught:
        services.reroute_order(order=order, reason="customer moved", actor="staff:lan", avoid_current_stores=True)
    assert caught.value.status == 409 and caught.value.code == "pickup_not_reroutable"
    assert _snapshot(order) == before
    assert PickupCode.objects.get(fulfillment__order=order).is_live


def test_split_order_is_released_everywhere_and_routed_again(channel, chain):
    """A split (near: shirt, far: bags) re-routed away from near: both parts are released and routed again."""
    order = place(channel, {"AO-THUN-M": 1, "TUI-VAI": 3})
    assert sorted(f.store.code for f in order.fulfillments.all()) == ["HCM-Q1-001", "HCM-Q7-001"]
    result = services.reroute_order(
        order=order, reason="Q1 till down", actor="staff:lan", exclude_store_ids={chain["near"].pk}
    )
    assert result.changed and result.from_stores == ["HCM-Q1-001", "HCM-Q7-001"]
    assert result.stores == ["HCM-Q3-001", "HCM-Q7-001"]
    live = Fulfillment.objects.filter(order=order).exclude(status="cancelled")
    assert sorted((f.store.code, f.round) for f in live) == [("HCM-Q3-001", 2), ("HCM-Q7-001", 2)]
    assert _reserved(chain["near"], chain["shirt"]) == 0
    assert _reserved(chain["mid"], chain["shirt"]) == 1
    assert _reserved(chain["mid"], chain["bag"]) + _reserved(chain["far"], chain["bag"]) == 3
    _audit()


def test_same_idempotency_key_reroutes_once(channel, chain):
    # near and mid both hold shirts: without the key, a second "avoid the current store" would move it back
    order = place(channel, {"AO-THUN-M": 1})
    first = services.reroute_order(
        order=order, reason="leak", actor="staff:lan", avoid_current_stores=True, idempotency_key="form-1"
    )
    again = services.reroute_order(
        order=order, reason="leak", actor="staff:lan", avoid_current_stores=True, idempotency_key="form-1"
    )
    assert again.replayed and again.decision.pk == first.decision.pk
    assert [f.pk for f in again.fulfillments] == [f.pk for f in first.fulfillments]
    assert RoutingDecision.objects.filter(order=order, kind=RoutingKind.MANUAL).count() == 1
    assert OutboxEvent.objects.filter(topic="order.rerouted").count() == 1
    # the same key with another request is refused, not replayed
    with pytest.raises(IdempotencyKeyReused):
        services.reroute_order(order=order, reason="other", actor="staff:lan", idempotency_key="form-1")
    # a new form (another key) is a new request: the order moves back to the nearest store
    other = services.reroute_order(
        order=order, reason="leak fixed", actor="staff:lan", avoid_current_stores=True, idempotency_key="form-2"
    )
    assert other.changed and other.stores == ["HCM-Q1-001"]
    _audit()


def test_within_store_ids_limits_where_it_may_go(channel, chain):
    order = place(channel, {"AO-THUN-M": 1})
    before = _snapshot(order)
    with pytest.raises(RerouteUnserved) as caught:
        services.reroute_order(
            order=order,
            reason="leak",
            actor="staff:lan",
            avoid_current_stores=True,
            within_store_ids={chain["near"].pk},
        )
    assert caught.value.details["within_scope"] is True
    assert _snapshot(order) == before
    result = services.reroute_order(
        order=order,
        reason="leak",
        actor="staff:lan",
        avoid_current_stores=True,
        within_store_ids={chain["near"].pk, chain["mid"].pk},
    )
    assert result.stores == ["HCM-Q3-001"] and result.decision.plan["manual"]["within_scope"] is True
    assert result.decision.plan["manual"]["excluded_stores"] == ["HCM-Q1-001"]  # the scope is not listed as avoided


def test_waves_leave_orders_rerouted_by_hand_alone(channel, chain):
    a = place(channel, {"AO-THUN-M": 1})
    b = place(channel, {"AO-THUN-M": 1})
    services.reroute_order(order=a, reason="leak", actor="staff:lan", avoid_current_stores=True)
    assert [o.pk for o in wave_orders(since=a.created_at)] == [b.pk]


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_reroute_races_start_of_picking(channel, chain):
    """Re-route and "start picking" on the same order at once, on two connections: exactly one wins, the other gets
    a 409, and the ledgers balance."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are a PostgreSQL promise")
    for store in (chain["near"], chain["mid"]):
        put_stock(store, chain["shirt"], 10)  # whichever wins each round, both stores keep shirts to move to
    outcomes = {"reroute": 0, "picking": 0}
    for _ in range(4):
        order = place(channel, {"AO-THUN-M": 1})
        f = order.fulfillments.get()

        def act(i: int, order=order, f=f):
            if i == 0:
                return services.reroute_order(order=order.pk, reason="race", actor="staff:a", avoid_current_stores=True)
            return services.transition_fulfillment(fulfillment=f.pk, to="picking", actor="staff:b")

        reroute, picking = run_concurrently(2, act)
        assert not isinstance(reroute, BaseException) or isinstance(reroute, OrderNotReroutable), repr(reroute)
        assert not isinstance(picking, BaseException) or isinstance(picking, InvalidTransition), repr(picking)
        failed = [r for r in (reroute, picking) if isinstance(r, DomainError)]
        assert len(failed) == 1 and failed[0].status == 409, (reroute, picking)
        live = list(Fulfillment.objects.filter(order=order).exclude(status="cancelled"))
        assert len(live) == 1
        if isinstance(picking, DomainError):
            outcomes["reroute"] += 1
            assert live[0].status == "assigned" and live[0].pk != f.pk
        else:
            outcomes["picking"] += 1
            assert live[0].pk == f.pk and live[0].status == "picking"
            assert not RoutingDecision.objects.filter(order=order, kind=RoutingKind.MANUAL).exists()
        # whoever won, what is reserved is exactly what the live fulfillment holds
        assert (
            list(
                Reservation.objects.filter(reference__startswith="fulfillment:").exclude(
                    reference__in=[f"fulfillment:{x.pk}" for x in Fulfillment.objects.exclude(status="cancelled")]
                )
            )
            == []
        )
        _audit()
    assert sum(outcomes.values()) == 4
