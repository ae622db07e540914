"""Why a return is refused. Each error has a stable code (o2o.api_errors renders it as JSON) and details that say
which line and which rule."""

from o2o.domain_errors import Conflict, DomainError, NotFound


class PurchaseNotFound(NotFound):
    code = "purchase_not_found"
    default_message = "No order or till receipt with this number."


class ReturnNotFound(NotFound):
    code = "return_not_found"
    default_message = "No such return."


class NotHandedOver(Conflict):
    """Only units actually handed to the customer (delivered or collected) can come back."""

    code = "not_handed_over"
    default_message = "These goods were not delivered or collected, so they cannot be returned."


class ReturnExceedsPurchase(Conflict):
    code = "return_exceeds_purchase"
    default_message = "More units than were bought and not yet returned."


class ReturnWindowClosed(DomainError):
    code = "return_window_closed"
    status = 422
    default_message = "The return window for these goods has closed."


class NotReturnable(DomainError):
    code = "not_returnable"
    status = 422
    default_message = "These goods cannot be returned (policy)."


class OtherStoreReceiptRefused(DomainError):
    code = "other_store_receipt_refused"
    status = 422
    default_message = "This store does not accept receipts of other stores."


class StoreNotAcceptingReturns(DomainError):
    code = "store_not_accepting_returns"
    status = 422
    default_message = "This store does not accept returns."


class ReceiptVoided(Conflict):
    code = "receipt_voided"
    default_message = "The receipt was voided; there is nothing to return."


class NoReceivingStore(DomainError):
    code = "no_receiving_store"
    status = 422
    default_message = "No store that accepts returns is within reach of the collection address."


class ReturnNotOpen(Conflict):
    code = "return_not_open"
    default_message = "The return has already been received or cancelled."
