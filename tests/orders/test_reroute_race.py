"""A store event's re-route that loses the race for the other store's last units plans again from fresh reads, and
ends in a decision either way: re-routed to a store that still has the units, or the units unfulfilled. Never an
error that leaves the taken reservation unsettled (found by tests/proof/test_shop_floor_race.py: two tills at A both
took orders whose re-routes chose B's last unit; the second reservation at B was refused and the reconciliation
rolled back, leaving the order's fulfilment at A assigned with nothing reserved)."""

import pytest
from rest_framework.test import APIClient

from inventory import services as stock
from inventory.models import Reservation, TakenReservation
from inventory.selectors import reservation_differences, stock_ledger_differences
from orders import promises
from orders.models import Fulfillment, FulfillmentStatus, OrderLine, RoutingDecision
from orders.pos.models import StoreApiKey
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory
from tests.pos.conftest import receipt

pytestmark = pytest.mark.django_db
DESTINATION = {"lat": 10.7738, "lon": 106.7030}  # next to A


def _order_at_a(api) -> str:
    r = api.post("/api/v1/orders/", {"lines": [{"sku": "X", "qty": 1}], "customer": {"name": "K", "phone": "0901234567"},
                 "method": "delivery", "destination": DESTINATION, "payment_state": "paid"},
                 format="json", HTTP_IDEMPOTENCY_KEY="race-1")
    assert r.status_code == 201 and r.json()["fulfillments"][0]["store"]["code"] == "A", r.content
    return r.json()["number"]


def _sell_the_unit_at(store) -> None:
    _, key = StoreApiKey.objects.create_key(name="till", store=store)
    till = APIClient()
    till.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    res = till.post("/api/v1/pos/sales/", {"receipts": [receipt([("X", 1)], rid="R-1")]}, format="json")
    assert res.status_code == 200 and res.json()["results"][0]["status"] == "applied", res.content


def _faster_writer_takes(monkeypatch, store, product) -> list[int]:
    """Another request reserves `store`'s unit right after the re-route's first plan read the stock (once, in its
    own right: outside the re-route's savepoint). Returns the store each plan chose first."""
    planned = []
    real = promises.fastest_delivery

    def racing(**kwargs):
        served = real(**kwargs)
        planned.append(served[0].shipments[0].candidate.store_id if served else None)
        if len(planned) == 1:
            stock.reserve_stock(lines=[stock.StockLine(store.pk, product.pk, 1)], reference="hold:faster", actor="race")
        return served

    monkeypatch.setattr(promises, "fastest_delivery", racing)
    return planned


def test_a_lost_race_with_no_other_store_ends_unfulfilled_and_settled(api, monkeypatch):
    a = StoreFactory(code="A", lat=10.7743, lon=106.7038)
    b = StoreFactory(code="B", lat=10.7800, lon=106.7080)
    p = ProductFactory(sku="X")
    put_stock(a, p, 1)
    put_stock(b, p, 1)
    _order_at_a(api)
    calls = _faster_writer_takes(monkeypatch, b, p)
    _sell_the_unit_at(a)
    assert calls == [b.pk, None]  # planned B; B was gone when it reserved; the second plan found nothing anywhere
    (taken,) = TakenReservation.objects.all()
    assert taken.reconciled_at is not None and "unfulfilled" in taken.outcome
    source = Fulfillment.objects.get(store=a)
    assert source.status == FulfillmentStatus.CANCELLED
    assert not Reservation.objects.filter(reference=source.reference).exists()
    assert OrderLine.objects.get().unfulfilled_qty == 1
    decision = RoutingDecision.objects.get(kind="store_event")
    assert (decision.applied, decision.plan_status, decision.cause) == (False, "unserved", "pos:A:R-1")
    assert not stock_ledger_differences() and not reservation_differences()


def test_a_lost_race_plans_again_and_takes_the_next_store(api, monkeypatch):
    a = StoreFactory(code="A", lat=10.7743, lon=106.7038)
    b = StoreFactory(code="B", lat=10.7800, lon=106.7080)
    c = StoreFactory(code="C", lat=10.7850, lon=106.7120)
    p = ProductFactory(sku="X")
    for store in (a, b, c):
        put_stock(store, p, 1)
    _order_at_a(api)
    calls = _faster_writer_takes(monkeypatch, b, p)
    _sell_the_unit_at(a)
    assert calls == [b.pk, c.pk]  # B lost to the faster writer, then C
    (taken,) = TakenReservation.objects.all()
    assert taken.reconciled_at is not None and taken.outcome.startswith("Re-routed 1 × X to C")
    moved = Fulfillment.objects.exclude(store=a).get()
    assert moved.store_id == c.pk and moved.status == FulfillmentStatus.ASSIGNED
    assert Reservation.objects.get(reference=moved.reference).quantity == 1
    assert Fulfillment.objects.filter(store=b).count() == 0  # the refused attempt left no fulfilment behind
    assert RoutingDecision.objects.get(kind="store_event").cause == "pos:A:R-1"
    assert not stock_ledger_differences() and not reservation_differences()
