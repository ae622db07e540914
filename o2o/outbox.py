"""The transactional outbox: events are written inside the transaction that makes the change, then delivered to
the sales channel's webhook by a Celery task, signed, in order per aggregate, at least once.

Dead letters (N failed attempts) stop blocking their aggregate, so later events go on; replaying one (the admin's
action) sends it again, late; the envelope's `sequence` lets the receiver see that.

Writing several events at once (emit_many) is a fast path beside its ORM twin (o2o/fast_paths.py says why there are
two), chosen by o2o.fast_paths.use_sql(); tests/platform/test_fast_paths.py runs both on PostgreSQL.

Delivery claims the oldest pending event of each aggregate with FOR UPDATE SKIP LOCKED, so several workers can run
side by side without sending one aggregate's events out of order; a worker killed mid-delivery leaves its row
pending (its transaction never commits), and the event goes out again later. Receivers deduplicate by event id.
"""

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from o2o import prepared, signing
from o2o.domain_errors import Conflict
from o2o.fast_paths import use_sql
from o2o.models import OutboxEvent, SalesChannel

logger = logging.getLogger(__name__)


def emit(*, topic: str, aggregate: str, payload: dict[str, Any], channel: SalesChannel | None = None) -> OutboxEvent:
    """Record an event. Call it inside the transaction that makes the change, so both commit or neither does."""
    body = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))
    event = OutboxEvent.objects.create(
        event_id=uuid.uuid4(), topic=topic, aggregate=aggregate[:120], channel=channel, payload=body
    )
    transaction.on_commit(kick_delivery)
    return event


def emit_many(events: list[dict[str, Any]]) -> list[OutboxEvent]:
    """Record several events in one INSERT (same contract as emit: inside the transaction that makes the change).
    Each item has the keyword arguments of emit: topic, aggregate, payload and optionally channel.

    The INSERT is written out rather than built by bulk_create: it runs on every order placement and loyalty
    posting, and Django's insert compiler cost more CPU than the statement itself. The row holds what
    OutboxEvent.objects.create would write (status pending, no attempts, created_at now)."""
    if not events:
        return []
    now = timezone.now()
    rows = [
        OutboxEvent(
            event_id=uuid.uuid4(),
            topic=e["topic"],
            aggregate=e["aggregate"][:120],
            channel=e.get("channel"),
            payload=json.dumps(e["payload"], cls=DjangoJSONEncoder),
            status=OutboxEvent.Status.PENDING,
            attempts=0,
            last_error="",
            created_at=now,
        )
        for e in events
    ]
    created = _insert_events_sql(rows, now) if use_sql() else _insert_events_orm(rows)
    transaction.on_commit(kick_delivery)
    return created


def _insert_events_orm(rows: list[OutboxEvent]) -> list[OutboxEvent]:
    """emit_many's ORM twin (the SQLite demo, and `orm_twins()`): the ORM's insert is fine there."""
    for r in rows:
        r.payload = json.loads(r.payload)
    return OutboxEvent.objects.bulk_create(rows)


def _insert_events_sql(rows: list[OutboxEvent], now: datetime) -> list[OutboxEvent]:
    """emit_many's PostgreSQL twin: one prepared INSERT ... RETURNING id, the payloads cast from their JSON text."""
    params: list[Any] = []
    for r in rows:
        params += [r.event_id, r.topic, r.aggregate, r.channel_id, r.payload, r.status, now]
    with prepared.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {OutboxEvent._meta.db_table} "
            "(event_id, topic, aggregate, channel_id, payload, status, attempts, last_error, created_at) VALUES "
            + ", ".join(["(%s::uuid, %s, %s, %s::bigint, %s::jsonb, %s, 0, '', %s::timestamptz)"] * len(rows))
            + " RETURNING id",
            params,
        )
        ids = [row[0] for row in cursor.fetchall()]
    for r, pk in zip(rows, ids, strict=True):
        r.pk = pk
        r.payload = json.loads(r.payload)
        r._state.adding = False
    return rows


_last_kick = 0.0  # time.monotonic() of this process's last kick


def kick_delivery() -> None:  # public: loyalty.fast_paths writes outbox rows itself and kicks after them
    """Ask a worker to deliver now rather than at the next beat. Best effort: if the broker is down, the periodic
    task still delivers, so a change never fails because of it.

    Throttled per process: at most one kick every O2O_OUTBOX_KICK_INTERVAL_SECONDS (default 1 s; 0 = every
    commit). Publishing to the broker costs several milliseconds, and one delivery round sends every due event, so
    under load one kick a second is enough; an event committed just after a kick goes out with the next kick from
    this or another process, or at the latest with the periodic beat."""
    global _last_kick
    if not getattr(settings, "O2O_OUTBOX_KICK", True):
        return
    interval = float(getattr(settings, "O2O_OUTBOX_KICK_INTERVAL_SECONDS", 1.0))
    now = time.monotonic()
    if interval > 0 and now - _last_kick < interval:
        return
    _last_kick = now
    try:
        from o2o.tasks import deliver_outbox

        deliver_outbox.apply_async(retry=False)
    except Exception as exc:  # noqa: BLE001 - the broker being away must not undo a committed change
        logger.warning("could not queue outbox delivery now (the beat will): %s", exc)


