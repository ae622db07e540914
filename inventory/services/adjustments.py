"""Adjustments by hand or from a system of record: one movement per change, with its reason."""



from django.db import IntegrityError, transaction

from inventory.exceptions import (
    InvalidStockChange,
    StaleStockQuantity,
)
from inventory.models import MovementReason, Product, Stock, StockMovement, Store
from inventory.services.ledger import StockDelta, apply_movements, flag_for_count, lock_stock_rows


@transaction.atomic
def adjust_stock(
    *,
    store: Store,
    product: Product,
    reason: str,
    actor: str,
    on_hand: int = 0,
    unavailable: int = 0,
    safety: int = 0,
    reference: str = "",
    note: str = "",
    idempotency_key: str | None = None,
) -> StockMovement:
    """Change one stock row by deltas (a goods receipt, a damage, a correction). Refused with InvalidStockChange if
    the row would become impossible (e.g. less on hand than reserved). With an idempotency key, a replay returns
    the first movement and changes nothing."""
    if reason not in MovementReason.values:
        raise InvalidStockChange(f"Unknown reason {reason!r}.")
    delta = StockDelta(on_hand=on_hand, unavailable=unavailable, safety=safety)
    if delta.is_zero():
        raise InvalidStockChange("The adjustment changes nothing.")
    pair = (store.pk, product.pk)
    rows = lock_stock_rows([pair], create_missing=True)
    if idempotency_key:
        # Checked under the row lock, so a concurrent replay of the same call waits and then finds the first.
        first = StockMovement.objects.filter(idempotency_key=idempotency_key).first()
        if first is not None:
            return first
    try:
        with transaction.atomic():
            (movement,) = apply_movements(
                rows,
                [(pair, delta)],
                reason=reason,
                reference=reference,
                actor=actor,
                note=note,
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        # Only a concurrent call with the same idempotency key gets here (the row lock serialises the rest).
        first = StockMovement.objects.filter(idempotency_key=idempotency_key).first()
        if first is None:
            raise
        return first
    return movement


@transaction.atomic
def set_stock_levels(
    *,
    store: Store,
    product: Product,
    actor: str,
    reason: str = MovementReason.COUNT,
    on_hand: int | None = None,
    safety: int | None = None,
    target: int | None = None,
    expected_on_hand: int | None = None,
    reference: str = "",
    note: str = "",
) -> StockMovement | None:
    """Set absolute levels (a count, a new safety stock). `expected_on_hand` makes it a compare-and-set: refused
    with StaleStockQuantity when the ledger has moved since the caller looked. Returns None if nothing changed.

    A new `on_hand` is what someone counted on the shelf, so it also settles what the ledger had lost track of: the
    row's shortfall goes back to zero in the same movement, and its needs-count flag is cleared. (A count below the
    units reserved or quarantined is refused here, InvalidStockChange: the tills' counts take such units through
    ShopFloor, whose caller re-routes their holders.)"""
    for name, value in (("on_hand", on_hand), ("safety", safety), ("target", target)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise InvalidStockChange(f"{name} must be a whole number ≥ 0.")
    pair = (store.pk, product.pk)
    rows = lock_stock_rows([pair], create_missing=True)
    row = rows[pair]
    if expected_on_hand is not None and row.on_hand != expected_on_hand:
        raise StaleStockQuantity(details={"expected_on_hand": expected_on_hand, "on_hand": row.on_hand})
    if target is not None and target != row.target:
        Stock.objects.filter(pk=row.pk).update(target=target)
    delta = StockDelta(
        on_hand=(on_hand - row.on_hand) if on_hand is not None else 0,
        safety=(safety - row.safety) if safety is not None else 0,
        shortfall=-row.shortfall if on_hand is not None else 0,
    )
    counted = on_hand is not None and row.needs_count
    if delta.is_zero():
        if counted:
            flag_for_count(store_id=store.pk, product_ids=[product.pk], flagged=False)
        return None
    if delta.on_hand == 0 and delta.shortfall == 0 and reason == MovementReason.COUNT:
        reason = MovementReason.SAFETY_CHANGE
    (movement,) = apply_movements(rows, [(pair, delta)], reason=reason, reference=reference, actor=actor, note=note)
    if counted:
        flag_for_count(store_id=store.pk, product_ids=[product.pk], flagged=False)
    return movement
