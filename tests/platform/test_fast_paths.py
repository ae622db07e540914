"""o2o's fast paths and their ORM twins (o2o/idempotency.py: storing the answer; o2o/outbox.py: emit_many) give the
same answers and store the same rows on PostgreSQL.

Each scenario runs twice from the same database state, once as PostgreSQL runs it and once inside `orm_twins()`,
each time in a transaction rolled back at the end (so both runs see the same rows and may use the same keys). A
spy on every twin proves which one ran: a parity test whose two runs took the same twin would prove nothing. Rows
are compared column by column, ids replaced by their rank and the wall-clock timestamps the database or the clock
sets (created_at) checked separately.
"""

import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from o2o import idempotency, outbox
from o2o.domain_errors import Conflict, DomainError
from o2o.fast_paths import orm_twins, use_sql
from o2o.models import IdempotencyRecord, OutboxEvent, SalesChannel

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="both twins run on PostgreSQL only (SQLite: the ORM's)"),
]

TWINS = {idempotency: ("_store_answer",), outbox: ("_insert_events",)}


class _Rollback(Exception):
    pass


@pytest.fixture
def spy(monkeypatch):
    """Counts calls of every twin of TWINS by name ("_store_answer_sql", ...)."""
    calls: Counter = Counter()
    for module, names in TWINS.items():
        for name in names:
            for twin in (f"{name}_sql", f"{name}_orm"):
                real = getattr(module, twin)

                def wrapper(*args, _real=real, _twin=twin, **kwargs):
                    calls[_twin] += 1
                    return _real(*args, **kwargs)

                monkeypatch.setattr(module, twin, wrapper)
    return calls


def run_both(scenario, spy):
    """Run `scenario()` (returns what it observed) with the SQL twins, then with the ORM twins, each from the same
    database state and rolled back; assert that each run took its own twins. Returns (sql, orm)."""
    out = []
    for orm in (False, True):
        spy.clear()
        try:
            with transaction.atomic():
                if orm:
                    with orm_twins():
                        assert not use_sql()
                        result = scenario()
                else:
                    assert use_sql()
                    result = scenario()
                raise _Rollback
        except _Rollback:
            pass
        ran = {name for name, n in spy.items() if n}
        wanted, other = ("_orm", "_sql") if orm else ("_sql", "_orm")
        assert ran and all(name.endswith(wanted) for name in ran), (orm, dict(spy))
        assert not any(name.endswith(other) for name in ran)
        out.append((result, dict(spy)))
    (sql, sql_calls), (orm, orm_calls) = out
    assert {k[:-4]: v for k, v in sql_calls.items()} == {k[:-4]: v for k, v in orm_calls.items()}  # same calls
    return sql, orm


def _error(exc: Exception) -> tuple:
    return type(exc).__name__, getattr(exc, "code", None), getattr(exc, "details", None)


# --- idempotency: storing the first answer --------------------------------------------------------------------------

ANSWER = {
    "order": "WEB-1", "lines": [{"sku": "ÁO-1", "qty": 2}, {"sku": "QUẦN", "qty": 1}], "total_vnd": 450_000,
    "nested": {"empty": {}, "none": None, "flag": True, "ratio": 0.25}, "note": 'quotes " and \\ and \n',
    "at": datetime(2024, 1, 10, 3, 0, tzinfo=UTC), "price": Decimal("12.50"), "id": uuid.UUID(int=7),
}


def _records() -> list[dict]:
    """Every idempotency record as stored: the JSON as PostgreSQL holds it (its type and text), not only what the
    JSONField makes of it (a JSON null and an SQL NULL both read back as None)."""
    table = IdempotencyRecord._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"SELECT id, scope, key, request_hash, response_status, jsonb_typeof(response_body), "
                    f"response_body::text, created_at FROM {table} ORDER BY id")
        rows = cur.fetchall()
    by_orm = {r.pk: r.response_body for r in IdempotencyRecord.objects.all()}
    out = []
    for rank, (pk, scope, key, fingerprint, status, json_type, text, created_at) in enumerate(rows):
        assert created_at is not None
        out.append({"rank": rank, "scope": scope, "key": key, "request_hash": fingerprint, "status": status,
                    "json_type": json_type, "json": text, "body": by_orm[pk]})
    return out


