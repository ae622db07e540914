# Issue #18: a till sale is never refused for stock, so the per-store switch that allowed selling beyond the ledger is
# gone from the model: every store records the sale in full (units beyond the ledger become the row's counted
# shortfall).
#
# The column stays in PostgreSQL for this release, with a database default: processes still running the previous
# code during a rolling deploy select and insert it, and would fail the moment it disappeared. A later release drops
# it (expand, then contract). The SQLite demo has no rolling deploys: the column goes at once.

from django.db import migrations


class DropUnlessPostgreSQL(migrations.RemoveField):
    """RemoveField on every database but PostgreSQL, where the column is kept with DEFAULT false (see above)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = from_state.apps.get_model(app_label, self.model_name)
        table = schema_editor.quote_name(model._meta.db_table)
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN {schema_editor.quote_name(self.name)} SET DEFAULT false")

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        table = schema_editor.quote_name(model._meta.db_table)
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN {schema_editor.quote_name(self.name)} DROP DEFAULT")


class Migration(migrations.Migration):

    dependencies = [
        ('inventory', '0008_shop_floor_truth'),
    ]

    operations = [
        DropUnlessPostgreSQL(
            model_name='store',
            name='allow_negative_availability',
        ),
    ]
