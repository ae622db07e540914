"""The routing page of an order (/admin/orders/order/<id>/routing/): every decision with its candidates and winner,
and the re-route form, for staff with orders.reroute_order, inside their store scope."""

import re
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from inventory.models import Stock
from inventory.staff.roles import HEAD_OFFICE, REGIONAL_MANAGER, STORE_STAFF, make_staff
from o2o.models import OutboxEvent
from orders import services
from orders.models import Fulfillment, RoutingDecision, RoutingKind
from tests.concurrency import run_concurrently
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-passphrase-42"
BEN_THANH = {"lat": 10.7725, "lon": 106.6980}


@pytest.fixture
def shops(channel):
    """Two District 1/3 stores with shirts (Q1 nearer Bến Thành) and one in Hà Nội with its own delivery order."""
    q1 = StoreFactory(code="HCM-Q1-001", name="Q1 Lê Lợi", lat=10.7743, lon=106.7038)
    q3 = StoreFactory(code="HCM-Q3-001", name="Q3 Võ Văn Tần", lat=10.7835, lon=106.6870)
    hn = StoreFactory(code="HN-HK-001", name="Hoàn Kiếm", city="Hà Nội", lat=21.0245, lon=105.8550)
    shirt = ProductFactory(sku="AO-THUN-M")
    for store, units in ((q1, 3), (q3, 5), (hn, 4)):
        put_stock(store, shirt, units)
    order = _place(channel, **BEN_THANH)
    hanoi = _place(channel, lat=21.0290, lon=105.8520)
    assert order.fulfillments.get().store == q1 and hanoi.fulfillments.get().store == hn
    return {"q1": q1, "q3": q3, "hn": hn, "shirt": shirt, "order": order, "hanoi": hanoi}


def _place(channel, **where):
    return services.place_order(
        channel=channel,
        lines={"AO-THUN-M": 1},
        customer_name="Trần Thị B",
        customer_phone="0912 345 678",
        method="delivery",
        actor="test",
        address="1 Đường Thử",
        **where,
    )


def _may_reroute(user):
    user.user_permissions.add(Permission.objects.get(content_type__app_label="orders", codename="reroute_order"))
    return type(user).objects.get(pk=user.pk)  # a fresh instance: the permission cache is per object


@pytest.fixture
def head_office(shops):
    return _may_reroute(make_staff(username="hoa.hq", password=PASSWORD, role=HEAD_OFFICE, all_stores=True))


@pytest.fixture
def regional(shops):
    user = make_staff(
        username="minh.south", password=PASSWORD, role=REGIONAL_MANAGER, stores=[shops["q1"], shops["q3"]]
    )
    return _may_reroute(user)


@pytest.fixture
def store_staff_q1(shops):
    return make_staff(username="lan.q1", password=PASSWORD, role=STORE_STAFF, stores=[shops["q1"]])


def _url(order) -> str:
    return reverse("admin:orders_order_routing", args=[order.pk])


def _key(html: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)


def test_page_shows_candidates_and_winner(client, shops, head_office):
    client.force_login(head_office)
    order = shops["order"]
    page = client.get(_url(order))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-kind="initial"' in html
    assert re.search(r'<tr class="chosen" data-store="HCM-Q1-001">\s*<td><span title="chosen">★</span>', html)
    assert 'data-store="HCM-Q3-001"' in html  # the runner-up is listed, not starred
    assert "AO-THUN-M: 3" in html and "AO-THUN-M: 5" in html  # stock per SKU of each candidate
    assert "serves the whole cart" in html  # the decision's reason
    f = order.fulfillments.get()
    assert reverse("admin:orders_fulfillment_change", args=[f.pk]) in html  # what the decision produced
    assert 'name="reason"' in html and 'name="avoid_current"' in html
    # linked from the order's change page and from the order list
    assert _url(order) in client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert _url(order) in client.get(reverse("admin:orders_order_changelist")).content.decode()


