from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory import services
from inventory.exceptions import InsufficientStock, InvalidStockChange, StaleStockQuantity
from inventory.models import MovementReason, Reservation, Stock, StockMovement
from inventory.selectors import reservation_differences, sellable_online, stock_ledger_differences
from inventory.services import StockLine
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

pytestmark = pytest.mark.django_db


def stock_of(store, product) -> Stock:
    return Stock.objects.get(store=store, product=product)


def assert_audit_clean():
    assert stock_ledger_differences() == []
    assert reservation_differences() == []
    call_command("inventory_audit")


def test_goods_receipt_appends_a_movement_and_updates_the_row(store, product):
    put_stock(store, product, 7)
    row = stock_of(store, product)
    assert (row.on_hand, row.reserved, row.safety, row.unavailable) == (7, 0, 0, 0)
    movement = StockMovement.objects.get(store=store, product=product)
    assert movement.reason == MovementReason.GOODS_RECEIPT and movement.delta_on_hand == 7 and movement.actor == "test"
    assert_audit_clean()


def test_reserve_and_release_keep_the_ledger(store, product):
    put_stock(store, product, 5, safety=1)
    services.reserve_stock(lines=[StockLine(store.pk, product.pk, 3)], reference="order:1", actor="t")
    row = stock_of(store, product)
    assert row.reserved == 3 and row.available == 1
    with pytest.raises(InsufficientStock) as refused:
        services.reserve_stock(lines=[StockLine(store.pk, product.pk, 2)], reference="order:2", actor="t")
    assert refused.value.lines[0]["available"] == 1 and refused.value.lines[0]["sku"] == product.sku
    assert services.release_reservations(reference="order:1", actor="t") == 3
    assert services.release_reservations(reference="order:1", actor="t") == 0  # harmless twice
    assert stock_of(store, product).reserved == 0
    assert_audit_clean()


def test_a_cart_is_reserved_all_or_nothing(store):
    a, b = ProductFactory(), ProductFactory()
    put_stock(store, a, 3)
    put_stock(store, b, 1)
    with pytest.raises(InsufficientStock) as refused:
        services.reserve_stock(
            lines=[StockLine(store.pk, a.pk, 2), StockLine(store.pk, b.pk, 2)], reference="cart", actor="t"
        )
    assert [line["sku"] for line in refused.value.lines] == [b.sku]
    assert stock_of(store, a).reserved == 0 and not Reservation.objects.exists()
    assert_audit_clean()


def test_commit_takes_units_out_of_on_hand_and_reserved(store, product):
    put_stock(store, product, 4)
    services.reserve_stock(lines=[StockLine(store.pk, product.pk, 3)], reference="f:1", actor="t")
    assert services.commit_reservations(reference="f:1", actor="t", quantities={product.pk: 2}) == {product.pk: 2}
    row = stock_of(store, product)
    assert (row.on_hand, row.reserved) == (2, 1)
    assert Reservation.objects.get(reference="f:1").quantity == 1
    services.commit_reservations(reference="f:1", actor="t")
    row = stock_of(store, product)
    assert (row.on_hand, row.reserved) == (1, 0)
    assert_audit_clean()


def test_expired_hold_stops_counting_before_cleanup(store, product):
    put_stock(store, product, 1)
    hold = services.hold_stock(store=store, quantities={product: 1}, ttl_seconds=60, actor="t")
    assert sellable_online(store_ids=[store.pk], product_ids=[product.pk]) == {(store.pk, product.pk): 0}
    Reservation.objects.filter(reference=hold.reference).update(expires_at=timezone.now() - timedelta(seconds=1))
    # Readers ignore it at once, although the row still says reserved=1 ...
    assert stock_of(store, product).reserved == 1
    assert sellable_online(store_ids=[store.pk], product_ids=[product.pk]) == {(store.pk, product.pk): 1}
    # ... and the next writer on the row releases it into the ledger before checking.
    services.reserve_stock(lines=[StockLine(store.pk, product.pk, 1)], reference="order:9", actor="t")
    assert not Reservation.objects.filter(reference=hold.reference).exists()
    assert StockMovement.objects.filter(reason=MovementReason.HOLD_EXPIRED).count() == 1
    assert_audit_clean()


