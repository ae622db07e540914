"""Foreign keys to till receipts and their lines now name the pos app's models (same tables: state only)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('pos', '0001_took_over_from_inventory'),
        ('returns', '0002_verbose_names'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name='return',
                    name='receipt',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='returns', to='pos.tillreceipt'),
                ),
                migrations.AlterField(
                    model_name='returnedtillline',
                    name='till_line',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='pos.tillreceiptline'),
                ),
            ],
        ),
    ]
