"""Prepared statements for the hot paths' raw SQL on PostgreSQL.

Django's psycopg 3 backend binds parameters on the client, so PostgreSQL parses and plans every statement anew. For
the few statements that run on every availability request (or every loyalty posting) the planning costs more than
the execution: the availability stock query is planned in ~1 ms and executed in ~0.2 ms on the 10 M-row chain. A
server-side-binding cursor with `prepare=True` makes psycopg PREPARE each statement once per connection and EXECUTE
it afterwards; after five executions PostgreSQL keeps a generic plan.

Off (O2O_PREPARED_STATEMENTS=0) behind a pooler that cannot keep prepared statements across transactions (PgBouncer
before 1.21 in transaction mode).

Per database alias: the primary's connection and the replica's (o2o/replicas.py) each prepare their own statements.
"""

import time

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from o2o import fast_paths


def enabled(using: str = DEFAULT_DB_ALIAS) -> bool:
    return fast_paths.use_sql(using) and bool(getattr(settings, "O2O_PREPARED_STATEMENTS", True))


_PREPARE_ONLY_WHEN_ASKED = 2**31 - 1

# A select-list item for the first statement of a hot path: from then on this session's prepared statements use
# their generic plan. PostgreSQL otherwise keeps re-planning a prepared statement whose generic plan it estimates
# dearer than the custom ones (it cannot know that the `= ANY(...)` arrays hold a handful of items), which is the
# planning a prepared statement is meant to save. Only explicitly prepared statements are affected: Django's own
# cursors bind on the client and never prepare. Set at no extra round trip; a rolled-back transaction takes it
# along, and the next request sets it again.
GENERIC_PLANS = "set_config('plan_cache_mode', 'force_generic_plan', false)"


class PreparedCursor:
    """A server-side-binding psycopg cursor on Django's connection (same transaction, same connection as the ORM)
    whose statements are prepared once per connection. Database errors come out as Django's, as from Django's own
    cursors. `keep_open`: one cursor reused for every statement on this connection (connection_cursor()), so a hot
    path that runs a few statements per transaction does not build a cursor each time. `using`: the database
    alias whose connection it runs on."""

    def __init__(self, *, keep_open: bool = False, using: str = DEFAULT_DB_ALIAS):
        import psycopg

        connection = self._connection = connections[using]
        connection.ensure_connection()
        raw = connection.connection
        # Django opens its connections with prepare_threshold=None, and psycopg then ignores prepare=True. A threshold
        # never reached keeps psycopg from preparing anything it is not asked to (Django's own cursors bind on the
        # client and never prepare either way).
        if raw.prepare_threshold is None:
            raw.prepare_threshold = _PREPARE_ONLY_WHEN_ASKED
        self._cursor = psycopg.Cursor(raw)
        self._keep_open = keep_open

    def usable_on(self, raw) -> bool:
        return self._cursor.connection is raw and not self._cursor.closed

    @property
    def description(self):
        return self._cursor.description

    def execute(self, sql: str, params) -> None:
        connection = self._connection
        if not connection.queries_logged:
            with connection.wrap_database_errors:
                self._cursor.execute(sql, params, prepare=True)
            return
        # Logged like Django's debug cursor, so query counts (tests, DEBUG pages) still see these statements.
        started = time.monotonic()
        try:
            with connection.wrap_database_errors:
                self._cursor.execute(sql, params, prepare=True)
        finally:
            connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})

    def fetchone(self):
        return self._cursor.fetchone()

    def fetchall(self):
        return self._cursor.fetchall()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if not self._keep_open:
            self._cursor.close()


def cursor(using: str = DEFAULT_DB_ALIAS):
    """A prepared-statement cursor on PostgreSQL (unless turned off), else Django's own cursor, on the connection of
    database `using`. On PostgreSQL it is the connection's kept-open one (connection_cursor()): read each
    statement's rows (fetchone/fetchall) before running the next one, as every caller does."""
    return connection_cursor(using) if enabled(using) else connections[using].cursor()


def connection_cursor(using: str = DEFAULT_DB_ALIAS) -> PreparedCursor:
    """The one kept-open prepared-statement cursor of Django's current connection to database `using` (PostgreSQL
    only; callers check enabled() or their own setting first), made anew when Django has reconnected."""
    connection = connections[using]
    connection.ensure_connection()
    kept = getattr(connection, "_o2o_prepared_cursor", None)
    if kept is None or not kept.usable_on(connection.connection):
        kept = connection._o2o_prepared_cursor = PreparedCursor(keep_open=True, using=using)
    return kept
