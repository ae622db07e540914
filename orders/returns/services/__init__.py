"""Every write of returns: a return at a till (opened, received and refunded at once), a courier collection opened by
the website (routed to a receiving store) and received later by that store, its cancellation, and the inspection of
quarantined units.

Locks, always in this order (the same as orders and POS, so no two actions deadlock): the original purchase (the
Order or TillReceipt row), then the return, then the per-line counters, then stock rows (inventory.services, one
row per call, in product order), then the member (loyalty.services). The counters are the guard against returning
more than was bought: they change only under the purchase's lock, with a conditional UPDATE, under a CHECK
constraint.

Money. The refund of a line is what was paid for it after discounts, exactly what the pricing engine charged: qty ×
unit price less the line's share of every promotion and code (OrderLine.discount_vnd; a till line's own
discount_vnd), so a returned item of a buy-2-get-1 or of a bundle gets back what it really cost, possibly 0. An
order's delivery fee belongs to no line and a return of goods never refunds it (refunding a fee is a customer-service
decision, outside returns). Amounts are cumulative per purchase: the k-th returned unit of a line refunds floor(net ×
k / qty) - floor(net × (k-1) / qty) (orders.pricing.engine.cumulative_share, the one rounding rule), so returning
everything in parts refunds exactly what the goods cost and never more than a line's net. The refund is split by
tender on the goods total: points paid for the goods first (an order's fee is paid with money, unless the points paid
more than the goods cost), so the money part is the goods' money share, cumulative; it is recorded as one Refund row
per original money tender (split by largest remainder, orders.pricing.engine.prorate; paying it out is the payment
provider's or the till's job), the points part is given back as points (loyalty.refund_redemption). Points earned are
reversed on the money really refunded: the earning's share of the money it was earned on (the earn posting's amount)
that comes back (loyalty.reverse_earning; its shortfall policy applies); an earning on more than the goods' money (an
order's fee, which is not refunded) keeps the rest. Points are computed on the cumulative value too, against what the
ledger shows was already reversed or given back for the purchase (by earlier returns and by refunds at the till), so
rounding never drifts over several partial returns.
"""

from orders.returns.services.at_store import refund_till_receipt, return_at_store
from orders.returns.services.collections import cancel_return, dispose_quarantined, open_collection, receive_return
from orders.returns.services.purchases import MONEY_TENDERS, ReturnItem
from orders.returns.services.refunds import reverse_for_earlier_returns

__all__ = [
    "MONEY_TENDERS", "ReturnItem", "cancel_return", "dispose_quarantined", "open_collection", "receive_return",
    "refund_till_receipt", "return_at_store", "reverse_for_earlier_returns",
]