def envelope(event: OutboxEvent) -> bytes:
    """The exact bytes sent (and signed) for an event."""
    body = {
        "id": str(event.event_id),
        # Increases with every event written; within an aggregate it is the order of the changes. A replayed dead
        # letter arrives after the events that passed it: receivers keep the highest sequence they applied.
        "sequence": event.pk,
        "topic": event.topic,
        "aggregate": event.aggregate,
        "created_at": event.created_at,
        "data": event.payload,
    }
    return json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":")).encode()


def backoff(attempts: int) -> timedelta:
    """Exponential back-off: 5 s, 10 s, 20 s ... capped at an hour."""
    return timedelta(seconds=min(3600, settings.O2O_OUTBOX_BASE_DELAY_SECONDS * 2 ** max(0, attempts - 1)))


@dataclass
class DeliveryRound:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0


def _due_heads(now: datetime, limit: int) -> list[OutboxEvent]:
    table = OutboxEvent._meta.db_table
    # The head of each aggregate's pending queue, if due; rows another worker holds are skipped, not waited for.
    # A locking clause, not a fast path with an ORM twin: it is what keeps two workers from sending the same event,
    # so it follows what the database can do (PostgreSQL), not o2o.fast_paths.use_sql(): a worker running the ORM
    # twins (orm_twins(), the parity tests) on PostgreSQL needs the row lock as much as any other. The statement is
    # the same portable SQL either way. (SQLite, the demo's embedded database, has one writer at a time and no row
    # locks: no locking clause there.)
    features = connection.features
    skip_locked = features.has_select_for_update_skip_locked and features.has_select_for_update_of
    lock = "FOR UPDATE OF e SKIP LOCKED" if skip_locked else ""
    return list(
        OutboxEvent.objects.raw(
            f"""
            SELECT e.* FROM {table} e
            WHERE e.status = 'pending' AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= %s)
              AND NOT EXISTS (SELECT 1 FROM {table} p
                              WHERE p.aggregate = e.aggregate AND p.status = 'pending' AND p.id < e.id)
            ORDER BY e.id LIMIT %s
            {lock}
            """,
            [now, limit],
        )
    )


def deliver_due_events(*, limit: int = 100, session: requests.Session | None = None) -> DeliveryRound:
    """One delivery round. Each event is sent in its own short transaction holding its row lock."""
    result = DeliveryRound()
    http = session or requests.Session()
    for _ in range(limit):
        with transaction.atomic():
            heads = _due_heads(timezone.now(), 1)
            if not heads:
                break
            outcome = _deliver_one(heads[0], http)
        setattr(result, outcome, getattr(result, outcome) + 1)
    return result


def _deliver_one(event: OutboxEvent, http: requests.Session) -> str:
    channel = event.channel
    now = timezone.now()
    if channel is None or not channel.webhook_url:
        event.status = OutboxEvent.Status.SKIPPED
        event.last_error = "no webhook configured for this channel"
        event.save(update_fields=["status", "last_error"])
        return "skipped"
    body = envelope(event)
    headers = {
        "Content-Type": "application/json",
        "O2O-Event-Id": str(event.event_id),
        "O2O-Event-Topic": event.topic,
        signing.HEADER: signing.sign(channel.webhook_secret, body),
    }
    event.attempts += 1
    try:
        response = http.post(channel.webhook_url, data=body, headers=headers, timeout=settings.O2O_OUTBOX_TIMEOUT_SECONDS)
        ok = 200 <= response.status_code < 300
        error = "" if ok else f"HTTP {response.status_code}: {response.text[:200]}"
    except requests.RequestException as exc:
        ok, error = False, f"{type(exc).__name__}: {exc}"[:500]
    if ok:
        event.status = OutboxEvent.Status.DELIVERED
        event.delivered_at = now
        event.last_error = ""
        outcome = "delivered"
    elif event.attempts >= settings.O2O_OUTBOX_MAX_ATTEMPTS:
        event.status = OutboxEvent.Status.DEAD
        event.last_error = error
        outcome = "dead"
    else:
        event.next_attempt_at = now + backoff(event.attempts)
        event.last_error = error
        outcome = "failed"
    event.save(update_fields=["status", "attempts", "next_attempt_at", "last_error", "delivered_at"])
    return outcome


@transaction.atomic
def replay_dead_events(*, event_ids: list[int]) -> int:
    """Put dead-lettered events back in the queue (the admin's replay action)."""
    events = OutboxEvent.objects.select_for_update().filter(pk__in=event_ids)
    if any(e.status != OutboxEvent.Status.DEAD for e in events):
        raise Conflict("Only dead-lettered events can be replayed.", details={"event_ids": event_ids})
    count = OutboxEvent.objects.filter(pk__in=event_ids).update(
        status=OutboxEvent.Status.PENDING, attempts=0, next_attempt_at=None
    )
    transaction.on_commit(kick_delivery)
    return count
