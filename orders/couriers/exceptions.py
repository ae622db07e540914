"""Domain errors of the couriers subpackage (codes are stable; o2o.api_errors renders them)."""

from o2o.domain_errors import Conflict, DomainError, InvalidInput, NotFound


class UnknownProvider(NotFound):
    code = "unknown_provider"
    default_message = "No such courier provider."


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    status = 413
    default_message = "The request body is too large."


class MalformedPayload(InvalidInput):
    code = "malformed_payload"
    default_message = "The body is not a JSON object."


class InvalidCourierEvent(InvalidInput):
    code = "invalid_courier_event"
    default_message = "The courier event lacks a field we need."


class NotDispatchable(Conflict):
    code = "not_dispatchable"
    default_message = "Only packed delivery fulfillments without an active courier can be dispatched."


class ProviderError(DomainError):
    """The provider refused or could not be reached (outbound calls)."""

    code = "courier_provider_error"
    status = 502
    default_message = "The courier provider did not accept the request."