def _idempotency_scenario() -> dict:
    actions: list[str] = []

    def answer(status, body):
        def action():
            actions.append(f"{status}")
            return status, body
        return action

    def refuse():
        actions.append("refused")
        raise Conflict("No.", details={"why": "test"})

    def call(scope, key, payload, action):
        try:
            return ("ok", *idempotency.run_once(scope=scope, key=key, payload=payload, action=action))
        except DomainError as exc:
            return ("error", *_error(exc))

    seen = [
        call("channel:1:orders.place", "k-1", {"cart": [1, 2]}, answer(201, ANSWER)),
        call("channel:1:orders.place", "k-1", {"cart": [1, 2]}, answer(201, {"other": 1})),  # replay: first answer
        call("channel:1:orders.place", "k-1", {"cart": [2, 1]}, answer(201, ANSWER)),  # same key, other body: 422
        call("channel:2:orders.place", "k-1", {"cart": [1, 2]}, answer(200, {"scope": 2})),  # another scope
        call("channel:1:orders.place", "k-2", {"cart": []}, refuse),  # refused: nothing kept ...
        call("channel:1:orders.place", "k-2", {"cart": []}, answer(409, {"error": "x"})),  # ... so a retry runs
        call("channel:1:orders.place", "k-2", {"cart": []}, answer(201, {})),  # and is replayed from then on
        call("channel:1:returns.open", "k-3", {"a": 1}, answer(204, None)),  # no body: a JSON null
        call("channel:1:returns.open", "k-3", {"a": 1}, answer(204, {"not": "this"})),
        call("channel:1:returns.open", "k-4", {"a": 2}, answer(200, ["a", 1, None])),
        call("channel:1:returns.open", "k-5", {"a": 3}, answer(200, "plain text")),
        call("channel:1:returns.open", "k-6", {"a": 4}, answer(200, {})),
        call("channel:1:returns.open", None, {"a": 5}, answer(200, {})),  # no key: refused before anything
    ]
    return {"answers": seen, "actions": actions, "rows": _records()}


def test_storing_the_first_answer_sql_and_orm_twins_store_the_same_rows(spy):
    sql, orm = run_both(_idempotency_scenario, spy)
    assert sql["answers"] == orm["answers"]
    assert sql["actions"] == orm["actions"] == ["201", "200", "refused", "409", "204", "200", "200", "200"]
    assert sql["rows"] == orm["rows"]
    # What the answers are, so that both twins agreeing on something wrong fails too.
    first = sql["answers"][0]
    assert first[:2] == ("ok", 201) and first[3] is False and first[2]["price"] == "12.50"
    assert sql["answers"][1] == (*first[:3], True)
    assert sql["answers"][2][:3] == ("error", "IdempotencyKeyReused", "idempotency_key_reused")
    assert [a[1:] for a in sql["answers"][7:9]] == [(204, None, False), (204, None, True)]
    assert [(r["key"], r["json_type"]) for r in sql["rows"]] == [
        ("k-1", "object"), ("k-1", "object"), ("k-2", "object"), ("k-3", "null"), ("k-4", "array"),
        ("k-5", "string"), ("k-6", "object"),
    ]


# --- outbox: several events in one insert ---------------------------------------------------------------------------

PAYLOAD = {"order": "WEB-1", "at": datetime(2024, 1, 10, 3, 0, tzinfo=UTC), "price": Decimal("1.10"),
           "id": uuid.UUID(int=9), "lines": [{"sku": "ÁO", "qty": 1}], "empty": {}, "none": None, "big": 2**62}


class _Response:
    def __init__(self, status_code: int):
        self.status_code, self.text = status_code, "nope" if status_code >= 300 else ""


class _Session:
    """A webhook that answers by URL: a 500 for ".../fail", else a 200. Records what it was sent."""

    def __init__(self):
        self.sent: list[tuple[str, dict]] = []

    def post(self, url, data, headers, timeout):
        body = json.loads(data)
        self.sent.append((url, body["topic"], body["aggregate"], body["data"]))
        return _Response(500 if url.endswith("/fail") else 200)


