# The order checks of 0009 were added NOT VALID (enforced for new and changed rows at once); here, in a transaction
# of its own, PostgreSQL checks the existing orders without stopping the website (o2o/migration_operations.py).

from django.db import migrations

from o2o.migration_operations import ValidateCheck


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0009_pricing'),
    ]

    operations = [
        ValidateCheck(model_name='order', name='order_discount_within_subtotal'),
        ValidateCheck(model_name='order', name='order_total_is_goods_plus_fee'),
        ValidateCheck(model_name='orderline', name='order_line_discount_within_line'),
    ]
