"""A store event for the orders tests, written as the POS writes one (inventory.services.ShopFloor with
orders.services.takeable): units free at the till first, then reservations in takeable's order, shrunk or deleted;
one movement for the event on the locked row; one TakenReservation per reservation taken. Reconciling is left to
the test."""

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from inventory import services as stock
from inventory.models import EventKind, MovementReason, Stock, StockMovement
from orders import services

REASONS = {
    EventKind.SALE: MovementReason.SALE,
    EventKind.COUNT: MovementReason.COUNT,
    EventKind.DAMAGE: MovementReason.DAMAGE,
    EventKind.TRANSFER: MovementReason.TRANSFER_OUT,
}


def store_event(store, product, units: int, *, cause: str = "pos:HCM-Q1-001:R-0042", kind: str = EventKind.SALE,
                actor: str = "pos:HCM-Q1-001") -> list[int]:
    """`units` of `product` leave the shelf of `store` (a till sale by default), taken as the POS takes them: the
    shop floor with orders' policy, the event's movement on the locked row, the TakenReservation rows. Returns their
    ids (not reconciled: the tests do that)."""
    pair = (store.pk, product.pk)
    with transaction.atomic():
        rows = stock.lock_stock_rows([pair])
        floor = stock.ShopFloor(rows, takeable=services.takeable)
        take = floor.take(pair, units, cause=cause)
        assert take.beyond == 0, "these tests take only units the ledger has (a shortfall is inventory's)"
        # The units leave the ledger's on hand whatever the kind (a damaged unit thrown away): these tests look at
        # what the event took from the reservations, not at quarantine (tests/pos/test_shop_floor.py does).
        stock.apply_movements(rows, [(pair, take.leaving())], reason=REASONS[kind], reference=cause, actor=actor)
        return floor.write(kind=kind, actor=actor)


def wait_for_count(store, product, shortfall: int) -> None:
    """The row's ledger lost track of the shelf: `shortfall` units went beyond what it had, and it waits for a count
    (a movement with delta_shortfall and the row's columns, as inventory's ledger writes them)."""
    with transaction.atomic():
        stock.lock_stock_rows([(store.pk, product.pk)])
        StockMovement.objects.create(
            store=store, product=product, reason=MovementReason.SALE, delta_shortfall=shortfall,
            reference=f"pos:{store.code}:SHORT", actor="pos:test", created_at=timezone.now(),
        )
        Stock.objects.filter(store=store, product=product).update(
            shortfall=F("shortfall") + shortfall, needs_count=True
        )