def _events() -> list[dict]:
    def normal(value):
        return None if value is None else "set"
    channels = {c.pk: c.code for c in SalesChannel.objects.all()}
    rows = list(OutboxEvent.objects.order_by("id").values())
    out = []
    for rank, row in enumerate(rows):
        assert isinstance(row.pop("event_id"), uuid.UUID) and row.pop("created_at") is not None
        row.pop("id")
        row["rank"], row["channel"] = rank, channels.get(row.pop("channel_id"))
        row["next_attempt_at"], row["delivered_at"] = normal(row["next_attempt_at"]), normal(row["delivered_at"])
        out.append(row)
    assert len({e.event_id for e in OutboxEvent.objects.all()}) == len(rows)
    return out


def _outbox_scenario() -> dict:
    web = SalesChannel.objects.create(code="pf-web", name="Web", webhook_url="http://127.0.0.1:9/ok",
                                      webhook_secret="s")
    app = SalesChannel.objects.create(code="pf-app", name="App", webhook_url="http://127.0.0.1:9/fail",
                                      webhook_secret="s")
    before = timezone.now()
    assert outbox.emit_many([]) == []
    created = outbox.emit_many([
        {"topic": "order.placed", "aggregate": "order:WEB-1", "payload": PAYLOAD, "channel": web},
        {"topic": "order.placed", "aggregate": "order:APP-1", "payload": {"n": 1}, "channel": app},
        {"topic": "order.routed", "aggregate": "order:WEB-1", "payload": {"n": 2}, "channel": web},
        {"topic": "stock.changed", "aggregate": "x" * 130, "payload": {}},  # no channel; aggregate cut to 120
    ])
    after = timezone.now()
    more = outbox.emit_many([{"topic": "order.routed", "aggregate": "order:APP-1", "payload": {"n": 3},
                              "channel": app}])
    stored = {e.pk: e for e in OutboxEvent.objects.all()}
    ranks = {pk: i for i, pk in enumerate(sorted(stored))}
    answers = []
    for e in [*created, *more]:
        kept = stored[e.pk]  # every returned event is the stored one, field for field
        assert not e._state.adding and e.event_id == kept.event_id and e.created_at == kept.created_at
        assert before <= kept.created_at and (e not in created or kept.created_at <= after)
        answers.append({"rank": ranks[e.pk], "topic": e.topic, "aggregate": e.aggregate, "channel": e.channel_id and
                        e.channel.code, "payload": e.payload, "status": e.status, "attempts": e.attempts,
                        "last_error": e.last_error, "same_payload": e.payload == kept.payload})
    written = _events()
    session = _Session()
    with CaptureQueriesContext(connection) as queries:
        rounds = [outbox.deliver_due_events(session=session) for _ in range(2)]
    heads = [q["sql"] for q in queries.captured_queries if "NOT EXISTS" in q["sql"]]
    assert heads and all("FOR UPDATE OF e SKIP LOCKED" in sql for sql in heads)  # the lock, whichever twin
    return {"answers": answers, "written": written, "rounds": [vars(r) for r in rounds], "sent": session.sent,
            "delivered": _events()}


def test_emit_many_sql_and_orm_twins_write_the_same_events(spy):
    sql, orm = run_both(_outbox_scenario, spy)
    assert sql["answers"] == orm["answers"]
    assert sql["written"] == orm["written"]
    assert sql["rounds"] == orm["rounds"] and sql["sent"] == orm["sent"]
    assert sql["delivered"] == orm["delivered"]
    # What was written, so that both twins agreeing on something wrong fails too.
    first = sql["written"][0]
    assert first["payload"] == {"order": "WEB-1", "at": "2024-01-10T03:00:00Z", "price": "1.10",
                                "id": str(uuid.UUID(int=9)), "lines": [{"sku": "ÁO", "qty": 1}], "empty": {},
                                "none": None, "big": 2**62}
    assert (first["status"], first["attempts"], first["last_error"], first["channel"]) == ("pending", 0, "", "pf-web")
    assert sql["written"][3]["aggregate"] == "x" * 120 and sql["written"][3]["channel"] is None
    assert [e["status"] for e in sql["delivered"]] == ["delivered", "pending", "delivered", "skipped", "pending"]
    assert all(a["same_payload"] for a in sql["answers"])
