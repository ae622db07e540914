"""Every write to the loyalty ledger. Nothing else in the project changes Member counters, Posting, Entry, Lot,
RedemptionHold or HoldAllocation rows.

How to call it (orders, POS, returns):
    * Services are plain functions with keyword-only arguments. Each opens a plain `transaction.atomic()`, so it
      joins the caller's transaction: a POS receipt applies stock and points together, or neither.
    * Every posting names its source (`PostingSource`: channel code, store code, order/receipt reference, actor)
      as plain strings: loyalty imports nothing from orders or inventory.
    * Every action a client may retry takes an `idempotency_key` (unique across the ledger; prefix it with your
      scope, e.g. "pos:HCM-0001:R-123:earn"). A replay returns the first result and posts nothing; the same key
      for a different action or member raises IdempotencyKeyConflict (422).

Events: every posting that changes a member's balance writes one "points.changed" outbox event with the new
balance, in the same transaction (on PostgreSQL in the posting's own statement).

Concurrency: every action first locks the member's row (SELECT ... FOR UPDATE), which serialises all writes to one
member's counters, lots and holds; merges lock both members in primary-key order. Counters change in the database
(F expressions; the spend path uses a conditional `UPDATE ... WHERE available >= n`), and CHECK constraints refuse
a negative counter, so the balance available to spend is never negative whatever the concurrency.

Policies:
    * Earning: floor(amount paid with money × tier multiplier / LOYALTY_EARN_VND_PER_POINT). Pass `vest_at` for
      online orders (`conf.online_vest_at(now)`): the points are pending until then, `vest_pending` vests them.
    * Spending takes the oldest lots first (earliest expiry). Lots expire at the start of the month after
      LOYALTY_EXPIRY_MONTHS months from the month they were earned; `expire_lots` posts it.
    * Reversal (returns, cancellations): the earning's own points are taken back first (from pending if they have
      not vested, else from its lot, then other lots oldest first). What the member has already spent becomes a
      *shortfall*: the balance never goes below zero; the shortfall is settled from the next points that become
      available by earning or vesting (not by refunds or manual adjustments). `fraction` is rounded down.
    * Refund of redeemed points (returned goods paid with points): given back as a new lot with a fresh expiry,
      never more than was redeemed; `fraction` is rounded up (the customer gets the rounding).

Modules, by topic (callers import from here, `from loyalty import services`, never from the modules):
    ledger       the posting machinery: PostingSource, the member lock, replays, _post, the lots a spend takes
    members      get_or_create_member, merge_members, lock_members_for_phones
    earning      points_for, earn_points, vest_pending, reverse_earning
    redemption   hold/capture/void_redemption, void_expired_holds, redeem_points, refund_redemption
    lifecycle    expire_lots, adjust_points, rolling_spend, recompute_tiers, expire_and_vest
The PostgreSQL statements and their ORM twins: loyalty/fast_paths.py.
"""

from loyalty.services.earning import earn_points, points_for, reverse_earning, vest_pending
from loyalty.services.ledger import _LOTS_PAGE, POINTS_CHANGED, SYSTEM, PostingSource, lot_expiry  # noqa: F401 - tests
from loyalty.services.lifecycle import adjust_points, expire_and_vest, expire_lots, recompute_tiers, rolling_spend
from loyalty.services.members import get_or_create_member, lock_members_for_phones, merge_members
from loyalty.services.redemption import (
    buy_voucher,
    capture_redemption,
    hold_redemption,
    redeem_points,
    refund_redemption,
    void_expired_holds,
    void_redemption,
)

__all__ = [
    "POINTS_CHANGED", "SYSTEM", "PostingSource", "adjust_points", "buy_voucher", "capture_redemption", "earn_points",
    "expire_and_vest", "expire_lots", "get_or_create_member", "hold_redemption", "lock_members_for_phones",
    "lot_expiry", "merge_members", "points_for", "recompute_tiers", "redeem_points", "refund_redemption",
    "reverse_earning", "rolling_spend", "vest_pending", "void_expired_holds", "void_redemption",
]
