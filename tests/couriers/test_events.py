"""Every customer-visible change and its outbox event commit together, or neither does; and a process that dies
right after the commit loses no event.

Atomicity is shown against the real database: a trigger makes PostgreSQL refuse every outbox insert ("the outbox
table is unavailable"); each change must then fail as a whole, leaving the order, its fulfillments, the deliveries
and the stock exactly as they were. Without the trigger the same change writes its event. ('return received' and
'points changed' are covered by the returns and loyalty tests.)
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import DatabaseError, connection

from inventory.models import Stock
from o2o import outbox
from o2o.models import OutboxEvent
from orders import services as order_services
from orders.couriers import services
from orders.couriers.models import CourierEvent, Delivery
from orders.models import Fulfillment, Order
from tests.couriers.conftest import packed_order
from tests.orders.conftest import BEN_THANH, CUSTOMER
from tests.platform.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]


def refuse_outbox_inserts() -> None:
    table = OutboxEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE OR REPLACE FUNCTION o2o_test_outbox_down() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'the outbox table is unavailable'; END $$"
        )
        cursor.execute(f"CREATE TRIGGER o2o_test_outbox_down BEFORE INSERT ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION o2o_test_outbox_down()")


def allow_outbox_inserts() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS o2o_test_outbox_down ON {OutboxEvent._meta.db_table}")
        cursor.execute("DROP FUNCTION IF EXISTS o2o_test_outbox_down()")


def snapshot() -> tuple:
    """Everything a change could touch."""
    return (
        sorted(Order.objects.values_list("pk", "status")),
        sorted(Fulfillment.objects.values_list("pk", "status")),
        sorted(Delivery.objects.values_list("pk", "status", "courier_name")),
        sorted(Stock.objects.values_list("pk", "on_hand", "reserved")),
        CourierEvent.objects.count(),
        OutboxEvent.objects.count(),
    )


def courier(d, status, **extra):
    return lambda: services.apply_courier_event(
        provider="local", payload={"event_id": f"{d.external_id}:{status}", "order_id": d.external_id, "status": status,
                                   **extra})


def _place(channel, method="delivery", **where):
    return order_services.place_order(
        channel=channel, lines={"AO-THUN-M": 1}, customer_name=CUSTOMER["name"], customer_phone=CUSTOMER["phone"],
        method=method, actor="test", **where,
    )


def _picked_up(channel):
    d = services.dispatch_fulfillment(fulfillment=packed_order(channel), provider="local")
    courier(d, "PICKED_UP")()
    return d


def _failed(channel):
    d = _picked_up(channel)
    courier(d, "FAILED", reason="nobody home")()
    return d


def _pickup_packed(channel):
    order = _place(channel, method="pickup", pickup_store_code="HCM-Q1-001")
    f = order.fulfillments.get()
    for step in ("picking", "packed"):
        order_services.transition_fulfillment(fulfillment=f.pk, to=step, actor="staff")
    return f


# (what the customer sees, the topics written, how to set it up, the change itself given the set-up)
CHANGES = {
    "order placed and routed": (["order.placed", "order.routed"], lambda ch: None,
                                lambda ch, _: _place(ch, address="12 Lê Lợi", **BEN_THANH)),
    "ready for pickup": (["fulfillment.ready_for_pickup"], _pickup_packed,
                         lambda ch, f: order_services.transition_fulfillment(fulfillment=f.pk, to="ready_for_pickup",
                                                                             actor="staff")),
    "courier assigned": (["delivery.assigned"],
                         lambda ch: services.dispatch_fulfillment(fulfillment=packed_order(ch), provider="local"),
                         lambda ch, d: courier(d, "ASSIGNED", courier={"name": "Bình", "plate": "59-X1"})()),
    "out for delivery": (["fulfillment.out_for_delivery", "delivery.picked_up"],
                         lambda ch: services.dispatch_fulfillment(fulfillment=packed_order(ch), provider="local"),
                         lambda ch, d: courier(d, "PICKED_UP")()),
    "delivered": (["fulfillment.delivered", "delivery.delivered"], _picked_up,
                  lambda ch, d: courier(d, "DELIVERED", proof={"recipient_name": "A"})()),
    "delivery failed": (["fulfillment.delivery_failed", "delivery.failed"], _picked_up,
                        lambda ch, d: courier(d, "FAILED", reason="nobody home")()),
    "returned to the store": (["fulfillment.returned_to_store", "delivery.returned"], _failed,
                              lambda ch, d: courier(d, "RETURNED")()),
    "cancelled": (["order.cancelled"], lambda ch: _place(ch, address="12 Lê Lợi", **BEN_THANH),
                  lambda ch, order: order_services.cancel_order(order=order, actor="test")),
}


@pytest.mark.django_db(transaction=True)  # each change runs in its own real transaction, as in a request or a task
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_and_its_events_commit_together_or_not_at_all(channel, chain, change):
    topics, set_up, act = CHANGES[change]
    subject = set_up(channel)
    before = snapshot()
    refuse_outbox_inserts()
    try:
        with pytest.raises(DatabaseError, match="the outbox table is unavailable"):
            act(channel, subject)
    finally:
        allow_outbox_inserts()
    assert snapshot() == before  # the change did not happen either
    last = OutboxEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    act(channel, subject)
    assert snapshot() != before
    written = list(OutboxEvent.objects.filter(pk__gt=last).order_by("pk").values_list("topic", flat=True))
    assert written == topics


CRASHING_PROCESS = """
import os, signal, django
django.setup()
from o2o import outbox
from orders.couriers import services
# Die the moment the transaction has committed, where the process would queue the delivery: no kick, no send.
outbox.kick_delivery = lambda: os.kill(os.getpid(), signal.SIGKILL)
services.apply_courier_event(provider="local", payload={"event_id": "crash-1", "order_id": os.environ["EXTERNAL_ID"],
                                                         "status": "PICKED_UP"})
raise SystemExit("not reached: the kill comes with the commit")
"""


@pytest.mark.django_db(transaction=True)
def test_a_process_killed_right_after_the_commit_loses_no_event(channel, chain, settings):
    d = services.dispatch_fulfillment(fulfillment=packed_order(channel), provider="local")
    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "o2o.settings", "O2O_OUTBOX_KICK": "1",
           "O2O_OUTBOX_KICK_INTERVAL_SECONDS": "0", "EXTERNAL_ID": d.external_id,
           "O2O_COURIER_SECRETS": '{"local": ["x"]}',
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"}
    crashed = subprocess.run([sys.executable, "-c", CRASHING_PROCESS], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=180)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    # The business change is committed, and so are its events, undelivered.
    assert Fulfillment.objects.get(pk=d.fulfillment_id).status == "handed_to_courier"
    waiting = {str(e) for e in OutboxEvent.objects.filter(
        status="pending", topic__in=["fulfillment.out_for_delivery", "delivery.picked_up"]).values_list("event_id",
                                                                                                        flat=True)}
    assert len(waiting) == 2
    with Receiver(secret="site-secret") as site:
        channel.webhook_url, channel.webhook_secret = site.url, "site-secret"
        channel.save(update_fields=["webhook_url", "webhook_secret"])
        outbox.deliver_due_events()
    assert waiting <= {e["id"] for e in site.received}
    assert not OutboxEvent.objects.filter(status="pending").exists()
