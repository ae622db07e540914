"""POS errors. Each has a stable code; o2o.api_errors turns a raised one into the JSON error format, and the sales
sync reports a receipt's error code as its `reason`."""

from o2o.domain_errors import Conflict, DomainError, InvalidInput, NotFound


class BatchTooLarge(DomainError):
    code = "batch_too_large"
    status = 413
    default_message = "Too many receipts (or too many bytes) in one sync call."


class ReceiptIdReused(DomainError):
    """The same receipt (refund, count, goods receipt, transfer) id was sent before with other content."""

    code = "receipt_id_reused"
    status = 422
    default_message = "This id was already used with different content."


class ReceiptNotFound(NotFound):
    code = "receipt_not_found"
    default_message = "No receipt with this id at this store."


class ReceiptVoided(Conflict):
    code = "receipt_voided"
    default_message = "The receipt has been voided."


class ReceiptAlreadyRefunded(Conflict):
    code = "receipt_refunded"
    default_message = "Goods of this receipt were refunded; a void is no longer possible (refund the rest)."


class RefundExceedsSale(Conflict):
    code = "refund_exceeds_sale"
    default_message = "More units refunded than were sold and not yet refunded."


class TenderMismatch(InvalidInput):
    code = "tender_mismatch"
    default_message = "The tenders do not add up to the receipt total."


class MemberRequired(InvalidInput):
    code = "member_required"
    default_message = "A points tender needs the member's phone number."


class CountNotFound(NotFound):
    code = "count_not_found"
    default_message = "No stock count with this id at this store."


class TransferNotFound(NotFound):
    code = "transfer_not_found"
    default_message = "No transfer with this id for this store."


class TransferAlreadyReceived(Conflict):
    code = "transfer_already_received"
    default_message = "This transfer was already received with other quantities."


class PickupNotFound(NotFound):
    code = "pickup_not_found"
    default_message = "No pickup with this code at this store."
