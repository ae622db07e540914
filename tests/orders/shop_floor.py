"""What inventory's shop floor writes when a store event takes units the ledger set aside, built directly for the
orders tests (inventory.services.ShopFloor does the same in the event's transaction): the till (count, damage,
transfer) takes the units free at the till first, then reservations in orders.services.takeable's order, shrinking or
deleting them; one movement for the event on the locked row; one TakenReservation per reservation taken."""

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from inventory import services as stock
from inventory.models import EventKind, MovementReason, Reservation, Stock, StockMovement, TakenReservation
from orders import services

REASONS = {
    EventKind.SALE: MovementReason.SALE,
    EventKind.COUNT: MovementReason.COUNT,
    EventKind.DAMAGE: MovementReason.DAMAGE,
    EventKind.TRANSFER: MovementReason.TRANSFER_OUT,
}


def store_event(store, product, units: int, *, cause: str = "pos:HCM-Q1-001:R-0042", kind: str = EventKind.SALE,
                actor: str = "pos:HCM-Q1-001") -> list[int]:
    """`units` of `product` leave the shelf of `store` (a till sale by default). Returns the TakenReservation ids."""
    pair = (store.pk, product.pk)
    with transaction.atomic():
        rows = stock.lock_stock_rows([pair])
        row = rows[pair]
        free = max(0, row.on_hand - row.reserved - row.unavailable)  # what a till may sell without taking
        need = units - min(free, units)
        taken_ids, reserved_taken = [], 0
        for r in services.takeable(list(Reservation.objects.filter(store=store, product=product))):
            if need == 0:
                break
            n = min(need, r.quantity)
            if n == r.quantity:
                Reservation.objects.filter(pk=r.pk).delete()
            else:
                Reservation.objects.filter(pk=r.pk).update(quantity=F("quantity") - n)
            taken_ids.append(
                TakenReservation.objects.create(
                    store=store, product=product, reference=r.reference, units=n, kind=kind, cause=cause,
                    channel_id=r.channel_id, actor=actor,
                ).pk
            )
            need -= n
            reserved_taken += n
        assert need == 0, "these tests take only units the ledger has (a shortfall is inventory's)"
        stock.apply_movements(
            rows, [(pair, stock.StockDelta(on_hand=-units, reserved=-reserved_taken))], reason=REASONS[kind],
            reference=cause, actor=actor,
        )
    return taken_ids


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
