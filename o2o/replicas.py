"""Reads that may go to a PostgreSQL streaming replica (O2O_REPLICA_DATABASE_URL, the "replica" database alias).

Only the website's lag-tolerant reads use it, by asking for it explicitly: cart availability, network ATP, stores
near a point (inventory/api/views.py). Promises, placement, holds, POS, loyalty, returns and the admin never do:
they write, lock, or must see the stock as of the primary (a promise is what placement re-checks under lock).

No database router: a router would send every unhinted ORM read to the replica, including the reads of services
that then write what they read. Here a selector reads the alias it is given, and the primary is the default.
"""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections

REPLICA_ALIAS = "replica"
# After the replica failed, this process reads the primary for this long before trying it again: a replica that
# times out (a host that drops packets) would otherwise add the 2 s connect timeout to every request.
RETRY_AFTER_SECONDS = 10.0

_down_until = 0.0  # time.monotonic() until which this process leaves the replica alone
# How far behind the replica is, asked at most this often per process (one small query).
LAG_CHECK_EVERY_SECONDS = 5.0
_lag_checked_at = float("-inf")
_lagging = False

# Zero when the replica has replayed all it has received (an idle primary sends nothing, so the time of the last
# replayed transaction says nothing then); otherwise the age of the last replayed transaction. Not a replica at all
# (pg_is_in_recovery() false): no lag.
LAG_SQL = (
    "SELECT CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END"
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


def configured() -> bool:
    return REPLICA_ALIAS in connections.settings


def read_alias() -> str:
    """The alias a lag-tolerant read should use: the replica when one is configured, except inside a transaction on
    the primary, where a read must see that transaction's own writes and locks."""
    if not configured() or connections[DEFAULT_DB_ALIAS].in_atomic_block or time.monotonic() < _down_until:
        return DEFAULT_DB_ALIAS
    return REPLICA_ALIAS


def replica_lag_seconds(alias: str = REPLICA_ALIAS) -> float:
    """How many seconds of the primary's changes the replica has not replayed yet (see LAG_SQL)."""
    with connections[alias].cursor() as cursor:
        cursor.execute(LAG_SQL)
        return float(cursor.fetchone()[0])


def _too_far_behind() -> bool:
    """Whether the replica is more than O2O_REPLICA_MAX_LAG_SECONDS behind, asked every LAG_CHECK_EVERY_SECONDS: a
    replica stuck on a long query or a broken link would otherwise show the website stock that is long gone."""
    global _lag_checked_at, _lagging
    limit = float(getattr(settings, "O2O_REPLICA_MAX_LAG_SECONDS", 5))
    if limit <= 0:
        return False
    now = time.monotonic()
    if now - _lag_checked_at >= LAG_CHECK_EVERY_SECONDS:
        _lag_checked_at = now
        lag = replica_lag_seconds()
        if (lag > limit) != _lagging:
            logger.warning("replica %s: %.1f s behind (limit %.0f s)", "lagging, reading from the primary" if lag > limit
                           else "caught up, reading from it again", lag, limit)
        _lagging = lag > limit
    return _lagging


def read(query: Callable[[str], T]) -> T:
    """query(alias) on read_alias(), or on the primary when the replica cannot be reached: a replica that is down
    (or restarting, or refusing connections) costs a warning in the log, never the request, and this process then
    reads the primary for RETRY_AFTER_SECONDS; so does a replica more than O2O_REPLICA_MAX_LAG_SECONDS behind, until
    it catches up. The query must only read,
    since it may run twice: a connection to the replica lost in the middle of it reads again from the primary."""
    alias = read_alias()
    if alias == DEFAULT_DB_ALIAS:
        return query(alias)
    replica = connections[alias]
    try:
        # A persistent connection the replica dropped since the last request is found out (and closed) here, once
        # per request, as Django would before its first query; then a fresh connection is opened if needed.
        replica.close_if_health_check_failed()
        replica.ensure_connection()
        if _too_far_behind():
            return query(DEFAULT_DB_ALIAS)
        return query(alias)
    except OperationalError as error:
        global _down_until
        _down_until = time.monotonic() + RETRY_AFTER_SECONDS
        logger.warning("replica unavailable, reading from the primary for %.0f s: %s", RETRY_AFTER_SECONDS, error)
        return query(DEFAULT_DB_ALIAS)
