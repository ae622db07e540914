"""Idempotent POSTs: the same key and body returns the first answer and writes nothing; another body is a 422.

Storing the answer is a fast path beside its ORM twin (o2o/fast_paths.py says why there are two): on PostgreSQL a
prepared UPDATE that casts the JSON text to jsonb, elsewhere (the SQLite demo, or `orm_twins()`) a queryset update.
Both store the same row: tests/platform/test_fast_paths.py runs both on PostgreSQL. The record's INSERT ... ON
CONFLICT DO NOTHING RETURNING is the same portable statement on both databases (SQLite 3.35+), not a twin.
"""

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import JSONField, Value
from django.utils import timezone

from o2o import prepared
from o2o.domain_errors import IdempotencyKeyReused, InvalidInput
from o2o.fast_paths import use_sql
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
        store_answer = _store_answer_sql if use_sql() else _store_answer_orm
        store_answer(row[0], status, text)
        return status, json.loads(text), False


def _store_answer_sql(record_id: int, status: int, text: str) -> None:
    """The answer as JSON text, cast to jsonb by PostgreSQL (a prepared statement: every idempotent POST runs it)."""
    with prepared.cursor() as cursor:
        cursor.execute(
            f"UPDATE {IdempotencyRecord._meta.db_table} SET response_status = %s, response_body = %s::jsonb "
            "WHERE id = %s",
            [status, text, record_id],
        )


def _store_answer_orm(record_id: int, status: int, text: str) -> None:
    """The same through the ORM (any database): the JSONField encodes the parsed text again, the same JSON value. A
    body of None is JSON null, as the SQL twin stores it, not SQL NULL (what the JSONField makes of a bare None)."""
    body = json.loads(text)
    IdempotencyRecord.objects.filter(pk=record_id).update(
        response_status=status, response_body=Value(None, JSONField()) if body is None else body
    )
