"""The pricing engine: a pure module (no ORM, no Django). A policy, a context and a cart in; a priced cart out, each
line's price and each discount with its reason. The website's quotes, placement, the tills (online price calls and
offline snapshots) and returns all price with it; orders/pricing/README.md states its rules for till vendors.

    from orders.pricing.engine import price_cart, CartLine, Context, policy_from_json
    priced = price_cart(policy, Context(channel="website", at=now, store="HCM-Q1"), [CartLine("SKU-1", 2)])
"""

from .evaluate import (
    Applied,
    CartLine,
    CodeOutcome,
    LineDiscount,
    PricedCart,
    PricedLine,
    UnknownSkus,
    delivery_fee,
    out_of_scope,
    price_cart,
    unit_prices,
)
from .money import cumulative_share, percent_of, prorate
from .policy import (
    Budget,
    CodeGrant,
    Context,
    Delivery,
    FeeRule,
    Kind,
    Policy,
    PriceList,
    Promotion,
    Target,
    policy_from_json,
    policy_to_json,
    promotion_from_json,
    promotion_to_json,
)

__all__ = [
    "Applied", "Budget", "CartLine", "CodeGrant", "CodeOutcome", "Context", "Delivery", "FeeRule", "Kind",
    "LineDiscount", "Policy", "PriceList", "PricedCart", "PricedLine", "Promotion", "Target", "UnknownSkus",
    "cumulative_share", "delivery_fee", "out_of_scope", "percent_of", "policy_from_json", "policy_to_json",
    "price_cart", "promotion_from_json", "promotion_to_json", "prorate", "unit_prices",
]
