"""Idempotent POSTs: the same key and body returns the first answer and writes nothing; another body is a 422."""

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from o2o import prepared
from o2o.domain_errors import IdempotencyKeyReused, InvalidInput
from o2o.models import IdempotencyRecord

MAX_KEY_LENGTH = 255


def request_fingerprint(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_key(key: str | None) -> str:
    if not key:
        raise InvalidInput("This operation needs an Idempotency-Key header.", details={"header": "Idempotency-Key"})
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput("Idempotency-Key must be printable and at most 255 characters.")
    return key


def run_once(
    *, scope: str, key: str | None, payload: Any, action: Callable[[], tuple[int, Any]]
) -> tuple[int, Any, bool]:
    """Run `action` once per (scope, key). Returns (status, body, replayed).

    The record is inserted before the action, inside the action's transaction: a concurrent duplicate blocks on
    the unique index until the first commits, then sees its answer. If the action raises, nothing is kept, so a
    client may retry a refused request with the same key.
    """
    key = validate_key(key)
    fingerprint = request_fingerprint(payload)
    table = IdempotencyRecord._meta.db_table
    with transaction.atomic():
        # ON CONFLICT DO NOTHING instead of a savepoint around a plain INSERT: a concurrent duplicate still waits on
        # the unique index until the first transaction ends, then inserts nothing (committed) or inserts (rolled back).
        with prepared.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (scope, key, request_hash, created_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (scope, key) DO NOTHING RETURNING id",
                [scope, key, fingerprint, timezone.now()],
            )
            row = cursor.fetchone()
        if row is None:
            first = IdempotencyRecord.objects.get(scope=scope, key=key)
            if first.request_hash != fingerprint:
                raise IdempotencyKeyReused(details={"idempotency_key": key})
            return first.response_status, first.response_body, True
        status, body = action()
        text = json.dumps(body, default=str)
        cast = "::jsonb" if connection.vendor == "postgresql" else ""
        with prepared.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET response_status = %s, response_body = %s{cast} WHERE id = %s", [status, text, row[0]]
            )
        return status, json.loads(text), False
