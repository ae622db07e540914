"""A shortfall (issue #18): units an event took beyond what the ledger had on hand. It flags the row for a count (the
database refuses one without the flag), keeps the row's online ATP at zero through every reader and refuses online
reservations until a count (set_stock_levels(on_hand=...)) settles it; the audit sums it from the movements like
every other state. And the channel of a checkout hold is stored on its reservations."""

from contextlib import nullcontext

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from inventory import selectors, services
from inventory.exceptions import InsufficientStock, InvalidStockChange
from inventory.models import MovementReason, Reservation, Stock, StockMovement
from inventory.services import StockChange, StockDelta, StockLine
from o2o.fast_paths import orm_twins
from tests.conftest import put_stock
from tests.factories import ProductFactory, SalesChannelFactory, StoreFactory

pytestmark = pytest.mark.django_db

BEN_THANH = {"lat": 10.7725, "lon": 106.6980}


def row_of(store, product) -> Stock:
    return Stock.objects.get(store=store, product=product)


def sell_beyond(store, product, units, *, on_hand=0, reference="pos:R-1"):
    """A till sale of `on_hand` units the ledger had and `units` more (a shortfall)."""
    pair = (store.pk, product.pk)
    with transaction.atomic():
        rows = services.lock_stock_rows([pair], create_missing=True)
        return services.apply_movements(rows, [(pair, StockDelta(on_hand=-on_hand, shortfall=units))],
                                        reason=MovementReason.SALE, reference=reference, actor="till")


def assert_audit_clean():
    assert selectors.stock_ledger_differences() == []
    assert selectors.reservation_differences() == []
    call_command("inventory_audit")


def test_a_positive_shortfall_flags_the_row(store, product):
    put_stock(store, product, 2)
    (movement,) = sell_beyond(store, product, 3, on_hand=2)
    assert (movement.delta_on_hand, movement.delta_shortfall) == (-2, 3)
    row = row_of(store, product)
    assert (row.on_hand, row.shortfall, row.needs_count) == (0, 3, True)
    assert_audit_clean()


def test_a_batch_flags_only_the_rows_a_change_gave_a_shortfall(store):
    short, fine = ProductFactory(), ProductFactory()
    put_stock(store, short, 1)
    put_stock(store, fine, 5)
    pairs = [(store.pk, short.pk), (store.pk, fine.pk)]
    with transaction.atomic():
        rows = services.lock_stock_rows(pairs)
        services.apply_movement_batch(rows, [
            StockChange(pairs[0], StockDelta(on_hand=-1), "R-1"),
            StockChange(pairs[0], StockDelta(shortfall=2), "R-2"),
            StockChange(pairs[1], StockDelta(on_hand=-2), "R-2"),
        ], reason=MovementReason.SALE, actor="till", now=timezone.now())
    a, b = row_of(store, short), row_of(store, fine)
    assert (a.on_hand, a.shortfall, a.needs_count) == (0, 2, True)
    assert (b.on_hand, b.shortfall, b.needs_count) == (3, 0, False)
    assert_audit_clean()


def test_taking_back_a_shortfall_does_not_flag_and_below_zero_is_refused(store, product):
    sell_beyond(store, product, 2)
    pair = (store.pk, product.pk)
    with transaction.atomic():
        rows = services.lock_stock_rows([pair])
        with pytest.raises(InvalidStockChange) as refused:
            services.apply_movements(rows, [(pair, StockDelta(shortfall=-3))], reason=MovementReason.COUNT,
                                     reference="c", actor="t")
    assert refused.value.details["would_be"]["shortfall"] == -1
    assert row_of(store, product).shortfall == 2


