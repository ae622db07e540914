"""Loyalty errors: each has a stable code and maps to one HTTP status through o2o.api_errors."""

from o2o.domain_errors import Conflict, DomainError, InvalidInput, NotFound


class InvalidPhone(InvalidInput):
    code = "invalid_phone"
    default_message = "Not a valid phone number."


class InvalidAmount(InvalidInput):
    code = "invalid_amount"
    default_message = "Amounts and points must be positive whole numbers."


class UnknownMember(NotFound):
    code = "unknown_member"
    default_message = "No loyalty member with this phone number."


class RedemptionNotFound(NotFound):
    code = "redemption_not_found"
    default_message = "No redemption with this id."


class PostingNotFound(NotFound):
    code = "posting_not_found"
    default_message = "No posting matches this reference."


class InsufficientPoints(Conflict):
    code = "insufficient_points"
    default_message = "The member does not have enough points available."


class RedemptionNotHeld(Conflict):
    """Capture or void of a hold that is no longer held (captured, voided or expired)."""

    code = "redemption_not_held"
    default_message = "The redemption is no longer held."


class NothingToReverse(Conflict):
    code = "nothing_to_reverse"
    default_message = "The posting has already been reversed in full."


class InvalidMerge(Conflict):
    code = "invalid_merge"
    default_message = "These members cannot be merged."


class IdempotencyKeyConflict(DomainError):
    """The same posting idempotency key was used for a different action or member."""

    code = "idempotency_key_reused"
    status = 422
    default_message = "This idempotency key was already used for a different posting."


class RedemptionMemberMismatch(DomainError):
    """A hold used as a tender for someone else: the order's member is not the hold's."""

    code = "redemption_member_mismatch"
    status = 422
    default_message = "This redemption belongs to another member."


class PointsExceedTotal(DomainError):
    """Points offered as a tender are worth more than what they would pay for."""

    code = "points_exceed_total"
    status = 422
    default_message = "The points are worth more than the total they would pay."