def test_reroute_form_moves_the_order_and_says_where(client, shops, head_office):
    client.force_login(head_office)
    order = shops["order"]
    key = _key(client.get(_url(order)).content.decode())
    data = {"idempotency_key": key, "reason": "Q1 closed: water leak", "avoid_current": "on"}
    response = client.post(_url(order), data, follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "re-routed from HCM-Q1-001: now served by HCM-Q3-001" in html
    live = Fulfillment.objects.filter(order=order).exclude(status="cancelled").get()
    assert live.store == shops["q3"]
    assert Stock.objects.get(store=shops["q1"], product=shops["shirt"]).reserved == 0
    assert Stock.objects.get(store=shops["q3"], product=shops["shirt"]).reserved == 1
    decision = RoutingDecision.objects.get(order=order, kind=RoutingKind.MANUAL)
    assert decision.plan["manual"]["actor"] == "staff:hoa.hq" and decision.plan["manual"]["reason"] == data["reason"]
    assert 'data-kind="manual"' in html and "water leak" in html  # the page now lists the re-route too
    assert OutboxEvent.objects.get(topic="order.rerouted").payload["reason"] == data["reason"]

    # the same form sent again (double click, resubmit) does not move the order back to Q1
    again = client.post(_url(order), data, follow=True)
    assert "already made" in again.content.decode()
    assert RoutingDecision.objects.filter(order=order, kind=RoutingKind.MANUAL).count() == 1
    assert Fulfillment.objects.filter(order=order).exclude(status="cancelled").get().pk == live.pk
    assert OutboxEvent.objects.filter(topic="order.rerouted").count() == 1


def test_router_keeping_the_store_is_said_and_changes_nothing(client, shops, head_office):
    client.force_login(head_office)
    order = shops["order"]
    key = _key(client.get(_url(order)).content.decode())
    response = client.post(_url(order), {"idempotency_key": key, "reason": "check"}, follow=True)
    assert "kept" in response.content.decode() and "nothing was changed" in response.content.decode()
    assert Fulfillment.objects.get(order=order).status == "assigned"
    assert not RoutingDecision.objects.filter(order=order, kind=RoutingKind.MANUAL).exists()


def test_reason_required_and_refusals_shown_on_the_form(client, shops, head_office):
    client.force_login(head_office)
    order = shops["order"]
    key = _key(client.get(_url(order)).content.decode())
    response = client.post(_url(order), {"idempotency_key": key, "reason": "  ", "avoid_current": "on"})
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    assert Fulfillment.objects.get(order=order).status == "assigned"
    # once picking started, the page explains why there is no form, and a POST is refused with the reason
    services.transition_fulfillment(fulfillment=order.fulfillments.get(), to="picking", actor="test")
    page = client.get(_url(order)).content.decode()
    assert 'name="reason"' not in page and "cannot be re-routed now" in page
    refused = client.post(_url(order), {"idempotency_key": key, "reason": "late", "avoid_current": "on"})
    assert refused.status_code == 200 and "still assigned (not picking)" in refused.content.decode()
    assert Fulfillment.objects.get(order=order).status == "picking"


def test_regional_manager_reroutes_within_the_region(client, shops, regional):
    client.force_login(regional)
    order = shops["order"]
    key = _key(client.get(_url(order)).content.decode())
    response = client.post(_url(order), {"idempotency_key": key, "reason": "staff ill", "avoid_current": "on"})
    assert response.status_code == 302
    assert Fulfillment.objects.filter(order=order).exclude(status="cancelled").get().store == shops["q3"]


def test_store_scope_limits_where_staff_may_move_an_order(client, shops):
    """A manager of Q1 alone may not push the order onto Q3: with Q1 avoided nothing in scope can serve it."""
    user = _may_reroute(make_staff(username="an.q1", password=PASSWORD, role=REGIONAL_MANAGER, stores=[shops["q1"]]))
    client.force_login(user)
    order = shops["order"]
    key = _key(client.get(_url(order)).content.decode())
    response = client.post(_url(order), {"idempotency_key": key, "reason": "leak", "avoid_current": "on"})
    assert response.status_code == 200 and "No store can serve this order now" in response.content.decode()
    assert Fulfillment.objects.get(order=order).status == "assigned"
    assert not RoutingDecision.objects.filter(order=order, kind=RoutingKind.MANUAL).exists()


def test_another_stores_order_is_a_404(client, shops, regional, store_staff_q1):
    hanoi = shops["hanoi"]
    for user in (regional, store_staff_q1):
        client.force_login(user)
        assert client.get(_url(hanoi)).status_code == 404
        response = client.post(_url(hanoi), {"idempotency_key": "k", "reason": "x", "avoid_current": "on"})
        assert response.status_code in (403, 404)
    assert Fulfillment.objects.get(order=hanoi).status == "assigned"
    assert not RoutingDecision.objects.filter(kind=RoutingKind.MANUAL).exists()


def test_store_staff_without_the_permission_see_no_form_and_cannot_post(client, shops, store_staff_q1):
    client.force_login(store_staff_q1)
    order = shops["order"]
    page = client.get(_url(order))
    assert page.status_code == 200
    html = page.content.decode()
    assert "★" in html and 'name="reason"' not in html and "You may not re-route orders" in html
    response = client.post(_url(order), {"idempotency_key": "k", "reason": "x", "avoid_current": "on"})
    assert response.status_code == 403
    assert Fulfillment.objects.get(order=order).store == shops["q1"]
    assert not RoutingDecision.objects.filter(kind=RoutingKind.MANUAL).exists()


def test_delivery_failed_action_says_what_it_does(client, shops, head_office):
    client.force_login(head_office)
    page = client.get(reverse("admin:orders_fulfillment_changelist")).content.decode()
    assert "Delivery failed (goods still with the courier; stock unchanged)" in page
    assert "goods back in store" not in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_reroute_form_races_the_start_picking_button(shops, head_office):
    """The re-route form and the queue's "Start picking" button sent at once, on two connections: no 500, exactly one
    of them happens, and the stock ledger balances."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are a PostgreSQL promise")
    order = shops["order"]
    f = order.fulfillments.get()

    def act(i: int):
        client = Client()
        client.force_login(head_office)
        if i == 0:
            data = {"idempotency_key": "race-1", "reason": "race", "avoid_current": "on"}
            return client.post(_url(order), data).status_code
        return client.post(reverse("admin:orders_fulfillment_move", args=[f.pk]), {"to": "picking"}).status_code

    statuses = run_concurrently(2, act)
    assert statuses[1] == 302 and statuses[0] in (200, 302), statuses  # refusals come back as a message or form error
    live = list(Fulfillment.objects.filter(order=order).exclude(status="cancelled"))
    rerouted = RoutingDecision.objects.filter(order=order, kind=RoutingKind.MANUAL).exists()
    assert len(live) == 1
    if rerouted:
        assert live[0].store == shops["q3"] and live[0].status == "assigned"
        assert Fulfillment.objects.get(pk=f.pk).status == "cancelled"
    else:
        assert live[0].pk == f.pk and live[0].status == "picking"
    call_command("inventory_audit", stdout=StringIO())