def test_the_database_refuses_a_shortfall_without_a_count(store, product):
    put_stock(store, product, 1)
    rows = Stock.objects.filter(store=store, product=product)
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.update(shortfall=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.update(shortfall=-1, needs_count=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        StockMovement.objects.create(store=store, product=product, reason=MovementReason.COUNT)  # changes nothing
    assert rows.update(shortfall=1, needs_count=True) == 1  # with the flag it is a state the ledger knows


@pytest.mark.parametrize("orm", [False, True], ids=["sql", "orm"])
def test_online_atp_is_zero_through_every_reader_until_a_count_settles_it(api, orm):
    store = StoreFactory(code="SF-Q1", lat=10.7743, lon=106.7038)
    other = StoreFactory(code="SF-Q3", lat=10.7835, lon=106.6870)
    shirt = ProductFactory(sku="SF-SHIRT")
    put_stock(store, shirt, 6, safety=1)
    put_stock(other, shirt, 2)
    sell_beyond(store, shirt, 1)  # on hand still 6: the ledger lost track of one unit, not of the other five

    def readers() -> dict:
        with orm_twins() if orm else nullcontext():
            row = row_of(store, shirt)
            cart = selectors.cart_availability(**BEN_THANH, lines={"SF-SHIRT": 1}, radius_km=10)
            return {
                "row": (row.available, services.online_available(row)),
                "sellable_online": selectors.sellable_online(store_ids=[store.pk, other.pk], product_ids=[shirt.pk]),
                "by_sku": selectors.sellable_online_by_sku(store_ids=[store.pk, other.pk], skus=["SF-SHIRT"])[1],
                "network": selectors.network_atp(skus=["SF-SHIRT"]),
                "cart": {a.nearby.store.code: a.available["SF-SHIRT"] for a in cart},
            }

    def over_the_api() -> dict:
        cart = api.post("/api/v1/availability/", {**BEN_THANH, "lines": [{"sku": "SF-SHIRT", "qty": 1}]},
                        format="json")
        network = api.get("/api/v1/availability/network/", {"sku": "SF-SHIRT"})
        assert cart.status_code == 200 and network.status_code == 200, (cart.content, network.content)
        return {"cart": {s["store"]["code"]: s["available"]["SF-SHIRT"] for s in cart.json()["stores"]},
                "network": network.json()}

    assert readers() == {
        "row": (0, 0),
        "sellable_online": {(store.pk, shirt.pk): 0, (other.pk, shirt.pk): 2},
        "by_sku": {(store.pk, "SF-SHIRT"): 0, (other.pk, "SF-SHIRT"): 2},
        "network": {"SF-SHIRT": {"atp": 2, "stores": 1}},
        "cart": {"SF-Q1": 0, "SF-Q3": 2},
    }
    assert over_the_api() == {"cart": {"SF-Q1": 0, "SF-Q3": 2}, "network": [{"sku": "SF-SHIRT", "atp": 2, "stores": 1}]}

    movement = services.set_stock_levels(store=store, product=shirt, actor="staff", on_hand=4)
    assert (movement.reason, movement.delta_on_hand, movement.delta_shortfall) == (MovementReason.COUNT, -2, -1)
    row = row_of(store, shirt)
    assert (row.on_hand, row.shortfall, row.needs_count) == (4, 0, False)
    assert readers() == {
        "row": (3, 3),
        "sellable_online": {(store.pk, shirt.pk): 3, (other.pk, shirt.pk): 2},
        "by_sku": {(store.pk, "SF-SHIRT"): 3, (other.pk, "SF-SHIRT"): 2},
        "network": {"SF-SHIRT": {"atp": 5, "stores": 2}},
        "cart": {"SF-Q1": 3, "SF-Q3": 2},
    }
    assert over_the_api() == {"cart": {"SF-Q1": 3, "SF-Q3": 2}, "network": [{"sku": "SF-SHIRT", "atp": 5, "stores": 2}]}
    assert_audit_clean()


def test_a_count_of_what_the_ledger_already_says_still_settles_the_shortfall(store, product):
    put_stock(store, product, 3)
    sell_beyond(store, product, 2)
    movement = services.set_stock_levels(store=store, product=product, actor="staff", on_hand=3)
    assert movement is not None and (movement.reason, movement.delta_on_hand, movement.delta_shortfall) == (
        MovementReason.COUNT, 0, -2)
    row = row_of(store, product)
    assert (row.on_hand, row.shortfall, row.needs_count, row.available) == (3, 0, False, 3)
    assert_audit_clean()


def test_a_safety_change_leaves_the_shortfall_alone(store, product):
    put_stock(store, product, 3)
    sell_beyond(store, product, 1)
    movement = services.set_stock_levels(store=store, product=product, actor="staff", safety=1)
    assert (movement.reason, movement.delta_safety, movement.delta_shortfall) == (MovementReason.SAFETY_CHANGE, 1, 0)
    row = row_of(store, product)
    assert (row.shortfall, row.needs_count, row.available) == (1, True, 0)
    assert_audit_clean()


@pytest.mark.parametrize("orm", [False, True], ids=["sql", "orm"])
def test_reserving_a_row_with_a_shortfall_is_refused(store, orm):
    short, fine = ProductFactory(), ProductFactory()
    put_stock(store, short, 5)
    put_stock(store, fine, 5)
    sell_beyond(store, short, 1)
    lines = [StockLine(store.pk, short.pk, 1), StockLine(store.pk, fine.pk, 1)]
    with orm_twins() if orm else nullcontext():
        with pytest.raises(InsufficientStock) as refused:
            services.reserve_stock(lines=lines, reference="order:1", actor="web")
        assert [(line["sku"], line["requested"], line["available"]) for line in refused.value.lines] == [
            (short.sku, 1, 0)]
        assert not Reservation.objects.exists() and row_of(store, fine).reserved == 0
        services.set_stock_levels(store=store, product=short, actor="staff", on_hand=5)
        services.reserve_stock(lines=lines, reference="order:1", actor="web")
    assert row_of(store, short).reserved == 1
    assert_audit_clean()


def test_a_hold_over_the_api_is_refused_on_a_row_with_a_shortfall(api, store, product):
    put_stock(store, product, 5)
    sell_beyond(store, product, 1)
    body = {"store": store.code, "lines": [{"sku": product.sku, "qty": 1}], "ttl_seconds": 120}
    response = api.post("/api/v1/holds/", body, format="json", HTTP_IDEMPOTENCY_KEY="sf-1")
    assert response.status_code == 409 and response.json()["code"] == "insufficient_stock"
    assert response.json()["details"]["lines"][0]["available"] == 0


def test_clearing_the_count_flag_keeps_rows_with_a_shortfall_flagged(store):
    short, counted = ProductFactory(), ProductFactory()
    put_stock(store, short, 1)
    put_stock(store, counted, 1)
    sell_beyond(store, short, 1)
    assert services.flag_for_count(store_id=store.pk, product_ids=[counted.pk]) == 1
    assert row_of(store, counted).needs_count
    assert services.flag_for_count(store_id=store.pk, product_ids=[short.pk, counted.pk], flagged=False) == 1
    assert row_of(store, short).needs_count and not row_of(store, counted).needs_count


def test_the_audit_sums_the_shortfall_from_the_movements(store, product):
    put_stock(store, product, 2)
    sell_beyond(store, product, 3, on_hand=2)
    call_command("inventory_audit")
    Stock.objects.filter(store=store, product=product).update(shortfall=1)  # not what the movements say
    differences = selectors.stock_ledger_differences()
    assert [(d.store_id, d.product_id, d.stored, d.ledger) for d in differences] == [
        (store.pk, product.pk, (0, 0, 0, 0, 1), (0, 0, 0, 0, 3))]
    with pytest.raises(CommandError, match="1 stock rows differ from the ledger"):
        call_command("inventory_audit")
    Stock.objects.filter(store=store, product=product).update(shortfall=3)
    call_command("inventory_audit")
    # A shortfall movement without its row: the audit finds that too.
    StockMovement.objects.create(store=store, product=product, reason=MovementReason.SALE, delta_shortfall=1)
    with pytest.raises(CommandError):
        call_command("inventory_audit")


def test_a_hold_stores_its_channel_on_each_reservation(store):
    web, app = SalesChannelFactory(code="website"), SalesChannelFactory(code="app", name="App")
    a, b = ProductFactory(), ProductFactory()
    put_stock(store, a, 3)
    put_stock(store, b, 3)
    hold = services.hold_stock(store=store, quantities={a: 1, b: 2}, ttl_seconds=60, actor="web", channel=web)
    assert [(r.channel_id, r.quantity) for r in hold.reservations] == [(web.pk, 1), (web.pk, 2)]
    assert set(Reservation.objects.filter(reference=hold.reference).values_list("channel_id", flat=True)) == {web.pk}
    other = services.hold_stock(store=store, quantities={a: 1}, ttl_seconds=60, actor="app", channel=app)
    assert Reservation.objects.get(reference=other.reference).channel_id == app.pk
    anonymous = services.hold_stock(store=store, quantities={b: 1}, ttl_seconds=60, actor="t")
    assert Reservation.objects.get(reference=anonymous.reference).channel_id is None
    order = services.reserve_stock(lines=[StockLine(store.pk, a.pk, 1)], reference="order:1", actor="t")
    assert order[0].channel_id is None
    assert_audit_clean()


@pytest.mark.parametrize("orm", [False, True], ids=["sql", "orm"])
def test_the_holds_api_stores_the_websites_channel(api, channel, store, product, orm):
    put_stock(store, product, 3)
    body = {"store": store.code, "lines": [{"sku": product.sku, "qty": 2}], "ttl_seconds": 120}
    with orm_twins() if orm else nullcontext():
        response = api.post("/api/v1/holds/", body, format="json", HTTP_IDEMPOTENCY_KEY="chk-ch")
    assert response.status_code == 201, response.content
    (reservation,) = Reservation.objects.filter(reference=response.json()["reference"])
    assert (reservation.channel_id, reservation.quantity) == (channel.pk, 2)


def test_the_admin_lists_a_row_with_a_shortfall_as_low_and_sells_none_of_it(admin_client, store):
    short, plenty, untargeted = ProductFactory(), ProductFactory(), ProductFactory()
    for product in (short, plenty, untargeted):
        put_stock(store, product, 9)
    Stock.objects.filter(store=store, product__in=[short, plenty]).update(target=5)
    sell_beyond(store, short, 1)
    sell_beyond(store, untargeted, 1)
    url = reverse("admin:inventory_stock_changelist")
    low = list(admin_client.get(url, {"low": "online"}).context["cl"].result_list)
    assert [row.product_id for row in low] == [short.pk]  # 9 on hand, over target, but nothing sells online
    assert low[0].online_atp == 0
    assert list(admin_client.get(url, {"low": "on_hand"}).context["cl"].result_list) == []
    flagged = list(admin_client.get(url, {"needs_count__exact": "1"}).context["cl"].result_list)
    assert {row.product_id for row in flagged} == {short.pk, untargeted.pk}
