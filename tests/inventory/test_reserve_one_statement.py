"""reserve_stock's PostgreSQL path is one statement with no savepoint: it must write all lines or nothing, and a
refusal must leave the caller's transaction usable (order placement deletes its rows and routes again in it)."""

import pytest
from django.db import transaction

from inventory import services
from inventory.exceptions import InsufficientStock
from inventory.models import MovementReason, Reservation, Stock, StockMovement
from inventory.selectors import reservation_differences, stock_ledger_differences
from inventory.services import StockLine
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

pytestmark = pytest.mark.django_db


def test_short_line_writes_nothing_and_the_outer_transaction_goes_on():
    store, other = StoreFactory(), StoreFactory()
    shirt, hat = ProductFactory(), ProductFactory()
    put_stock(store, shirt, 2)
    put_stock(other, hat, 1)
    with transaction.atomic():
        with pytest.raises(InsufficientStock) as refused:
            services.reserve_stock(
                lines=[StockLine(store.pk, shirt.pk, 2), StockLine(other.pk, hat.pk, 2)], reference="f:1", actor="t"
            )
        assert [(d["store"], d["sku"], d["requested"], d["available"]) for d in refused.value.lines] == [
            (other.code, hat.sku, 2, 1)
        ]
        assert not Reservation.objects.exists()
        assert Stock.objects.get(store=store, product=shirt).reserved == 0
        # the same transaction is still usable: a smaller cart goes through in it
        held = services.reserve_stock(
            lines=[StockLine(store.pk, shirt.pk, 2), StockLine(other.pk, hat.pk, 1)], reference="f:2", actor="t"
        )
    assert sorted((r.store_id, r.product_id, r.quantity) for r in held) == sorted(
        [(store.pk, shirt.pk, 2), (other.pk, hat.pk, 1)]
    )
    assert {r.pk for r in held} == set(Reservation.objects.filter(reference="f:2").values_list("pk", flat=True))
    assert StockMovement.objects.filter(reason=MovementReason.RESERVE, reference="f:2").count() == 2
    assert stock_ledger_differences() == [] and reservation_differences() == []


def test_a_sku_with_no_stock_row_is_short():
    store, product = StoreFactory(), ProductFactory()
    with pytest.raises(InsufficientStock):
        services.reserve_stock(lines=[StockLine(store.pk, product.pk, 1)], reference="f:3", actor="t")
    assert not Stock.objects.filter(store=store, product=product).exists()
    assert not StockMovement.objects.filter(reference="f:3").exists()
