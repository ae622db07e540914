"""PostgreSQL refuses any UPDATE or DELETE of postings and entries: the ledger is append-only.
(TRUNCATE, used by test teardown, is not affected.)"""

from django.db import migrations

TABLES = ("loyalty_posting", "loyalty_entry")

FUNCTION = """
CREATE OR REPLACE FUNCTION loyalty_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'loyalty ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION, params=None)
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION loyalty_append_only()"
        )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS loyalty_append_only()")


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
