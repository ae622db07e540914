"""The courier desk in the admin: lists with the SLA filter, dispatch and re-dispatch actions."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from inventory.models import Stock
from inventory.selectors import stock_ledger_differences
from o2o.models import OutboxEvent
from orders.couriers import services
from orders.couriers.models import Delivery
from tests.couriers.conftest import packed_order

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.vn", "pw")
    client.force_login(user)
    return client


def test_lists_and_sla_filter(staff_client, channel, chain):
    f = packed_order(channel, address="NOSHOW")
    services.dispatch_fulfillment(fulfillment=f, provider="local")
    services.watch_deliveries(now=timezone.now() + timedelta(minutes=11))
    for url in ("/admin/orders/delivery/", "/admin/orders/delivery/?sla_state__exact=at_risk",
                "/admin/orders/courierevent/", "/admin/orders/fulfillmentawaitingcourier/"):
        assert staff_client.get(url).status_code == 200, url
    page = staff_client.get("/admin/orders/delivery/?sla_state__exact=at_risk").content.decode()
    assert "At risk" in page
    d = Delivery.objects.order_by("pk").first()
    assert staff_client.get(f"/admin/orders/delivery/{d.pk}/change/").status_code == 200


def test_dispatch_action(staff_client, channel, chain):
    f = packed_order(channel)
    response = staff_client.post("/admin/orders/fulfillmentawaitingcourier/",
                                 {"action": "dispatch_local", "_selected_action": [f.pk]})
    assert response.status_code == 302
    assert Delivery.objects.get().fulfillment_id == f.pk


def test_redispatch_action(staff_client, channel, chain):
    d = services.dispatch_fulfillment(fulfillment=packed_order(channel), provider="local")
    staff_client.post("/admin/orders/delivery/", {"action": "redispatch", "_selected_action": [d.pk]})
    d.refresh_from_db()
    assert d.status == "cancelled" and Delivery.objects.filter(status="requested", attempt=2).exists()


def test_sla_state_is_shown_in_colour_with_the_watch_note(staff_client, channel, chain):
    f = packed_order(channel, address="NOSHOW")
    services.dispatch_fulfillment(fulfillment=f, provider="local")
    services.watch_deliveries(now=timezone.now() + timedelta(minutes=11))
    page = staff_client.get("/admin/orders/delivery/?sla_state__exact=at_risk")
    shown = list(page.context["cl"].result_list)
    assert [d.sla_state for d in shown] == ["at_risk"]
    html = page.content.decode()
    assert "#ef6c00" in html and "no courier assigned in time" in html


def test_escalate_action_flags_once_and_tells_the_website(staff_client, channel, chain):
    d = services.dispatch_fulfillment(fulfillment=packed_order(channel), provider="local")
    for _ in range(2):
        staff_client.post("/admin/orders/delivery/", {"action": "escalate", "_selected_action": [d.pk]})
    d.refresh_from_db()
    assert (d.sla_state, d.sla_note) == ("escalated", "escalated by staff:boss")
    assert OutboxEvent.objects.filter(topic="delivery.escalated", aggregate=d.fulfillment.order.aggregate).count() == 1


def test_failed_then_returned_actions_bring_the_goods_back_on_sale(staff_client, channel, chain):
    f = packed_order(channel)
    d = services.dispatch_fulfillment(fulfillment=f, provider="local")
    services.apply_courier_event(provider="local", payload={"event_id": "p", "order_id": d.external_id,
                                                            "status": "PICKED_UP"})
    on_hand = Stock.objects.get(store=chain["near"], product=chain["shirt"]).on_hand
    response = staff_client.post("/admin/orders/delivery/", {"action": "record_failed", "_selected_action": [d.pk]},
                                 follow=True)
    assert response.status_code == 200
    f.refresh_from_db()
    d.refresh_from_db()
    assert (f.status, d.status, d.failure_reason) == ("delivery_failed", "failed", "reported failed by staff:boss")
    staff_client.post("/admin/orders/delivery/", {"action": "confirm_returned", "_selected_action": [d.pk]})
    f.refresh_from_db()
    assert f.status == "returned_to_store"
    assert Stock.objects.get(store=chain["near"], product=chain["shirt"]).on_hand == on_hand + 1
    again = staff_client.post("/admin/orders/delivery/", {"action": "confirm_returned", "_selected_action": [d.pk]},
                              follow=True)
    assert "already recorded; nothing changed." in again.content.decode()
    assert Stock.objects.get(store=chain["near"], product=chain["shirt"]).on_hand == on_hand + 1
    assert stock_ledger_differences() == []


def test_action_labels_name_the_fulfillment_states(staff_client, channel, chain):
    services.dispatch_fulfillment(fulfillment=packed_order(channel), provider="local")
    html = staff_client.get("/admin/orders/delivery/").content.decode()
    assert "(delivery_failed)" in html and "(returned_to_store)" in html and "Escalate to the store" in html
