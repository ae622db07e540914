"""Every write of returns: a return at a till (opened, received and refunded at once), a courier collection opened by
the website (routed to a receiving store) and received later by that store, its cancellation, and the inspection of
quarantined units.

Locks, always in this order (the same as orders and POS, so no two actions deadlock): the original purchase (the
Order or TillReceipt row), then the return, then the per-line counters, then stock rows (inventory.services, one
row per call, in product order), then the member (loyalty.services). The counters are the guard against returning
more than was bought: they change only under the purchase's lock, with a conditional UPDATE, under a CHECK
constraint.

Money. The refund of a line is what was paid for it after discounts: an order's discount (subtotal - total) is
spread over its lines in proportion to their value (largest remainder, so the lines add up to the total); a till
line's own discount is already in its net value. Amounts are cumulative per purchase: the k-th returned unit of a
line refunds floor(net × k / qty) - floor(net × (k-1) / qty), so returning everything in parts refunds exactly what
was paid. The refund is split by tender in proportion: the money part is recorded as one Refund row per original
money tender (paying it out is the payment provider's or the till's job), the points part is given back as points
(loyalty.refund_redemption). Points earned on the goods are reversed in proportion (loyalty.reverse_earning; its
shortfall policy applies). Points are computed on the cumulative value too, against what the ledger shows was
already reversed or given back for the purchase (by earlier returns and by refunds at the till), so rounding never
drifts over several partial returns.
"""

from orders.returns.services.at_store import refund_till_receipt, return_at_store
from orders.returns.services.collections import cancel_return, dispose_quarantined, open_collection, receive_return
from orders.returns.services.purchases import MONEY_TENDERS, ReturnItem
from orders.returns.services.refunds import reverse_for_earlier_returns

__all__ = [
    "MONEY_TENDERS", "ReturnItem", "cancel_return", "dispose_quarantined", "open_collection", "receive_return",
    "refund_till_receipt", "return_at_store", "reverse_for_earlier_returns",
]
