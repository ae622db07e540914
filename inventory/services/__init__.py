"""Every write to stock, by topic: the ledger's machinery (ledger.py), reservations (reservations.py), adjustments
(adjustments.py), bulk loading (loading.py) and the shop floor (shop_floor.py: physical events that take reserved
units, never refused for stock). Nothing else in the project changes Stock, StockMovement or
Reservation rows. Their hand-written PostgreSQL statements are in inventory/fast_paths.py, each beside its ORM twin.

Each public action opens a transaction, locks the stock rows it touches in one fixed order (by primary key, in a
single SELECT ... FOR UPDATE), checks the rule against the locked quantities, then appends one movement per row and
applies the same deltas to the row. The database constraints on Stock are the last line of defence.
"""

from inventory.fast_paths import copy_insert
from inventory.services.adjustments import adjust_stock, set_stock_levels
from inventory.services.ledger import (
    Pair,
    StockChange,
    StockDelta,
    StockLine,
    apply_movement_batch,
    apply_movements,
    flag_for_count,
    lock_stock_rows,
    online_available,
)
from inventory.services.loading import load_opening_balances, load_synthetic_stock_postgres
from inventory.services.reservations import (
    Hold,
    commit_reservations,
    hold_stock,
    release_expired_holds,
    release_reservations,
    reserve_stock,
)
from inventory.services.shop_floor import FloorTake, ShopFloor, Takeable

__all__ = [
    "FloorTake", "Hold", "Pair", "ShopFloor", "Takeable", "StockChange", "StockDelta", "StockLine", "adjust_stock", "apply_movement_batch",
    "apply_movements", "commit_reservations", "copy_insert", "flag_for_count", "hold_stock",
    "load_opening_balances", "load_synthetic_stock_postgres", "lock_stock_rows", "online_available",
    "release_expired_holds", "release_reservations", "reserve_stock", "set_stock_levels",
]
