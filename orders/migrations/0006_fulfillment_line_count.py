# Fulfillment.line_count: the size of a fulfillment's pick list, so that a store's slot load is a sum read from the
# queue index (which now carries it) rather than a count over every open fulfillment's lines.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("inventory", "0006_verbose_names"),
        ("orders", "0005_verbose_names"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="fulfillment",
            name="fulfillment_store_queue_idx",
        ),
        migrations.AddField(
            model_name="fulfillment",
            name="line_count",
            field=models.PositiveSmallIntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.RunSQL(
            "UPDATE orders_fulfillment SET line_count = (SELECT count(*) FROM orders_fulfillmentline"
            " WHERE orders_fulfillmentline.fulfillment_id = orders_fulfillment.id)",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AddIndex(
            model_name="fulfillment",
            index=models.Index(
                fields=["store", "status", "promised_by"], include=("line_count",), name="fulfillment_store_queue_idx"
            ),
        ),
    ]
