"""Every POS write, by topic: till sales (sales.py), voids (voids.py), stock counts (counts.py), goods receipts
(receipts.py), transfers (transfers.py), damage found on the shelf (damage.py), pickup handovers (pickups.py) and the
online tills' price call (prices.py; a receipt's own prices are checked in sales.py). Refunds of a till's own receipts go
through the one refund door, orders.returns.services.refund_till_receipt.

Stock moves only through the stock service's own mechanism: the rows are locked with inventory.services.lock_stock_rows
(one SELECT ... FOR UPDATE, primary-key order, expired holds released first) and changed with
inventory.services.apply_movements / apply_movement_batch (one ledger movement per row and receipt, the same deltas applied to the
row, the stock rules checked again). Loyalty points move only through loyalty.services, inside the same transaction as the receipt's stock, so a
receipt applies in full or not at all. Lock order: stock rows (by pk), then the member row — the same order as an
order placement that reserves stock and then captures points.

Selling policy at the till (per store and SKU, on the locked row): the shop floor is the truth (issue #18). A
receipt is refused only when it is invalid as data (unknown SKU, tenders that do not add up, a reused id with other
content, a points tender the member cannot pay), never for stock:
    * the units free at the till come first: `on_hand - reserved - unavailable`, the `safety` buffer included (only
      the website keeps off it);
    * then units reserved for online checkouts and placed orders at this store (inventory.services.ShopFloor, in
      orders.services.takeable's order: checkout holds newest first, then fulfilments assigned, then picking; never
      packed ones): the reservations shrink in the sale's transaction, one TakenReservation per (reservation,
      receipt), and right after the commit, in the same request, orders.services.reconcile_taken re-routes the
      fulfilments, offers pickup customers a change and tells the websites whose holds shrank (the periodic task
      takes up whatever could not finish);
    * what even those cannot cover is beyond the ledger: the movement records it as `delta_shortfall`, the row's
      `shortfall` rises and it is flagged `needs_count` (its online ATP is 0 until a count), the line records its
      `shortfall`.

Prices at the till (issue #19): a sale is never refused for its prices either. Each applied receipt is priced as
the policy in force would have at its time of sale (orders.pricing.tills.check_receipt, in the receipt's transaction,
after its points, with the policy read once per batch): the codes it gives are taken as for an order (a single-use
code once across every channel), and whatever differs (a line below or above the policy, a manager's override, a code
refused, a promotion over its budget) is queued as a price exception for operations. The receipt keeps what the till
said (its codes, promotions and override) and its result what the policy would have charged. Online tills ask the
same engine before the sale (prices.py); offline tills evaluate their store's snapshot of the policy.

Receipts are idempotent by (store, receipt id) — a database unique constraint — plus a hash of their content: the
same id and content returns the first answer (`duplicate`), the same id with other content is rejected
(`receipt_id_reused`) and writes nothing. A batch is applied in chunks (one transaction each, see sync_sales);
within a chunk every receipt is checked before anything of it is written and its points are posted in a savepoint,
so each receipt applies in full or not at all and one bad receipt never blocks the rest of its batch.

Counts and late receipts. A count says "at `counted_at` there were N units". The adjustment is
`N - ledger on-hand as of counted_at`, where the as-of ledger places every till sale at its *time of sale* (the
receipt's `sold_at`) and every other movement at the time it was recorded. So:
    * a sale made before the count but synced after it was recorded is "late": the count already saw those units
      gone, so the late sale takes nothing off the ledger (its line records `late_for_count`; points are posted
      as usual) — nothing is counted twice;
    * a sale synced before the count but made after `counted_at` stays in the ledger and is not undone by the
      count — nothing is lost;
    * a sale made before the count and synced before it is part of the as-of ledger, so the count does not take it
      again.
Count lines may carry `expected_on_hand` (the ledger on-hand the till saw): if the ledger has moved since, the whole
count is refused (`stale_quantity`) and nothing is written. A count that finds fewer units than are reserved plus
quarantined takes the difference from the reservations, as a sale does (their holders re-routed), then from the
quarantine; units still reserved for packed orders (in their bags, not on the shelf) stay. A count also settles the
row's shortfall: see counts.py.
"""

from orders.pos.services.common import MONEY_TENDERS, TENDER_TYPES, till_actor
from orders.pos.services.counts import CountLine, count_matches, ledger_on_hand_as_of, record_count
from orders.pos.services.damage import report_damage
from orders.pos.services.pickups import hand_over_pickup, pickup_at_store
from orders.pos.services.prices import till_price
from orders.pos.services.receipts import goods_receipt_matches, receive_goods
from orders.pos.services.sales import Outcome, Sale, SaleLine, Tender, _apply_one, apply_sale, sync_sales  # noqa: F401
from orders.pos.services.transfers import receive_transfer, ship_transfer, transfer_result
from orders.pos.services.voids import void_receipt

__all__ = [
    "MONEY_TENDERS", "TENDER_TYPES", "CountLine", "Outcome", "Sale", "SaleLine", "Tender", "apply_sale",
    "count_matches", "goods_receipt_matches", "hand_over_pickup", "ledger_on_hand_as_of", "pickup_at_store",
    "receive_goods", "receive_transfer", "record_count", "report_damage", "ship_transfer", "sync_sales", "till_actor",
    "till_price", "transfer_result", "void_receipt",
]
# _apply_one: the sales bench (bench/pos/run.py) times one receipt's application without the batch around it.
