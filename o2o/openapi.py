"""The OpenAPI schema states every error the API can answer with, in the one error format of the design notes.

Views document the errors particular to them (a 409 when stock moved, a 422 for an unknown SKU); the ones every
operation shares come from the same code paths for all of them (parsing, key authentication, permissions, the
exception handler), so they are added here once instead of in each view."""

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error: a stable machine-readable code, a message for people, and details.",
    "properties": {
        "code": {"type": "string", "example": "insufficient_stock"},
        "message": {"type": "string"},
        "details": {"type": "object", "additionalProperties": True},
    },
    "required": ["code", "message", "details"],
}

# Answers any operation can give: bad input or an unparsable body, a missing or wrong key, a key of the wrong kind
# (a store key on a website endpoint), a method or media type the operation does not take.
SHARED = {
    "400": "Invalid input (code `invalid` or `malformed_request`, details per field)",
    "401": "Missing, unknown or revoked API key",
    "403": "The key may not use this operation or object",
    "404": "No such object (in the path, or named in the body) for this caller",
    "405": "Method not allowed",
    "406": "Not acceptable (the API answers JSON)",
    "415": "Unsupported media type (send JSON)",
}
WITH_BODY = {"413": "The request body is too large"}


def document_error_responses(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for item in result.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            wanted = dict(SHARED)
            if "requestBody" in operation:
                wanted.update(WITH_BODY)
            for status, description in wanted.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if str(status).startswith("4") and "content" not in response:
                    response["content"] = error
    return result
