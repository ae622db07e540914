"""Roles and store scope in the admin, and the store queue, through the admin's own pages."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from inventory.models import Stock, StockMovement
from inventory.selectors import stock_ledger_differences
from inventory.staff.roles import HEAD_OFFICE, REGIONAL_MANAGER, ROLES, STORE_STAFF, ensure_roles
from orders.models import Fulfillment

pytestmark = pytest.mark.django_db


def test_roles_hold_their_permissions(db):
    counts = ensure_roles()
    for role, wanted in ROLES.items():
        group = Group.objects.get(name=role)
        have = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
        assert have == wanted, f"{role}: missing {sorted(wanted - have)}"
        assert counts[role] == len(wanted)
    assert ROLES[STORE_STAFF] < ROLES[REGIONAL_MANAGER] < ROLES[HEAD_OFFICE]
    assert "inventory.change_stock" not in ROLES[STORE_STAFF]


def test_store_staff_see_only_their_store(client, two_stores, staff_a):
    client.force_login(staff_a)
    a, b = two_stores["a"], two_stores["b"]
    page = client.get(reverse("admin:orders_fulfillment_changelist"))
    shown = {f.pk for f in page.context["cl"].result_list}
    assert shown == set(Fulfillment.objects.filter(store=a).values_list("pk", flat=True)) and shown
    stock = client.get(reverse("admin:inventory_stock_changelist"))
    assert {row.store_id for row in stock.context["cl"].result_list} == {a.pk}
    # the store filter offers only their store; a search for the other store's code finds nothing
    assert b.code not in stock.content.decode()
    assert not client.get(reverse("admin:inventory_stock_changelist"), {"q": b.code}).context["cl"].result_list
    other = two_stores["day_b"]["pickup_f"]
    assert client.get(reverse("admin:orders_fulfillment_change", args=[other.pk])).status_code == 404
    assert client.get(reverse("admin:orders_order_change", args=[other.order_id])).status_code == 404
    assert client.get(reverse("admin:inventory_store_change", args=[b.pk])).status_code == 404
    b_stock = Stock.objects.filter(store=b).first()
    assert client.get(reverse("admin:inventory_stock_change", args=[b_stock.pk])).status_code == 404
    # store staff may not adjust stock at all (a permission of regional managers)
    assert client.get(reverse("admin:inventory_stock_adjust", args=[Stock.objects.filter(store=a).first().pk])
                      ).status_code == 403


def test_regional_manager_cannot_adjust_another_stores_stock(client, two_stores, regional):
    client.force_login(regional)
    mine = Stock.objects.filter(store=two_stores["a"], product=two_stores["shirt"]).get()
    theirs = Stock.objects.filter(store=two_stores["b"], product=two_stores["shirt"]).get()
    assert client.get(reverse("admin:inventory_stock_adjust", args=[mine.pk])).status_code == 200
    before = StockMovement.objects.count()
    r = client.post(reverse("admin:inventory_stock_adjust", args=[theirs.pk]),
                    {"delta_on_hand": "-1", "reason": "damaged", "note": "x"})
    assert r.status_code == 404 and StockMovement.objects.count() == before


def test_head_office_sees_every_store(client, two_stores, head_office):
    client.force_login(head_office)
    page = client.get(reverse("admin:orders_fulfillment_changelist"))
    assert {f.store_id for f in page.context["cl"].result_list} == {two_stores["a"].pk, two_stores["b"].pk}
    other = two_stores["day_b"]["pickup_f"]
    assert client.get(reverse("admin:orders_fulfillment_change", args=[other.pk])).status_code == 200


def test_staff_without_scope_see_nothing(client, two_stores, django_user_model):
    from inventory.staff.roles import ensure_roles

    ensure_roles()
    user = django_user_model.objects.create_user("new.hire", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=STORE_STAFF))
    client.force_login(user)
    page = client.get(reverse("admin:orders_fulfillment_changelist"))
    assert page.status_code == 200 and list(page.context["cl"].result_list) == []


def test_queue_moves_a_pickup_from_assigned_to_ready(client, two_stores, staff_a):
    client.force_login(staff_a)
    f = two_stores["day_a"]["pickup_f"]
    queue = client.get(reverse("admin:orders_fulfillment_queue"))
    rows = [row["f"].pk for row in queue.context["queue"]]
    assert f.pk in rows and two_stores["day_b"]["pickup_f"].pk not in rows
    promised = [row["f"].promised_by for row in queue.context["queue"]]
    assert promised == sorted(promised)
    for to in ("picking", "packed", "ready_for_pickup"):
        r = client.post(reverse("admin:orders_fulfillment_move", args=[f.pk]), {"to": to})
        assert r.status_code == 302
        assert Fulfillment.objects.get(pk=f.pk).status == to
    movements = StockMovement.objects.filter(reference=f"fulfillment:{f.pk}")
    assert movements.exists()
    # a step the state machine refuses changes nothing and says why
    r = client.post(reverse("admin:orders_fulfillment_move", args=[f.pk]), {"to": "picking"}, follow=True)
    assert "cannot go from ready_for_pickup" in r.content.decode()
    assert Fulfillment.objects.get(pk=f.pk).status == "ready_for_pickup"
    # another store's fulfillment, by URL: 404, unchanged
    other = two_stores["day_b"]["pickup_f"]
    assert client.post(reverse("admin:orders_fulfillment_move", args=[other.pk]), {"to": "picking"}).status_code == 404
    assert Fulfillment.objects.get(pk=other.pk).status == "assigned"
    assert stock_ledger_differences() == []


def test_collected_by_customer_records_the_staff_member(client, two_stores, staff_a):
    client.force_login(staff_a)
    f = two_stores["day_a"]["pickup_f"]
    for to in ("picking", "packed", "ready_for_pickup", "collected"):
        client.post(reverse("admin:orders_fulfillment_move", args=[f.pk]), {"to": to})
    assert Fulfillment.objects.get(pk=f.pk).status == "collected"
    committed = StockMovement.objects.filter(reference=f"fulfillment:{f.pk}", delta_on_hand__lt=0)
    assert committed.exists() and set(committed.values_list("actor", flat=True)) == {"staff:lan.q1"}


def test_short_pick_with_quantities(client, two_stores, staff_a):
    client.force_login(staff_a)
    f = two_stores["day_a"]["pickup_f"]
    line = f.lines.get()
    url = reverse("admin:orders_fulfillment_short_pick", args=[f.pk])
    assert client.get(url).status_code == 200
    bad = client.post(url, {f"found_{line.pk}": "7"})
    assert bad.status_code == 200 and "from 0 to 1" in bad.content.decode()
    r = client.post(url, {f"found_{line.pk}": "0"})
    assert r.status_code == 302
    line.refresh_from_db()
    assert line.picked_qty == 0
    assert client.get(reverse("admin:orders_fulfillment_short_pick",
                              args=[two_stores["day_b"]["pickup_f"].pk])).status_code == 404
    assert stock_ledger_differences() == []


def test_queue_shows_time_left_and_late_promises_in_red(client, two_stores, staff_a):
    from datetime import timedelta

    from django.utils import timezone

    client.force_login(staff_a)
    late = two_stores["day_a"]["pickup_f"]
    Fulfillment.objects.filter(pk=late.pk).update(promised_by=timezone.now() - timedelta(minutes=75, seconds=5))
    page = client.get(reverse("admin:orders_fulfillment_queue"), {"store": two_stores["a"].pk})
    rows = {row["f"].pk: row for row in page.context["queue"]}
    assert rows[late.pk]["late"] and rows[late.pk]["time_left"] == "late by 1 h 15 min"
    assert list(rows)[0] == late.pk  # the overdue promise comes first
    assert not any(row["late"] for pk, row in rows.items() if pk != late.pk)
    assert f'<tr class="late" data-fulfillment="{late.pk}">' in page.content.decode()


def test_network_board_counts_and_map(client, two_stores, head_office, staff_a):
    client.force_login(head_office)
    page = client.get(reverse("admin:orders_order_board"))
    assert page.status_code == 200
    board = page.context["board"]
    every = Fulfillment.objects.filter(store__in=[two_stores["a"], two_stores["b"]])
    assert sum(board.fulfillments_by_status.values()) == every.count()
    assert sum(board.orders_by_status.values()) == 6 and sum(board.per_hour) == 6
    from orders.board import SERVED

    assert board.served == every.filter(status__in=SERVED).count()
    assert {s["code"] for s in page.context["map"]["stores"]} >= {two_stores["a"].code, two_stores["b"].code}
    html = page.content.decode()
    assert 'id="network-map"' in html and html.count('class="order"') == 4  # the delivery orders have an address
    # store staff get the board of their store only
    client.force_login(staff_a)
    mine = client.get(reverse("admin:orders_order_board")).context["board"]
    assert sum(mine.orders_by_status.values()) == 3
    assert {row["store__code"] for row in mine.per_store} == {two_stores["a"].code}


def test_board_on_time_rate_after_a_pickup_is_ready(client, two_stores, head_office, staff_a):
    client.force_login(staff_a)
    f = two_stores["day_a"]["pickup_f"]
    for to in ("picking", "packed", "ready_for_pickup"):
        client.post(reverse("admin:orders_fulfillment_move", args=[f.pk]), {"to": to})
    client.force_login(head_office)
    board = client.get(reverse("admin:orders_order_board")).context["board"]
    from orders.board import SERVED

    served = Fulfillment.objects.filter(status__in=SERVED)
    assert f.pk in set(served.values_list("pk", flat=True)) and board.served == served.count()
    assert board.on_time_rate == 100.0  # everything was served before its promise


def test_create_staff_command(two_stores):
    from django.core.management import CommandError, call_command

    from inventory.staff.scope import store_ids_for

    call_command("create_staff", "thu.hn", role="regional", stores="HN-HK-001,HCM-Q1-001", password="pw-long-enough")
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="thu.hn")
    assert store_ids_for(user) == {two_stores["a"].pk, two_stores["b"].pk}
    assert list(user.groups.values_list("name", flat=True)) == [REGIONAL_MANAGER] and user.is_staff
    with pytest.raises(CommandError, match="unknown store"):
        call_command("create_staff", "x", role="store", stores="NOPE-1", password="pw")
    with pytest.raises(CommandError, match="every store"):
        call_command("create_staff", "y", role="head-office", stores="HN-HK-001", password="pw")


def test_queue_times_are_in_the_stores_time_zone(client, two_stores, staff_a):
    from inventory.models import Store

    Store.objects.filter(pk=two_stores["a"].pk).update(timezone="Asia/Tokyo")
    client.force_login(staff_a)
    html = client.get(reverse("admin:orders_fulfillment_queue")).content.decode()
    assert "Asia/Tokyo" in html
    f = two_stores["day_a"]["pickup_f"]
    from zoneinfo import ZoneInfo

    assert f.promised_by.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%d/%m %H:%M") in html


def test_csv_export_of_stock_holds_only_their_stores_rows(client, two_stores, staff_a):
    import csv
    import io

    from inventory.admin import StockResource

    client.force_login(staff_a)
    fields = {f"stockresource_{name}": "on" for name in StockResource._meta.fields}
    r = client.post(reverse("admin:inventory_stock_export"), {"format": "0", "resource": "0", **fields})
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows and {row["store"] for row in rows} == {two_stores["a"].code}
    assert len(rows) == Stock.objects.filter(store=two_stores["a"]).count()
    # the movement ledger, filtered on screen by reason, exports the same filtered rows
    fields = {f"stockmovementresource_{name}": "on" for name in ("store", "sku", "reason", "delta_on_hand", "actor")}
    r = client.post(reverse("admin:inventory_stockmovement_export") + "?reason__exact=goods_receipt",
                    {"format": "0", "resource": "0", **fields})
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    expected = StockMovement.objects.filter(store=two_stores["a"], reason="goods_receipt").count()
    assert len(rows) == expected > 0 and {row["reason"] for row in rows} == {"goods_receipt"}


def test_order_list_shows_vnd_with_thousands_separators(client, two_stores, staff_a):
    client.force_login(staff_a)
    html = client.get(reverse("admin:orders_order_changelist")).content.decode()
    assert "199,000 ₫" in html
