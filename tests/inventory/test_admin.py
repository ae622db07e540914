"""The operations admin: lists and pages load, searches and filters work, and the only writes (adjust stock,
release reservations) go through the stock service and keep the ledger balanced."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from inventory import services
from inventory.admin import EstimatedCountPaginator, ProbedDatesQuerySet, format_vnd
from inventory.models import MovementReason, Reservation, Stock, StockMovement
from inventory.selectors import reservation_differences, stock_ledger_differences
from inventory.services import StockLine
from inventory.staff.models import StaffScope
from o2o.models import IdempotencyRecord, OutboxEvent, SalesChannelKey
from tests.conftest import put_stock
from tests.factories import ProductFactory, SalesChannelFactory, StoreFactory

pytestmark = pytest.mark.django_db


def assert_audit_clean():
    assert stock_ledger_differences() == []
    assert reservation_differences() == []


def listed(response) -> list:
    return list(response.context["cl"].result_list)


@pytest.fixture
def chain():
    """Two cities, three stores, two products, stock everywhere, one order reservation and one live hold."""
    hcm_1 = StoreFactory(code="HCM-001", city="Ho Chi Minh City")
    hcm_2 = StoreFactory(code="HCM-002", city="Ho Chi Minh City")
    hn_1 = StoreFactory(code="HN-001", city="Ha Noi", district="Hoàn Kiếm")
    shirt = ProductFactory(sku="AT-001", barcode="8936000000017", price_vnd=1_250_000)
    jeans = ProductFactory(sku="QJ-002", barcode="8936000000024")
    for store in (hcm_1, hcm_2, hn_1):
        for product in (shirt, jeans):
            put_stock(store, product, 10, safety=1)
    services.reserve_stock(lines=[StockLine(hcm_1.pk, shirt.pk, 2)], reference="fulfillment:1", actor="test")
    services.hold_stock(store=hn_1, quantities={jeans: 1}, ttl_seconds=600, actor="test")
    Stock.objects.filter(store=hn_1, product=shirt).update(needs_count=True)  # a flag, not a quantity
    return {"hcm_1": hcm_1, "hcm_2": hcm_2, "hn_1": hn_1, "shirt": shirt, "jeans": jeans}


def stock_row(store, product) -> Stock:
    return Stock.objects.select_related("store", "product").get(store=store, product=product)


def adjust_url(stock: Stock) -> str:
    return reverse("admin:inventory_stock_adjust", args=[stock.pk])


def adjust_form(client, stock: Stock) -> dict:
    """The initial values of the rendered form (hidden expected_on_hand and token included)."""
    response = client.get(adjust_url(stock))
    assert response.status_code == 200
    form = response.context["form"]
    return {name: form[name].value() for name in ("expected_on_hand", "token")}


# --- pages load ----------------------------------------------------------------------------------------------------


def test_every_changelist_and_change_page_loads(admin_client, chain):
    channel = SalesChannelFactory()
    key, _raw = SalesChannelKey.objects.create_key(name="web", channel=channel)
    record = IdempotencyRecord.objects.create(scope="channel:1:orders.place", key="k-1", request_hash="x" * 64)
    event = OutboxEvent.objects.create(
        event_id="6f1e4a8c-1c1a-4a4e-9d6f-2f7c1b1d0a11", topic="order.placed", aggregate="order:1", payload={}
    )
    stock = stock_row(chain["hcm_1"], chain["shirt"])
    pages = {
        "inventory_store": chain["hcm_1"].pk,
        "inventory_product": chain["shirt"].pk,
        "inventory_stock": stock.pk,
        "inventory_stockmovement": StockMovement.objects.first().pk,
        "inventory_reservation": Reservation.objects.first().pk,
        "o2o_saleschannel": channel.pk,
        "o2o_saleschannelkey": key.pk,
        "o2o_idempotencyrecord": record.pk,
        "o2o_outboxevent": event.pk,
    }
    for name, pk in pages.items():
        changelist = admin_client.get(reverse(f"admin:{name}_changelist"))
        assert changelist.status_code == 200, name
        assert changelist.context["cl"].result_count >= 1, name
        change = admin_client.get(reverse(f"admin:{name}_change", args=[pk]))
        assert change.status_code == 200, name
    assert admin_client.get(reverse("admin:inventory_store_add")).status_code == 200
    assert admin_client.get(reverse("admin:index")).status_code == 200


def test_stock_list_shows_the_states_and_online_atp(admin_client, chain):
    response = admin_client.get(reverse("admin:inventory_stock_changelist"), {"q": "HCM-001 AT-001"})
    (row,) = listed(response)
    assert (row.on_hand, row.reserved, row.safety, row.unavailable) == (10, 2, 1, 0)
    content = response.content.decode()
    assert "available (online)" in content.lower() and "needs count" in content.lower()
    assert row.online_atp == 7
    assert adjust_url(row) in content  # the adjust link on each row


def test_stock_change_page_is_read_only_and_links_to_adjust(admin_client, chain):
    stock = stock_row(chain["hcm_1"], chain["shirt"])
    response = admin_client.get(reverse("admin:inventory_stock_change", args=[stock.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert adjust_url(stock) in content
    assert 'name="on_hand"' not in content  # no editable quantity inputs


def test_product_price_is_shown_in_vnd(admin_client, chain):
    assert format_vnd(1_250_000) == "1,250,000 ₫"
    response = admin_client.get(reverse("admin:inventory_product_changelist"), {"q": "AT-001"})
    assert "1,250,000 ₫" in response.content.decode()


def test_store_list_filters_and_search(admin_client, chain):
    url = reverse("admin:inventory_store_changelist")
    assert {s.code for s in listed(admin_client.get(url, {"city": "Ha Noi"}))} == {"HN-001"}
    assert {s.code for s in listed(admin_client.get(url, {"q": "HCM-002"}))} == {"HCM-002"}
    chain["hcm_2"].offers_pickup = False
    chain["hcm_2"].save(update_fields=["offers_pickup"])
    assert "HCM-002" not in {s.code for s in listed(admin_client.get(url, {"service": "pickup"}))}
    assert (
        reverse("admin:inventory_stock_changelist") + f"?store={chain['hcm_1'].pk}"
        in admin_client.get(url).content.decode()
    )


def test_store_can_be_edited_with_its_opening_hours(admin_client):
    store = StoreFactory(code="DN-001", city="Da Nang", hours=False)
    url = reverse("admin:inventory_store_change", args=[store.pk])
    data = {
        "code": "DN-001",
        "name": "Đà Nẵng 1",
        "is_active": "on",
        "address": "1 Bạch Đằng",
        "district": "Hải Châu",
        "city": "Da Nang",
        "lat": "16.06",
        "lon": "108.22",
        "timezone": "Asia/Ho_Chi_Minh",
        "offers_delivery": "on",
        "offers_pickup": "on",
        "delivery_radius_km": "5",
        "picking_capacity_per_hour": "20",
        "opening_hours-TOTAL_FORMS": "1",
        "opening_hours-INITIAL_FORMS": "0",
        "opening_hours-0-weekday": "0",
        "opening_hours-0-opens": "08:00",
        "opening_hours-0-closes": "22:00",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    store.refresh_from_db()
    assert store.name == "Đà Nẵng 1" and not store.offers_returns
    assert store.opening_hours.count() == 1


# --- search and filters on stock -----------------------------------------------------------------------------------


def test_stock_search_by_sku_barcode_and_store_code(admin_client, chain):
    url = reverse("admin:inventory_stock_changelist")
    by_sku = listed(admin_client.get(url, {"q": "at-001"}))  # case-insensitive SKU
    assert len(by_sku) == 3 and {r.product_id for r in by_sku} == {chain["shirt"].pk}
    by_barcode = listed(admin_client.get(url, {"q": "8936000000024"}))
    assert len(by_barcode) == 3 and {r.product_id for r in by_barcode} == {chain["jeans"].pk}
    by_store = listed(admin_client.get(url, {"q": "HN-001"}))
    assert {r.store_id for r in by_store} == {chain["hn_1"].pk} and len(by_store) == 2
    assert listed(admin_client.get(url, {"q": "NO-SUCH-SKU"})) == []


def test_stock_filters_by_city_store_and_needs_count(admin_client, chain):
    url = reverse("admin:inventory_stock_changelist")
    in_hanoi = listed(admin_client.get(url, {"city": "Ha Noi"}))
    assert {r.store_id for r in in_hanoi} == {chain["hn_1"].pk}
    at_store = listed(admin_client.get(url, {"store": chain["hcm_2"].pk}))
    assert {r.store_id for r in at_store} == {chain["hcm_2"].pk} and len(at_store) == 2
    flagged = listed(admin_client.get(url, {"needs_count__exact": "1"}))
    assert [(r.store_id, r.product_id) for r in flagged] == [(chain["hn_1"].pk, chain["shirt"].pk)]
    # Choosing a city lists its stores in the store filter.
    response = admin_client.get(url, {"city": "Ho Chi Minh City"})
    store_filter = next(f for f in response.context["cl"].filter_specs if f.parameter_name == "store")
    assert {label.split()[0] for _, label in store_filter.lookup_choices} == {"HCM-001", "HCM-002"}


def test_stock_changelist_has_no_n_plus_one(admin_client, chain):
    url = reverse("admin:inventory_stock_changelist")
    with CaptureQueriesContext(connection) as few:
        admin_client.get(url, {"city": "Ha Noi"})
    for product in ProductFactory.create_batch(10):
        put_stock(chain["hn_1"], product, 3)
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(url, {"city": "Ha Noi"})
    assert len(listed(response)) == 12
    assert len(many) == len(few)
    assert not any("COUNT(*)" in q["sql"] and "LIMIT" not in q["sql"] for q in many.captured_queries)


def test_movement_list_search_and_filters(admin_client, chain):
    url = reverse("admin:inventory_stockmovement_changelist")
    services.adjust_stock(
        store=chain["hn_1"],
        product=chain["jeans"],
        reason=MovementReason.DAMAGE,
        actor="test",
        unavailable=1,
        reference="QC-77",
        idempotency_key="pos:hn-1:qc-77",
    )
    assert [m.reference for m in listed(admin_client.get(url, {"q": "QC-77"}))] == ["QC-77"]
    assert [m.reference for m in listed(admin_client.get(url, {"q": "pos:hn-1:qc-77"}))] == ["QC-77"]
    by_sku = listed(admin_client.get(url, {"q": "AT-001"}))
    assert by_sku and {m.product_id for m in by_sku} == {chain["shirt"].pk}
    damaged = listed(admin_client.get(url, {"reason__exact": MovementReason.DAMAGE}))
    assert [m.reference for m in damaged] == ["QC-77"]
    assert {m.store_id for m in listed(admin_client.get(url, {"city": "Ha Noi"}))} == {chain["hn_1"].pk}
    today = timezone.localdate()
    dated = admin_client.get(url, {"created_at__year": today.year, "created_at__month": today.month})
    assert dated.status_code == 200 and len(listed(dated)) == StockMovement.objects.count()


# --- adjust stock --------------------------------------------------------------------------------------------------


def test_goods_receipt_writes_one_movement_as_the_staff_user(admin_client, chain):
    stock = stock_row(chain["hcm_2"], chain["shirt"])
    before = StockMovement.objects.count()
    data = {
        **adjust_form(admin_client, stock),
        "reason": MovementReason.GOODS_RECEIPT,
        "delta_on_hand": "5",
        "reference": "GRN-1",
        "note": "weekly delivery",
    }
    response = admin_client.post(adjust_url(stock), data)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:inventory_stock_change", args=[stock.pk])
    assert StockMovement.objects.count() == before + 1
    movement = StockMovement.objects.order_by("-pk").first()
    assert (movement.reason, movement.delta_on_hand, movement.actor, movement.reference, movement.note) == (
        MovementReason.GOODS_RECEIPT,
        5,
        "admin",
        "GRN-1",
        "weekly delivery",
    )
    assert stock_row(chain["hcm_2"], chain["shirt"]).on_hand == 15
    # Submitting the same form twice (a double click) replays: nothing more is written.
    assert admin_client.post(adjust_url(stock), data).status_code == 302
    assert StockMovement.objects.count() == before + 1 and stock_row(chain["hcm_2"], chain["shirt"]).on_hand == 15
    assert_audit_clean()


def test_damage_and_release_from_quarantine(admin_client, chain):
    stock = stock_row(chain["hcm_2"], chain["jeans"])
    for reason, delta in ((MovementReason.DAMAGE, "3"), (MovementReason.RELEASE_FROM_QUARANTINE, "-2")):
        data = {**adjust_form(admin_client, stock), "reason": reason, "delta_unavailable": delta}
        assert admin_client.post(adjust_url(stock), data).status_code == 302
    row = stock_row(chain["hcm_2"], chain["jeans"])
    assert (row.on_hand, row.unavailable) == (10, 1)
    assert_audit_clean()


def test_count_and_new_safety_set_absolute_levels(admin_client, chain):
    stock = stock_row(chain["hcm_1"], chain["jeans"])
    data = {**adjust_form(admin_client, stock), "reason": MovementReason.COUNT, "counted_on_hand": "7"}
    assert admin_client.post(adjust_url(stock), data).status_code == 302
    movement = StockMovement.objects.order_by("-pk").first()
    assert (movement.reason, movement.delta_on_hand, movement.actor) == (MovementReason.COUNT, -3, "admin")
    data = {
        **adjust_form(admin_client, stock),
        "reason": MovementReason.SAFETY_CHANGE,
        "new_safety": "2",
        "new_target": "30",
    }
    assert admin_client.post(adjust_url(stock), data).status_code == 302
    row = stock_row(chain["hcm_1"], chain["jeans"])
    assert (row.on_hand, row.safety, row.target) == (7, 2, 30)
    assert StockMovement.objects.order_by("-pk").first().reason == MovementReason.SAFETY_CHANGE
    assert_audit_clean()


def test_taking_on_hand_below_reserved_is_refused_and_writes_nothing(admin_client, chain):
    stock = stock_row(chain["hcm_1"], chain["shirt"])  # 10 on hand, 2 reserved
    before = StockMovement.objects.count()
    data = {**adjust_form(admin_client, stock), "reason": MovementReason.WRITE_OFF, "delta_on_hand": "-9"}
    response = admin_client.post(adjust_url(stock), data)
    assert response.status_code == 200
    errors = response.context["form"].non_field_errors()
    assert errors and "impossible state" in errors[0]
    assert StockMovement.objects.count() == before
    assert stock_row(chain["hcm_1"], chain["shirt"]).on_hand == 10
    assert_audit_clean()


def test_a_count_on_a_moved_ledger_is_refused_as_stale(admin_client, chain):
    stock = stock_row(chain["hcm_2"], chain["shirt"])
    data = {**adjust_form(admin_client, stock), "reason": MovementReason.COUNT, "counted_on_hand": "4"}
    put_stock(chain["hcm_2"], chain["shirt"], 1)  # a till or a receipt moves the ledger meanwhile
    before = StockMovement.objects.count()
    response = admin_client.post(adjust_url(stock), data)
    assert response.status_code == 200
    assert "is now 11" in response.context["form"].non_field_errors()[0]
    assert StockMovement.objects.count() == before
    # The re-rendered form now expects the current quantity: submitting it again records the count.
    assert response.context["form"]["expected_on_hand"].value() == "11"
    retry = {**data, "expected_on_hand": "11"}
    assert admin_client.post(adjust_url(stock), retry).status_code == 302
    assert stock_row(chain["hcm_2"], chain["shirt"]).on_hand == 4
    assert_audit_clean()


@pytest.mark.parametrize(
    "fields",
    [
        {"reason": MovementReason.ADJUSTMENT},  # nothing to change
        {"reason": MovementReason.ADJUSTMENT, "delta_on_hand": "1", "counted_on_hand": "3"},  # both kinds
        {"reason": MovementReason.COUNT, "delta_on_hand": "1"},  # a count without the counted quantity
        {"reason": MovementReason.SAFETY_CHANGE, "delta_on_hand": "1"},
        {"reason": MovementReason.SALE, "delta_on_hand": "-1"},  # not a manual reason
        {"reason": MovementReason.COUNT, "counted_on_hand": "-1"},
    ],
)
def test_invalid_input_is_a_form_error_and_writes_nothing(admin_client, chain, fields):
    stock = stock_row(chain["hcm_2"], chain["jeans"])
    before = StockMovement.objects.count()
    response = admin_client.post(adjust_url(stock), {**adjust_form(admin_client, stock), **fields})
    assert response.status_code == 200 and response.context["form"].errors
    assert StockMovement.objects.count() == before


def test_adjusting_needs_the_change_permission(client, chain):
    stock = stock_row(chain["hcm_2"], chain["jeans"])
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_stock"))
    StaffScope.objects.create(user=viewer, all_stores=True)  # every store; the permission is what is tested
    client.force_login(viewer)
    page = client.get(reverse("admin:inventory_stock_change", args=[stock.pk]))
    assert page.status_code == 200 and adjust_url(stock) not in page.content.decode()
    assert client.get(adjust_url(stock)).status_code == 403
    assert client.post(adjust_url(stock), {"reason": "adjustment", "delta_on_hand": "1"}).status_code == 403
    clerk = User.objects.create_user("clerk", password="x", is_staff=True)
    clerk.user_permissions.add(*Permission.objects.filter(codename__in=["view_stock", "change_stock"]))
    StaffScope.objects.create(user=clerk, all_stores=True)
    client.force_login(clerk)
    data = {**adjust_form(client, stock), "reason": MovementReason.ADJUSTMENT, "delta_on_hand": "1"}
    assert client.post(adjust_url(stock), data).status_code == 302
    assert StockMovement.objects.order_by("-pk").first().actor == "clerk"
    assert_audit_clean()


# --- no writes around the service ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["stock", "stockmovement", "reservation"])
def test_ledger_tables_cannot_be_added_changed_or_deleted(admin_client, chain, model):
    obj = {"stock": Stock, "stockmovement": StockMovement, "reservation": Reservation}[model].objects.first()
    assert admin_client.get(reverse(f"admin:inventory_{model}_add")).status_code == 403
    assert admin_client.post(reverse(f"admin:inventory_{model}_add"), {}).status_code == 403
    assert (
        admin_client.post(reverse(f"admin:inventory_{model}_change", args=[obj.pk]), {"on_hand": "999"}).status_code
        == 403
    )
    assert (
        admin_client.post(reverse(f"admin:inventory_{model}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403
    )
    changelist = admin_client.get(reverse(f"admin:inventory_{model}_changelist"))
    assert "delete_selected" not in changelist.context["cl"].model_admin.get_actions(changelist.wsgi_request)
    assert type(obj).objects.filter(pk=obj.pk).exists()
    assert_audit_clean()


def test_release_action_releases_through_the_service(admin_client, chain):
    reservation = Reservation.objects.get(reference="fulfillment:1")
    before = StockMovement.objects.count()
    response = admin_client.post(
        reverse("admin:inventory_reservation_changelist"),
        {"action": "release", "_selected_action": [reservation.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Released 2 unit(s)" in " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert not Reservation.objects.filter(reference="fulfillment:1").exists()
    assert stock_row(chain["hcm_1"], chain["shirt"]).reserved == 0
    movement = StockMovement.objects.order_by("-pk").first()
    assert StockMovement.objects.count() == before + 1
    assert (movement.reason, movement.delta_reserved, movement.actor) == (MovementReason.RELEASE, -2, "admin")
    assert_audit_clean()


def test_reservation_list_shows_live_and_expired(admin_client, chain):
    Reservation.objects.filter(reference__startswith="hold:").update(expires_at=timezone.now() - timedelta(minutes=1))
    url = reverse("admin:inventory_reservation_changelist")
    assert [r.reference for r in listed(admin_client.get(url, {"state": "expired"}))][0].startswith("hold:")
    assert [r.reference for r in listed(admin_client.get(url, {"state": "live"}))] == ["fulfillment:1"]
    assert [r.reference for r in listed(admin_client.get(url, {"q": "fulfillment:1"}))] == ["fulfillment:1"]


def test_release_needs_the_change_permission(client, chain):
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_reservation"))
    StaffScope.objects.create(user=viewer, all_stores=True)
    client.force_login(viewer)
    reservation = Reservation.objects.get(reference="fulfillment:1")
    response = client.post(
        reverse("admin:inventory_reservation_changelist"), {"action": "release", "_selected_action": [reservation.pk]}
    )
    assert response.status_code == 200  # Django answers "no action selected"; nothing released
    assert Reservation.objects.filter(pk=reservation.pk).exists()


# --- big tables ----------------------------------------------------------------------------------------------------


def test_paginator_counts_exactly_up_to_its_limit_then_estimates(chain):
    class Small(EstimatedCountPaginator):
        exact_limit = 3

    assert Small(StockMovement.objects.filter(store=chain["hn_1"]), 2).count >= 4  # past the limit: an estimate
    assert Small(Stock.objects.filter(store=chain["hn_1"]).order_by("pk"), 2).count == 2  # within it: exact
    assert EstimatedCountPaginator(Stock.objects.order_by("pk"), 100).count == 6


def test_probed_date_hierarchy_matches_distinct_dates(chain):
    probed = ProbedDatesQuerySet(model=StockMovement, query=StockMovement.objects.all().query)
    for kind in ("year", "month", "day"):
        assert list(probed.datetimes("created_at", kind)) == list(StockMovement.objects.datetimes("created_at", kind))
    assert list(probed.filter(reason="no-such-reason").datetimes("created_at", "day")) == []


# --- sales channels ------------------------------------------------------------------------------------------------


def test_creating_a_channel_key_shows_it_once(admin_client):
    channel = SalesChannelFactory()
    page = admin_client.get(reverse("admin:o2o_saleschannel_change", args=[channel.pk]))
    assert reverse("admin:o2o_saleschannelkey_add") + f"?channel={channel.pk}" in page.content.decode()
    response = admin_client.post(
        reverse("admin:o2o_saleschannelkey_add"), {"channel": channel.pk, "name": "web 2025"}, follow=True
    )
    assert response.status_code == 200
    shown = [str(m) for m in get_messages(response.wsgi_request) if "The API key for" in str(m)]
    assert len(shown) == 1
    raw = shown[0].split(" is: ")[1].split(". ")[0]
    key = SalesChannelKey.objects.get(name="web 2025")
    assert key.channel == channel and SalesChannelKey.objects.is_valid(raw)
    assert raw not in admin_client.get(reverse("admin:o2o_saleschannelkey_change", args=[key.pk])).content.decode()


def test_idempotency_records_are_read_only(admin_client):
    record = IdempotencyRecord.objects.create(scope="s", key="k", request_hash="h")
    assert admin_client.get(reverse("admin:o2o_idempotencyrecord_add")).status_code == 403
    assert (
        admin_client.post(reverse("admin:o2o_idempotencyrecord_delete", args=[record.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()
