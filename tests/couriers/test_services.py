"""Dispatch, the shared event path (ordering, fulfilment and stock), the local courier, the SLA watch."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import MovementReason, Stock, StockMovement
from inventory.selectors import reservation_differences, stock_ledger_differences
from o2o import outbox
from o2o.models import OutboxEvent
from orders import services as order_services
from orders.couriers import services
from orders.couriers.exceptions import NotDispatchable
from orders.couriers.models import CourierEvent, Delivery
from orders.models import Fulfillment, Order, OrderStatus
from tests.couriers.conftest import packed_order
from tests.platform.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db


def event(d, status, suffix="", **extra):
    return {"event_id": f"{d.external_id}:{status.lower()}{suffix}", "order_id": d.external_id, "status": status, **extra}


def apply(d, status, **extra):
    return services.apply_courier_event(provider="local", payload=event(d, status, **extra))


def audit_clean():
    assert stock_ledger_differences() == []
    assert reservation_differences() == []


def shirts(chain):
    return Stock.objects.get(store=chain["near"], product=chain["shirt"])


def topics(order):
    return list(OutboxEvent.objects.filter(aggregate=order.aggregate).order_by("id").values_list("topic", flat=True))


def test_dispatch_only_packed_delivery_fulfillments_once(channel, chain):
    f = packed_order(channel)
    d = services.dispatch_fulfillment(fulfillment=f, provider="local")
    assert (d.status, d.external_id, d.attempt) == ("requested", f"LOC-{d.pk}", 1)
    with pytest.raises(NotDispatchable):
        services.dispatch_fulfillment(fulfillment=f, provider="local")
    order = order_services.place_order(
        channel=channel, lines={"TUI-VAI": 1}, customer_name="A", customer_phone="0901234567", method="pickup",
        actor="test", pickup_store_code="HCM-Q3-001",
    )
    with pytest.raises(NotDispatchable):
        services.dispatch_fulfillment(fulfillment=order.fulfillments.get(), provider="local")


def test_the_periodic_dispatch_picks_packed_undispatched_fulfillments(channel, chain):
    f = packed_order(channel)
    assert services.dispatch_packed_deliveries() == 1
    assert services.dispatch_packed_deliveries() == 0  # it has an active courier now
    assert Delivery.objects.get().fulfillment_id == f.pk


def test_full_delivery_moves_the_fulfillment_and_tells_the_website(channel, chain):
    f = packed_order(channel)
    d = services.dispatch_fulfillment(fulfillment=f, provider="local")
    apply(d, "ASSIGNED", courier={"name": "Trần Thị Hoa", "phone": "+84901000102", "plate": "59-F2 678.90"})
    assert Fulfillment.objects.get(pk=f.pk).status == "packed"
    apply(d, "PICKED_UP")
    f.refresh_from_db()
    assert (f.status, f.courier_tracking) == ("handed_to_courier", d.external_id)
    assert shirts(chain).on_hand == 2  # committed: the shirt left the store
    apply(d, "DELIVERED", proof={"photo_url": "https://pod.example.vn/1.jpg", "recipient_name": "Nguyễn Văn A"})
    d.refresh_from_db()
    assert (d.status, d.recipient_name, d.proof_photo_url) == ("delivered", "Nguyễn Văn A", "https://pod.example.vn/1.jpg")
    assert Order.objects.get(pk=f.order_id).status == OrderStatus.COMPLETED
    assert topics(f.order)[-5:] == [
        "delivery.assigned", "fulfillment.out_for_delivery", "delivery.picked_up", "fulfillment.delivered",
        "delivery.delivered",
    ]
    audit_clean()


def test_out_of_order_events_never_move_backwards(channel, chain):
    f = packed_order(channel)
    d = services.dispatch_fulfillment(fulfillment=f, provider="local")
    # delivered arrives first: the goods did leave, so the fulfillment passes through handed_to_courier
    assert apply(d, "DELIVERED").applied
    f.refresh_from_db()
    assert f.status == "delivered"
    late_pickup = apply(d, "PICKED_UP")
    late_assign = apply(d, "ASSIGNED", courier={"name": "Late"})
    failed = apply(d, "FAILED", reason="?")
    assert not (late_pickup.applied or late_assign.applied or failed.applied)
    assert late_pickup.note == "out of order: delivered already"
    d.refresh_from_db()
    assert (d.status, d.courier_name) == ("delivered", "")
    assert Fulfillment.objects.get(pk=f.pk).status == "delivered"
    assert CourierEvent.objects.filter(delivery=d).count() == 4
    assert CourierEvent.objects.filter(delivery=d, applied=True).count() == 1
    assert shirts(chain).on_hand == 2
    audit_clean()


def test_a_late_assignment_after_pickup_is_recorded_not_applied(channel, chain):
    d = services.dispatch_fulfillment(fulfillment=packed_order(channel), provider="local")
    apply(d, "PICKED_UP")
    outcome = apply(d, "ASSIGNED")
    assert not outcome.applied and outcome.note == "out of order: picked_up already"
    assert Delivery.objects.get(pk=d.pk).status == "picked_up"


def test_failed_delivery_comes_back_to_the_store_and_on_sale(channel, chain):
    f = packed_order(channel)
    d = services.dispatch_fulfillment(fulfillment=f, provider="local")
    apply(d, "ASSIGNED")
    apply(d, "PICKED_UP")
    assert shirts(chain).on_hand == 2
    apply(d, "FAILED", reason="Không liên lạc được người nhận")
    f.refresh_from_db()
    assert f.status == "delivery_failed"
    assert shirts(chain).on_hand == 2  # still with the courier
    assert Order.objects.get(pk=f.order_id).status == OrderStatus.FAILED
    apply(d, "RETURNED")
    f.refresh_from_db()
    d.refresh_from_db()
    assert (f.status, d.status, d.failure_reason) == ("returned_to_store", "returned", "Không liên lạc được người nhận")
    stock = shirts(chain)
    assert (stock.on_hand, stock.reserved) == (3, 0)  # back on sale at the store
    assert StockMovement.objects.filter(reason=MovementReason.DELIVERY_RETURNED, reference=f.reference).count() == 1
    assert topics(f.order)[-4:] == [
        "fulfillment.delivery_failed", "delivery.failed", "fulfillment.returned_to_store", "delivery.returned",
    ]
    failed = OutboxEvent.objects.get(topic="delivery.failed")
    assert failed.payload["failure_reason"] == "Không liên lạc được người nhận"  # the customer is told why
    audit_clean()


def test_staff_confirm_the_return_when_the_provider_does_not(channel, chain):
    f = packed_order(channel)
    d = services.dispatch_fulfillment(fulfillment=f, provider="local")
    apply(d, "PICKED_UP")
    apply(d, "FAILED", reason="wrong address")
    outcome = services.confirm_returned(delivery=d, actor="staff:lan")
    assert outcome.applied
    assert Fulfillment.objects.get(pk=f.pk).status == "returned_to_store"
    assert services.confirm_returned(delivery=d, actor="staff:lan").duplicate  # twice: a replay
    assert shirts(chain).on_hand == 3
    audit_clean()


def test_failure_before_pickup_keeps_the_goods_in_store_for_another_courier(channel, chain):
    f = packed_order(channel)
    d = services.dispatch_fulfillment(fulfillment=f, provider="local")
    outcome = apply(d, "FAILED", reason="no driver")
    assert outcome.applied and "never left" in outcome.note
    assert Fulfillment.objects.get(pk=f.pk).status == "packed"
    assert services.dispatch_packed_deliveries() == 1
    assert Delivery.objects.filter(fulfillment=f).order_by("pk").last().attempt == 2
    audit_clean()


def test_cancelled_after_pickup_counts_as_failed(channel, chain):
    f = packed_order(channel)
    d = services.dispatch_fulfillment(fulfillment=f, provider="local")
    apply(d, "PICKED_UP")
    outcome = apply(d, "CANCELLED")
    assert outcome.applied and Delivery.objects.get(pk=d.pk).status == "failed"
    assert Fulfillment.objects.get(pk=f.pk).status == "delivery_failed"


def test_local_courier_end_to_end_to_delivered_with_events_out(channel, chain, settings):
    settings.O2O_LOCAL_COURIER_STEP_SECONDS = 20
    f = packed_order(channel)
    assert services.dispatch_packed_deliveries() == 1
    now = timezone.now()
    assert services.advance_local_deliveries(now=now) == 0  # not yet: a step is 20 s
    statuses = []
    for i in range(1, 6):
        services.advance_local_deliveries(now=now + timedelta(seconds=30 * i))
        statuses.append(Delivery.objects.get().status)
    assert statuses == ["assigned", "picked_up", "delivered", "delivered", "delivered"]
    d = Delivery.objects.get()
    assert d.courier_name and d.vehicle_plate and d.recipient_name == "Nguyễn Văn A"
    assert Fulfillment.objects.get(pk=f.pk).status == "delivered"
    assert list(CourierEvent.objects.order_by("pk").values_list("provider_status", flat=True)) == [
        "ASSIGNED", "PICKED_UP", "DELIVERED"]
    with Receiver(secret="site-secret") as site:
        channel.webhook_url, channel.webhook_secret = site.url, "site-secret"
        channel.save(update_fields=["webhook_url", "webhook_secret"])
        outbox.deliver_due_events()
    received = [e["topic"] for e in site.received if e["aggregate"] == f.order.aggregate]
    assert received[-5:] == ["delivery.assigned", "fulfillment.out_for_delivery", "delivery.picked_up",
                             "fulfillment.delivered", "delivery.delivered"]
    assert site.bad_signatures == 0
    audit_clean()


def test_local_courier_failure_rule_and_return(channel, chain):
    f = packed_order(channel, address="99 FAIL street, Quận 1")
    services.dispatch_packed_deliveries()
    now = timezone.now()
    for i in range(1, 6):
        services.advance_local_deliveries(now=now + timedelta(minutes=i), step_seconds=30)
    f.refresh_from_db()
    assert (f.status, Delivery.objects.get().status) == ("returned_to_store", "returned")
    assert shirts(chain).on_hand == 3
    audit_clean()


def test_a_crash_after_the_commit_loses_no_event(channel, chain, settings):
    """The change and its events commit together; nothing is sent until a delivery round runs (as if the process
    died right after the commit, before any kick): the rows are there and go out."""
    settings.O2O_OUTBOX_KICK = False
    d = services.dispatch_fulfillment(fulfillment=packed_order(channel), provider="local")
    apply(d, "PICKED_UP")
    pending = set(OutboxEvent.objects.filter(status="pending", topic__in=["delivery.picked_up",
                                                                           "fulfillment.out_for_delivery"])
                  .values_list("event_id", flat=True))
    pending = {str(e) for e in pending}
    assert len(pending) == 2
    with Receiver(secret="site-secret") as site:
        channel.webhook_url, channel.webhook_secret = site.url, "site-secret"
        channel.save(update_fields=["webhook_url", "webhook_secret"])
        outbox.deliver_due_events()
    assert pending <= {e["id"] for e in site.received}


def test_sla_watch_redispatches_then_escalates(channel, chain):
    f = packed_order(channel, address="NOSHOW alley, Quận 1")  # the local courier never finds a driver
    first = services.dispatch_fulfillment(fulfillment=f, provider="local")
    now = timezone.now()
    assert services.watch_deliveries(now=now + timedelta(minutes=5)).at_risk == []
    services.advance_local_deliveries(now=now + timedelta(minutes=5))
    result = services.watch_deliveries(now=now + timedelta(minutes=11))
    first.refresh_from_db()
    assert result.at_risk == [first.pk] and len(result.redispatched) == 1
    assert (first.status, first.sla_state) == ("cancelled", "at_risk")
    second = Delivery.objects.get(pk=result.redispatched[0])
    assert (second.status, second.attempt, second.sla_state) == ("requested", 2, "ok")
    Delivery.objects.filter(pk=second.pk).update(requested_at=now - timedelta(minutes=1))
    result = services.watch_deliveries(now=now + timedelta(minutes=11))
    second.refresh_from_db()
    assert result.escalated == [second.pk] and second.sla_state == "escalated" and second.status == "requested"
    assert services.watch_deliveries(now=now + timedelta(minutes=30)).escalated == []  # flagged once
    assert topics(f.order)[-2:] == ["delivery.at_risk", "delivery.escalated"]


def test_sla_watch_flags_a_courier_who_does_not_pick_up(channel, chain, settings):
    settings.O2O_COURIER_MAX_REDISPATCH = 0
    d = services.dispatch_fulfillment(fulfillment=packed_order(channel), provider="local")
    apply(d, "ASSIGNED")
    result = services.watch_deliveries(now=timezone.now() + timedelta(minutes=21))
    assert result.escalated == [d.pk]
    assert "not picked up" in Delivery.objects.get(pk=d.pk).sla_note


def test_sla_watch_flags_late_parcels_on_the_road(channel, chain):
    f = packed_order(channel)
    d = services.dispatch_fulfillment(fulfillment=f, provider="local")
    apply(d, "PICKED_UP")
    result = services.watch_deliveries(now=f.promised_by + timedelta(minutes=1))
    assert result.at_risk == [d.pk]
    assert Delivery.objects.get(pk=d.pk).sla_state == "at_risk"


def test_a_cancelled_fulfillment_is_not_redispatched(channel, chain):
    f = packed_order(channel, address="NOSHOW")
    d = services.dispatch_fulfillment(fulfillment=f, provider="local")
    order_services.cancel_order(order=f.order, actor="test")
    result = services.watch_deliveries(now=timezone.now() + timedelta(minutes=11))
    assert result.redispatched == []
    assert Delivery.objects.get(pk=d.pk).status == "cancelled"
    assert Delivery.objects.filter(fulfillment=f).count() == 1
