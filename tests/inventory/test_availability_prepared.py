"""The availability endpoint's statements are prepared once per connection and run on their generic plan; with
O2O_PREPARED_STATEMENTS off nothing is prepared; answers are the same either way."""

import pytest
from django.db import connection

from tests.inventory.test_availability_api import BEN_THANH, chain  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

CART = {**BEN_THANH, "lines": [{"sku": "AO-THUN-TRANG-M", "qty": 2}, {"sku": "AO-DAI-DO-M", "qty": 1}]}


def _prepared_statements() -> list[tuple[str, int, int]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        return cursor.fetchall()


def _deallocate() -> None:
    connection.ensure_connection()
    connection.connection.execute("DEALLOCATE ALL")
    connection.connection._prepared.clear()  # psycopg's own record of what it prepared on this connection


def test_statements_are_prepared_once_and_use_their_generic_plan(api, chain):  # noqa: F811
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are a PostgreSQL feature; the demo's SQLite binds as usual")
    _deallocate()
    answers = [api.post("/api/v1/availability/", CART, format="json").json() for _ in range(8)]
    assert all(a == answers[0] for a in answers)
    ours = [(sql, generic, custom) for sql, generic, custom in _prepared_statements() if "inventory_store" in sql
            or "inventory_stock" in sql]
    assert len(ours) == 2  # the stores query and the stock query, each prepared once for eight requests
    for sql, generic, custom in ours:
        # At most the very first run is planned for its values: it is the one that switches the session to generic plans.
        assert custom <= 1 and generic >= 7, (sql[:80], generic, custom)
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == "force_generic_plan"


def test_switched_off_nothing_is_prepared_and_the_answer_is_the_same(api, chain, settings):  # noqa: F811
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are a PostgreSQL feature")
    prepared_answer = api.post("/api/v1/availability/", CART, format="json").json()
    _deallocate()
    settings.O2O_PREPARED_STATEMENTS = False
    plain_answer = api.post("/api/v1/availability/", CART, format="json").json()
    assert plain_answer == prepared_answer
    assert _prepared_statements() == []
