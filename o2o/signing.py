"""The signature scheme of the design notes, for courier webhooks in and events out.

Header `O2O-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]` where v1 = HMAC-SHA256(secret, "<t>.<raw body>").
Several v1 values may appear while a secret is rotated; a timestamp more than 300 s from now is refused.
"""

import hashlib
import hmac
import time

from o2o.domain_errors import DomainError

HEADER = "O2O-Signature"
TOLERANCE_SECONDS = 300


class SignatureError(DomainError):
    code = "invalid_signature"
    status = 401
    default_message = "The request signature is missing or invalid."


def compute(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The header value for `body`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={compute(secret, timestamp, body)}"


def verify(header: str | None, body: bytes, secrets: list[str], *, now: float | None = None) -> int:
    """Check a signature header over the raw body before anything is parsed. Returns the signed timestamp."""
    if not header:
        raise SignatureError("Missing O2O-Signature header.", details={"reason": "missing"})
    timestamp = None
    candidates = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("Malformed O2O-Signature header.", details={"reason": "malformed"})
    now = time.time() if now is None else now
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError("Signature timestamp too far from now.", details={"reason": "stale_timestamp"})
    for secret in secrets:
        expected = compute(secret, timestamp, body)
        # Compare every candidate in constant time; no early exit on the first mismatch of characters.
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return timestamp
    raise SignatureError(details={"reason": "mismatch"})
