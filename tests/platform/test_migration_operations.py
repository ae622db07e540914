"""The shop floor's checks on the busy stock tables are added without a long lock: NOT VALID in one migration,
validated in the next (o2o/migration_operations.py); on SQLite the ordinary way."""

import io

import pytest
from django.core.management import call_command
from django.db import connection

CHECKS = {
    "inventory_stock": ["stock_shortfall_nonnegative", "stock_shortfall_needs_count"],
    "inventory_stockmovement": ["movement_changes_something"],
}


def _sql(app: str, migration: str) -> str:
    out = io.StringIO()
    call_command("sqlmigrate", app, migration, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_checks_are_added_not_valid_then_validated_on_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("NOT VALID and VALIDATE CONSTRAINT are PostgreSQL's; SQLite adds the checks the ordinary way")
    added, validated = _sql("inventory", "0008"), _sql("inventory", "0010")
    for table, names in CHECKS.items():
        for name in names:
            assert any(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}"' in line and line.endswith("NOT VALID;")
                       for line in added.splitlines()), name
            assert f'ALTER TABLE "{table}" VALIDATE CONSTRAINT "{name}";' in validated, name
    with connection.cursor() as cursor:  # the test database was migrated through both: nothing left unchecked
        cursor.execute("SELECT conname FROM pg_constraint WHERE conname = ANY(%s) AND convalidated",
                       [[n for names in CHECKS.values() for n in names]])
        assert sorted(r[0] for r in cursor.fetchall()) == sorted(n for names in CHECKS.values() for n in names)


@pytest.mark.django_db
def test_the_checks_hold_for_new_rows_at_once():
    from django.db import IntegrityError, transaction

    from inventory.models import Stock
    from tests.factories import ProductFactory, StoreFactory

    row = Stock.objects.create(store=StoreFactory(), product=ProductFactory(), on_hand=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Stock.objects.filter(pk=row.pk).update(shortfall=1, needs_count=False)
