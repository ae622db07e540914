"""Domain errors of the orders app. Each carries a stable code; o2o.api_errors turns them into JSON."""

from o2o.domain_errors import Conflict, DomainError, InvalidInput, NotFound


class OrderNotFound(NotFound):
    code = "order_not_found"
    default_message = "No such order."


class FulfillmentNotFound(NotFound):
    code = "fulfillment_not_found"
    default_message = "No such fulfillment."


class PromiseNotFound(NotFound):
    code = "promise_not_found"
    default_message = "No such promise."


class PromiseExpired(Conflict):
    code = "promise_expired"
    default_message = "The promise has expired; ask for a new one."


class PromiseMismatch(DomainError):
    code = "promise_mismatch"
    status = 422
    default_message = "The order does not match the promise (cart, method, destination or option)."


class InvalidTransition(Conflict):
    code = "invalid_transition"
    default_message = "This fulfillment cannot move to that state."


class OrderNotCancellable(Conflict):
    code = "order_not_cancellable"
    default_message = "Goods have already left the store; the order cannot be cancelled."


class PickupNotOffered(DomainError):
    code = "pickup_not_offered"
    status = 422
    default_message = "This store does not offer pickup."


class OutOfDeliveryArea(DomainError):
    code = "out_of_delivery_area"
    status = 422
    default_message = "No store delivers to this destination."


class UnknownPickupStore(DomainError):
    code = "unknown_store"
    status = 422
    default_message = "Unknown or inactive pickup store."


class InvalidShortPick(InvalidInput):
    code = "invalid_short_pick"
    default_message = "Short pick quantities must be between 0 and the quantity on the pick list."


class InvalidPlan(Conflict):
    code = "invalid_plan"
    default_message = "The router's plan breaks a stock or capacity limit; it was not applied."


class OrderNotReroutable(Conflict):
    code = "order_not_reroutable"
    default_message = "Only an open order whose every fulfillment is still assigned (not picking) can be re-routed."


class PickupNotReroutable(Conflict):
    code = "pickup_not_reroutable"
    default_message = "A pickup order stays at the store the customer chose; cancel it instead of re-routing it."


class RerouteReasonRequired(InvalidInput):
    code = "reroute_reason_required"
    default_message = "Say why the order is re-routed."


class RerouteUnserved(Conflict):
    code = "reroute_unserved"
    default_message = "No store can serve this order now; nothing was changed."


class ChangeOfferNotFound(NotFound):
    code = "change_offer_not_found"
    default_message = "No such change offer for this order."


class ChangeOfferNotOpen(Conflict):
    code = "change_offer_not_open"
    default_message = "This change offer is no longer open (answered, expired or replaced by a later one)."


class UnknownChangeOption(DomainError):
    code = "unknown_change_option"
    status = 422
    default_message = "Choose one of the change offer's options."


class ChangeOptionUnavailable(Conflict):
    code = "change_option_unavailable"
    default_message = "The store of this option can no longer serve the whole order; choose another option."


# One phone normaliser (loyalty.phones) and so one refusal for a bad number, in every channel.
from loyalty.exceptions import InvalidPhone  # noqa: E402,F401
