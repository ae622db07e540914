"""Stock screens for operations staff: the low-stock list against Stock.target, scoped to the staff member's stores."""

import pytest
from django.urls import reverse

from inventory import services
from inventory.models import Product, Stock

pytestmark = pytest.mark.django_db


def _low(row: Stock) -> bool:
    atp = row.on_hand - row.reserved - row.safety - row.unavailable
    return row.target > 0 and (row.on_hand < row.target or atp < row.target)


@pytest.fixture
def targets(two_stores):
    """Targets through the service, so that each store has one row low on hand, one low online only, one fine."""
    shirt, hat, bag = (Product.objects.get(sku=sku) for sku in ("AO-THUN-M", "NON-LA", "TUI-VAI"))
    for store in (two_stores["a"], two_stores["b"]):
        services.set_stock_levels(store=store, product=shirt, actor="test", target=50)  # on hand well below
        bag_row = Stock.objects.get(store=store, product=bag)
        # safety eats into what can be sold online, while the shelf still holds the target
        services.set_stock_levels(store=store, product=bag, actor="test", target=bag_row.on_hand,
                                  safety=bag_row.on_hand - 1)
        services.set_stock_levels(store=store, product=hat, actor="test", target=1)
    return {"shirt": shirt, "hat": hat, "bag": bag}


def _listed(client, **params) -> set[int]:
    response = client.get(reverse("admin:inventory_stock_changelist"), params)
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


def test_low_stock_list_for_store_staff_shows_only_their_stores_rows_below_target(client, two_stores, staff_a,
                                                                                     targets):
    client.force_login(staff_a)
    a = two_stores["a"]
    expected = {row.pk for row in Stock.objects.filter(store=a) if _low(row)}
    assert expected == set(Stock.objects.filter(store=a, product__in=[targets["shirt"], targets["bag"]])
                           .values_list("pk", flat=True))
    assert _listed(client, low="online") == expected
    # on hand alone: the bag's shelf holds its target, only its online ATP is short
    assert _listed(client, low="on_hand") == {Stock.objects.get(store=a, product=targets["shirt"]).pk}
    # the other store has low rows too, but none of them reach store staff of store A
    assert any(_low(row) for row in Stock.objects.filter(store=two_stores["b"]))
    assert all(Stock.objects.get(pk=pk).store_id == a.pk for pk in _listed(client, low="online"))


def test_head_office_low_stock_list_covers_the_network(client, two_stores, head_office, targets):
    client.force_login(head_office)
    expected = {row.pk for row in Stock.objects.all() if _low(row)}
    assert len({Stock.objects.get(pk=pk).store_id for pk in expected}) == 2
    assert _listed(client, low="online") == expected
    page = client.get(reverse("admin:inventory_stock_changelist"), {"low": "online"}).content.decode()
    assert "Below target" in page
