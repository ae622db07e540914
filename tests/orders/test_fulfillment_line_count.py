"""Fulfillment.line_count is the size of its pick list, the unit of a store's slot load: every way a fulfillment is
made (placement, split, pickup, short-pick re-route, staff re-route, wave) must set it to its number of lines."""

from django.db.models import Count

from orders import services
from orders.models import Fulfillment
from orders.selectors import slot_load
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory
from tests.orders.test_services import place


def _all_counts_right() -> int:
    rows = Fulfillment.objects.annotate(n=Count("lines")).values_list("line_count", "n")
    assert rows and all(count == n for count, n in rows), list(rows)
    return len(rows)


def test_placement_split_pickup_and_short_pick_set_the_line_count(channel, chain):
    order = place(channel, {"AO-THUN-M": 1})
    f = order.fulfillments.get()
    services.transition_fulfillment(fulfillment=f, to="picking", actor="staff")
    assert services.report_short_pick(fulfillment=f, found={chain["shirt"].pk: 0}, actor="staff")  # re-routed
    place(channel, {"AO-THUN-M": 1, "NON-LA": 1})  # one store, two lines
    place(channel, {"AO-THUN-M": 5})  # split over two stores
    place(channel, {"TUI-VAI": 1}, method="pickup", pickup_store_code="HCM-Q3-001")
    assert _all_counts_right() == 6


def test_the_slot_load_counts_open_lines(channel, chain):
    from django.utils import timezone

    place(channel, {"AO-THUN-M": 1, "NON-LA": 1})
    place(channel, {"AO-THUN-M": 1})
    near = chain["near"]
    assert slot_load(store_ids=[near.pk], at=timezone.now(), slot_hours=2) == {near.pk: 3}


def test_waves_set_the_line_count(channel, db):
    s1 = StoreFactory(code="W-S1", lat=10.7743, lon=106.7038)
    s2 = StoreFactory(code="W-S2", lat=10.7800, lon=106.6950)
    shirt, hat = ProductFactory(sku="W-SHIRT"), ProductFactory(sku="W-HAT")
    put_stock(s1, shirt, 1)
    put_stock(s1, hat, 1)
    put_stock(s2, shirt, 1)
    place(channel, {"W-SHIRT": 1}, lat=10.7745, lon=106.7036)
    place(channel, {"W-SHIRT": 1, "W-HAT": 1}, lat=10.7745, lon=106.7030)
    assert services.route_wave(window_seconds=300).applied
    assert _all_counts_right() >= 5
