# The shop floor's checks were added NOT VALID by 0008 (enforced for new and changed rows at once, with a lock that
# lasts a catalogue update): here, in a transaction of its own, PostgreSQL checks the existing rows under a lock that
# lets the tills and the website go on reading and writing (o2o/migration_operations.py says why).

from django.db import migrations

from o2o.migration_operations import ValidateCheck


class Migration(migrations.Migration):

    dependencies = [
        ('inventory', '0009_store_tills_never_refused'),
    ]

    operations = [
        ValidateCheck(model_name='stock', name='stock_shortfall_nonnegative'),
        ValidateCheck(model_name='stock', name='stock_shortfall_needs_count'),
        ValidateCheck(model_name='stockmovement', name='movement_changes_something'),
    ]
