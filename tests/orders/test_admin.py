"""The orders admin: the store queue, transition actions through the services, the routing decision on the order."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from inventory.selectors import stock_ledger_differences
from orders import services
from orders.models import Fulfillment
from tests.orders.conftest import BEN_THANH, CUSTOMER

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


def test_queue_actions_and_decision_page(staff, channel, chain):
    order = services.place_order(
        channel=channel, lines={"AO-THUN-M": 1}, customer_name=CUSTOMER["name"], customer_phone=CUSTOMER["phone"],
        method="delivery", actor="test", **BEN_THANH,
    )
    f = order.fulfillments.get()
    queue = staff.get(reverse("admin:orders_fulfillment_changelist"), {"q": "HCM-Q1-001", "status__exact": "assigned"})
    assert queue.status_code == 200 and order.number in queue.content.decode()
    url = reverse("admin:orders_fulfillment_changelist")
    for action in ("to_picking", "to_packed", "to_handed_to_courier", "to_delivered"):
        r = staff.post(url, {"action": action, "_selected_action": [f.pk]}, follow=True)
        assert r.status_code == 200
    assert Fulfillment.objects.get(pk=f.pk).status == "delivered"
    # an invalid transition is refused with a message and changes nothing
    r = staff.post(url, {"action": "to_picking", "_selected_action": [f.pk]}, follow=True)
    assert "cannot go from delivered" in r.content.decode()
    assert Fulfillment.objects.get(pk=f.pk).status == "delivered"
    page = staff.get(reverse("admin:orders_order_change", args=[order.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and "★ HCM-Q1-001" in html and "serves the whole cart" in html
    assert staff.get(reverse("admin:orders_fulfillment_change", args=[f.pk])).status_code == 200
    assert staff.get(reverse("admin:orders_order_changelist")).status_code == 200
    assert stock_ledger_differences() == []