def test_periodic_cleanup_releases_expired_holds(store):
    products = [ProductFactory() for _ in range(3)]
    for p in products:
        put_stock(store, p, 2)
    live = services.hold_stock(store=store, quantities={products[0]: 1}, ttl_seconds=600, actor="t")
    services.hold_stock(store=store, quantities={p: 2 for p in products[1:]}, ttl_seconds=600, actor="t")
    later = timezone.now() + timedelta(seconds=601)
    Reservation.objects.filter(reference=live.reference).update(expires_at=later + timedelta(hours=1))
    assert services.release_expired_holds(now=later) == 4
    assert list(Reservation.objects.values_list("reference", flat=True)) == [live.reference]
    assert services.release_expired_holds(now=later) == 0
    assert_audit_clean()


def test_adjustment_cannot_take_on_hand_below_what_is_set_aside(store, product):
    put_stock(store, product, 3)
    services.reserve_stock(lines=[StockLine(store.pk, product.pk, 2)], reference="o", actor="t")
    with pytest.raises(InvalidStockChange):
        services.adjust_stock(store=store, product=product, reason=MovementReason.DAMAGE, actor="t", on_hand=-2)
    with pytest.raises(InvalidStockChange):
        services.adjust_stock(store=store, product=product, reason=MovementReason.DAMAGE, actor="t", unavailable=2)
    services.adjust_stock(store=store, product=product, reason=MovementReason.DAMAGE, actor="t", unavailable=1)
    assert stock_of(store, product).available == 0
    assert_audit_clean()


def test_adjustment_with_idempotency_key_is_applied_once(store, product):
    first = services.adjust_stock(
        store=store, product=product, reason=MovementReason.GOODS_RECEIPT, actor="t", on_hand=5, idempotency_key="grn-1"
    )
    again = services.adjust_stock(
        store=store, product=product, reason=MovementReason.GOODS_RECEIPT, actor="t", on_hand=5, idempotency_key="grn-1"
    )
    assert first.pk == again.pk and stock_of(store, product).on_hand == 5


def test_count_with_stale_expected_quantity_is_refused(store, product):
    put_stock(store, product, 5)
    with pytest.raises(StaleStockQuantity):
        services.set_stock_levels(store=store, product=product, actor="t", on_hand=3, expected_on_hand=4)
    movement = services.set_stock_levels(store=store, product=product, actor="t", on_hand=3, expected_on_hand=5)
    assert movement.delta_on_hand == -2 and stock_of(store, product).on_hand == 3
    assert services.set_stock_levels(store=store, product=product, actor="t", on_hand=3) is None
    assert_audit_clean()


@pytest.mark.parametrize(
    "values",
    [
        {"on_hand": -1},
        {"reserved": -1},
        {"safety": -1},
        {"unavailable": -1},
        {"on_hand": 1, "reserved": 1, "unavailable": 1},
    ],
)
def test_database_refuses_impossible_stock_rows(store, product, values):
    with pytest.raises(IntegrityError), transaction.atomic():
        Stock.objects.create(store=store, product=product, **values)


def test_audit_command_fails_on_a_tampered_row(store, product):
    put_stock(store, product, 5)
    Stock.objects.filter(store=store, product=product).update(on_hand=6)  # a write that bypassed the service
    with pytest.raises(Exception, match="audit FAILED"):
        call_command("inventory_audit")


def test_quantities_must_be_positive(store, product):
    put_stock(store, product, 5)
    for bad in (0, -1):
        with pytest.raises(InvalidStockChange):
            services.reserve_stock(lines=[StockLine(store.pk, product.pk, bad)], reference="x", actor="t")


def test_reservations_over_several_stores_in_one_call():
    s1, s2 = StoreFactory(), StoreFactory()
    p = ProductFactory()
    put_stock(s1, p, 1)
    put_stock(s2, p, 1)
    services.reserve_stock(lines=[StockLine(s1.pk, p.pk, 1), StockLine(s2.pk, p.pk, 1)], reference="split", actor="t")
    assert Reservation.objects.filter(reference="split").count() == 2
    assert services.release_reservations(reference="split", actor="t") == 2
    assert_audit_clean()
