"""The courier desk in the admin: lists with the SLA filter, dispatch and re-dispatch actions."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

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
