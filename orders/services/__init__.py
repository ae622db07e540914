"""Every write of the orders app, by topic: quotes (checkout promises), placement, plans (applying a routed plan:
fulfillments, reservations, pickup codes, the routing decision), fulfilment (the state machine and the order status
that follows it), cancel, reroute (short picks and staff re-routes), waves, and store_events (reconciling online
commitments with what a store event took: holds told, fulfillments re-routed, pickups offered a change). cart.py
reads the input they share.

Stock moves only through inventory.services, one reservation reference per fulfillment (`fulfillment:<id>`):
reserved at placement, committed when goods leave the store (handed to the courier, collected), released on cancel,
not-collected or re-route. Locks are always taken in one order: orders (by pk), then their fulfillments (by pk), then
stock rows (inventory.services, by pk), so two actions on the same orders cannot deadlock. Events go to the outbox in
the same transaction.

The way down from a placement: placement -> cart (products) -> routing_input.load_candidates (candidate stores,
through orders.fast_paths) -> promises (the router picks the stores and the window) -> plans (rows, reservations).
"""

from orders.services.cancel import cancel_order
from orders.services.cart import Cart, load_cart
from orders.services.fulfilment import EVENTS, allowed_transitions, release_uncollected_pickups, transition_fulfillment
from orders.services.placement import PlacedFulfillment, PlacedOrder, PlacedStore, place_order
from orders.services.plans import PlannedOrder, PlannedShipment
from orders.services.quotes import purge_expired_promises, quote_promise, requote
from orders.services.reroute import RerouteResult, report_short_pick, reroute_order, reroute_refusal
from orders.services.store_events import (
    Reconciled,
    accept_change_offer,
    expire_change_offers,
    reconcile_taken,
    takeable,
)
from orders.services.waves import WaveResult, route_wave

__all__ = [
    "EVENTS", "Cart", "PlacedFulfillment", "PlacedOrder", "PlacedStore", "PlannedOrder", "PlannedShipment",
    "Reconciled", "RerouteResult", "WaveResult", "accept_change_offer", "allowed_transitions", "cancel_order",
    "expire_change_offers", "load_cart", "place_order", "purge_expired_promises", "quote_promise", "reconcile_taken",
    "release_uncollected_pickups", "report_short_pick", "requote", "reroute_order", "reroute_refusal", "route_wave",
    "takeable", "transition_fulfillment",
]
