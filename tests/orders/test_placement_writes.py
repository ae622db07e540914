"""Placement's fast write path: the answer built from memory equals the order read back, the order number comes
from the same statement, the retry after a lost reservation leaves nothing behind, and the outbox kick is
throttled per process."""

import json

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from inventory import services as stock
from inventory.exceptions import InsufficientStock
from inventory.models import Reservation, StockMovement
from inventory.selectors import reservation_differences, stock_ledger_differences
from o2o import outbox
from o2o.models import OutboxEvent
from orders import selectors, services
from orders.api import serializers as io
from orders.models import Fulfillment, FulfillmentLine, Order, OrderLine, RoutingDecision
from tests.orders.conftest import BEN_THANH, CUSTOMER

pytestmark = pytest.mark.django_db


def _place(api, body, key):
    return api.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.parametrize(
    "body",
    [
        {"lines": [{"sku": "AO-THUN-M", "qty": 2}], "method": "delivery", "destination": BEN_THANH},
        {"lines": [{"sku": "AO-THUN-M", "qty": 1}, {"sku": "TUI-VAI", "qty": 4}, {"sku": "NON-LA", "qty": 2}],
         "method": "delivery", "destination": BEN_THANH},
        {"lines": [{"sku": "NON-LA", "qty": 1}], "method": "pickup", "pickup_store": "HCM-Q3-001"},
    ],
    ids=["delivery", "split", "pickup"],
)
def test_answer_equals_the_order_read_back(api, chain, channel, body):
    r = _place(api, {**body, "customer": CUSTOMER}, key="same-1")
    assert r.status_code == 201, r.content
    placed = r.json()
    order = selectors.order_for_channel(channel=channel, number=placed["number"], with_decisions=False)
    assert placed == json.loads(json.dumps(io.OrderOutput(order).data, cls=DjangoJSONEncoder))
    assert order.number == f"WEB-{order.pk:06d}"
    replay = _place(api, {**body, "customer": CUSTOMER}, key="same-1")
    assert replay.status_code == 201 and replay.json() == placed
    if len(body["lines"]) == 3:
        assert len(placed["fulfillments"]) >= 2


def test_lost_reservation_is_routed_again_without_leftovers(channel, chain, monkeypatch):
    real = stock.reserve_stock
    calls = []

    def first_loses(**kwargs):
        calls.append(kwargs["reference"])
        if len(calls) == 1:
            raise InsufficientStock([], "taken by another order")
        return real(**kwargs)

    monkeypatch.setattr(stock, "reserve_stock", first_loses)
    with transaction.atomic():  # as the API's idempotency record does: no savepoint around the first attempt
        order = services.place_order(
            channel=channel, lines={"AO-THUN-M": 1}, customer_name="A", customer_phone=CUSTOMER["phone"],
            method="delivery", lat=BEN_THANH["lat"], lon=BEN_THANH["lon"], actor="test",
        )
    assert len(calls) == 2
    assert list(Order.objects.values_list("pk", flat=True)) == [order.pk]
    assert Fulfillment.objects.count() == 1 and FulfillmentLine.objects.count() == 1
    assert OrderLine.objects.count() == 1 and RoutingDecision.objects.count() == 1
    assert OutboxEvent.objects.filter(aggregate=order.aggregate).count() == 2
    assert list(Reservation.objects.values_list("reference", flat=True)) == [f"fulfillment:{order.fulfillments.get().pk}"]
    assert not stock_ledger_differences() and not reservation_differences()


def test_refused_placement_inside_a_caller_transaction_leaves_nothing(channel, chain, monkeypatch):
    def always_short(**kwargs):
        raise InsufficientStock([], "taken by another order")

    monkeypatch.setattr(stock, "reserve_stock", always_short)
    with transaction.atomic():
        with pytest.raises(InsufficientStock):
            services.place_order(
                channel=channel, lines={"AO-THUN-M": 1}, customer_name="A", customer_phone=CUSTOMER["phone"],
                method="delivery", lat=BEN_THANH["lat"], lon=BEN_THANH["lon"], actor="test",
            )
        # the caller carries on and commits: nothing of the refused order may remain
    assert not Order.objects.exists() and not Fulfillment.objects.exists() and not FulfillmentLine.objects.exists()
    assert not OrderLine.objects.exists() and not RoutingDecision.objects.exists() and not OutboxEvent.objects.exists()
    assert not StockMovement.objects.filter(reason="reserve").exists()


def test_outbox_kick_is_throttled_per_process(settings, monkeypatch):
    from o2o import tasks

    settings.O2O_OUTBOX_KICK = True
    settings.O2O_OUTBOX_KICK_INTERVAL_SECONDS = 1.0
    sent = []
    monkeypatch.setattr(tasks.deliver_outbox, "apply_async", lambda **kw: sent.append(kw))
    clock = iter([1000.0, 1000.5, 1001.2, 1001.3])
    monkeypatch.setattr(outbox.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(outbox, "_last_kick", 0.0)
    for _ in range(4):
        outbox.kick_delivery()
    assert len(sent) == 2  # at 1000.0 and 1001.2
    settings.O2O_OUTBOX_KICK_INTERVAL_SECONDS = 0
    monkeypatch.setattr(outbox.time, "monotonic", lambda: 1001.4)
    outbox.kick_delivery()
    assert len(sent) == 3
