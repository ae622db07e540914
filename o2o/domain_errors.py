"""The base of every domain exception. Each app's exceptions.py subclasses it; one handler maps them to HTTP."""

from typing import Any


class DomainError(Exception):
    """A business rule said no. `code` is stable and machine-readable; `status` is the HTTP status it maps to."""

    code: str = "domain_error"
    status: int = 422
    default_message: str = "The request breaks a business rule."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class NotFound(DomainError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class Conflict(DomainError):
    code = "conflict"
    status = 409
    default_message = "The request conflicts with the current state."


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    status = 422
    default_message = "This Idempotency-Key was already used with a different request body."


class InvalidInput(DomainError):
    code = "invalid"
    status = 400
    default_message = "Invalid input."
