"""Schema changes that do not stop the shop: migration operations for tables the tills and the website write all day.

Adding a CHECK constraint makes PostgreSQL read the whole table under an ACCESS EXCLUSIVE lock: on this machine
1.2 s per constraint for 10 M stock rows (a 3,000-store chain has 60 M; the movement ledger many times that), and
every sale, reservation and read of the table waits for it. AddCheckNotValid adds the constraint NOT VALID instead
(enforced for every new and updated row at once; the lock lasts a catalogue update), and ValidateCheck, in a later
migration (each migration is its own transaction), checks the existing rows under SHARE UPDATE EXCLUSIVE, a lock that
lets reads and writes go on. Django's state is the one AddConstraint gives, so makemigrations sees no difference.
Other databases (the SQLite demo) add the constraint the ordinary way, and ValidateCheck does nothing there."""

from django.db import migrations


class AddCheckNotValid(migrations.AddConstraint):
    """AddConstraint for a CheckConstraint, added NOT VALID on PostgreSQL (see the module docstring)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            statement = self.constraint.create_sql(model, schema_editor)
            schema_editor.execute(f"{statement} NOT VALID")

    def describe(self) -> str:
        return f"{super().describe()} (NOT VALID on PostgreSQL; validated by a later migration)"


class ValidateCheck(migrations.operations.base.Operation):
    """VALIDATE CONSTRAINT `name` of `model_name`'s table on PostgreSQL: the existing rows checked without blocking
    reads or writes. No change to Django's state; nothing to do backwards or on other databases."""

    reversible = True
    reduces_to_sql = True

    def __init__(self, model_name: str, name: str) -> None:
        self.model_name = model_name
        self.name = name

    def state_forwards(self, app_label, state) -> None:
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            table = schema_editor.quote_name(model._meta.db_table)
            schema_editor.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {schema_editor.quote_name(self.name)}")

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        pass

    def deconstruct(self):
        return self.__class__.__name__, [], {"model_name": self.model_name, "name": self.name}

    def describe(self) -> str:
        return f"Validate constraint {self.name} on {self.model_name} (PostgreSQL)"

    @property
    def migration_name_fragment(self) -> str:
        return f"validate_{self.name.lower()}"
