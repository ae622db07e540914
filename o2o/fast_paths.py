"""Which twin of a fast path runs: the PostgreSQL statement or its ORM equivalent.

Each app keeps its hand-written SQL in one module (`inventory/fast_paths.py`, `loyalty/fast_paths.py`,
`orders/fast_paths.py`, and this module's neighbours in `o2o/`), every statement beside the ORM code that does the
same on any database. The SQLite demo runs the ORM twins; PostgreSQL runs the statements. Both must give the same
answer and write the same rows: the parity tests (`tests/*/test_fast_paths.py`) run each pair on PostgreSQL on the
same inputs, forcing the ORM twin with `orm_twins()`.
"""

import contextlib
import threading
from collections.abc import Iterator

from django.db import DEFAULT_DB_ALIAS, connections

_forced = threading.local()


def use_sql(using: str = DEFAULT_DB_ALIAS) -> bool:
    """True when the PostgreSQL statement of a fast path should run on this database connection."""
    return connections[using].vendor == "postgresql" and not getattr(_forced, "orm", False)


@contextlib.contextmanager
def orm_twins() -> Iterator[None]:
    """Run the ORM twin of every fast path inside the block (this thread only), even on PostgreSQL: for the parity
    tests that compare the two on the same inputs."""
    before = getattr(_forced, "orm", False)
    _forced.orm = True
    try:
        yield
    finally:
        _forced.orm = before
