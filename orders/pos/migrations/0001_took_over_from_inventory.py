"""The POS models move from the inventory app to this one without touching a row.

Until inventory's migration 0007 they were declared by the inventory app (label `inventory`, tables inventory_*).
This migration declares them here in Django's state only: the tables, their rows, indexes and foreign keys stay as
they are (each model names its old table in Meta.db_table). Their content types are relabelled, so the permissions
that groups and users already hold (pos.view_tillreceipt, formerly inventory.view_tillreceipt) stay attached.
inventory/0007 then forgets them in its state; returns/0003 points its foreign keys here.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


MOVED = ['storeapikey', 'tillreceipt', 'tillreceiptline', 'tillrefund', 'stockcount', 'stockcountline', 'goodsreceipt', 'stocktransfer', 'stocktransferline']


def relabel_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    ContentType.objects.using(db).filter(app_label="inventory", model__in=MOVED).update(app_label="pos")


def unlabel_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    ContentType.objects.using(db).filter(app_label="pos", model__in=MOVED).update(app_label="inventory")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('inventory', '0006_verbose_names'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='StockCount',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('count_id', models.CharField(max_length=64)),
                        ('content_hash', models.CharField(max_length=64)),
                        ('counted_at', models.DateTimeField()),
                        ('received_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('result', models.JSONField(default=dict)),
                        ('store', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='stock_counts', to='inventory.store')),
                    ],
                    options={
                        'verbose_name': 'stock count',
                        'verbose_name_plural': 'stock counts',
                        'db_table': 'inventory_stockcount',
                        'ordering': ['-id'],
                    },
                ),
                migrations.CreateModel(
                    name='StockCountLine',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('counted', models.PositiveIntegerField()),
                        ('ledger_as_of', models.BigIntegerField(help_text='Ledger on-hand as of counted_at (till sales by time of sale).')),
                        ('adjustment', models.BigIntegerField(help_text='counted - ledger_as_of, applied as a count movement.')),
                        ('count', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='lines', to='pos.stockcount')),
                        ('product', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='inventory.product')),
                    ],
                    options={
                        'db_table': 'inventory_stockcountline',
                        'ordering': ['id'],
                    },
                ),
                migrations.CreateModel(
                    name='StockTransfer',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('transfer_id', models.CharField(help_text="The sending till's id, unique per sending store.", max_length=64)),
                        ('content_hash', models.CharField(max_length=64)),
                        ('receive_hash', models.CharField(blank=True, max_length=64)),
                        ('status', models.CharField(choices=[('in_transit', 'In transit'), ('received', 'Received')], default='in_transit', max_length=16)),
                        ('shipped_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('received_at', models.DateTimeField(blank=True, null=True)),
                        ('note', models.CharField(blank=True, max_length=300)),
                        ('from_store', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='transfers_out', to='inventory.store')),
                        ('to_store', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='transfers_in', to='inventory.store')),
                    ],
                    options={
                        'verbose_name': 'stock transfer',
                        'verbose_name_plural': 'stock transfers',
                        'db_table': 'inventory_stocktransfer',
                        'ordering': ['-id'],
                    },
                ),
                migrations.CreateModel(
                    name='StockTransferLine',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('shipped_qty', models.PositiveIntegerField()),
                        ('received_qty', models.PositiveIntegerField(blank=True, null=True)),
                        ('product', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='inventory.product')),
                        ('transfer', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='lines', to='pos.stocktransfer')),
                    ],
                    options={
                        'db_table': 'inventory_stocktransferline',
                        'ordering': ['id'],
                    },
                ),
                migrations.CreateModel(
                    name='StoreApiKey',
                    fields=[
                        ('id', models.CharField(editable=False, max_length=150, primary_key=True, serialize=False, unique=True)),
                        ('prefix', models.CharField(editable=False, max_length=8, unique=True)),
                        ('hashed_key', models.CharField(editable=False, max_length=150)),
                        ('created', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('name', models.CharField(default=None, help_text='A free-form name for the API key. Need not be unique. 50 characters max.', max_length=50)),
                        ('revoked', models.BooleanField(blank=True, default=False, help_text='If the API key is revoked, clients cannot use it anymore. (This cannot be undone.)')),
                        ('expiry_date', models.DateTimeField(blank=True, help_text='Once API key expires, clients cannot use it anymore.', null=True, verbose_name='Expires')),
                        ('store', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_keys', to='inventory.store')),
                    ],
                    options={
                        'verbose_name': 'store (POS) API key',
                        'verbose_name_plural': 'store (POS) API keys',
                        'db_table': 'inventory_storeapikey',
                        'ordering': ('-created',),
                        'abstract': False,
                    },
                ),
                migrations.CreateModel(
                    name='TillReceipt',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('receipt_id', models.CharField(max_length=64)),
                        ('content_hash', models.CharField(max_length=64)),
                        ('status', models.CharField(choices=[('applied', 'Applied'), ('voided', 'Voided')], default='applied', max_length=16)),
                        ('sold_at', models.DateTimeField(help_text='Time of sale at the till (counts use it to place the sale in time).')),
                        ('received_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('till', models.CharField(blank=True, help_text='The name of the key that sent it.', max_length=150)),
                        ('total_vnd', models.BigIntegerField(default=0)),
                        ('money_vnd', models.BigIntegerField(default=0, help_text='Paid with cash, card and e-wallets.')),
                        ('points_redeemed', models.BigIntegerField(default=0)),
                        ('member_phone', models.CharField(blank=True, max_length=20)),
                        ('earn_posting_id', models.BigIntegerField(blank=True, null=True)),
                        ('redeem_posting_id', models.BigIntegerField(blank=True, null=True)),
                        ('tenders', models.JSONField(default=list)),
                        ('result', models.JSONField(default=dict, help_text='The first answer, given again to replays.')),
                        ('store', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='till_receipts', to='inventory.store')),
                    ],
                    options={
                        'verbose_name': 'till receipt',
                        'verbose_name_plural': 'till receipts',
                        'db_table': 'inventory_tillreceipt',
                        'ordering': ['-id'],
                    },
                ),
                migrations.CreateModel(
                    name='TillReceiptLine',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('qty', models.PositiveIntegerField()),
                        ('unit_price_vnd', models.PositiveBigIntegerField()),
                        ('discount_vnd', models.PositiveBigIntegerField(default=0)),
                        ('taken', models.PositiveIntegerField(default=0)),
                        ('shortfall', models.PositiveIntegerField(default=0)),
                        ('refunded_qty', models.PositiveIntegerField(default=0)),
                        ('late_for_count', models.ForeignKey(blank=True, help_text='A count that already saw this sale (it arrived after the count, with an earlier time of sale).', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='pos.stockcount')),
                        ('product', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='inventory.product')),
                        ('receipt', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='lines', to='pos.tillreceipt')),
                    ],
                    options={
                        'db_table': 'inventory_tillreceiptline',
                        'ordering': ['id'],
                    },
                ),
                migrations.CreateModel(
                    name='TillRefund',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('refund_id', models.CharField(max_length=64)),
                        ('kind', models.CharField(choices=[('void', 'Void'), ('refund', 'Refund')], max_length=8)),
                        ('content_hash', models.CharField(max_length=64)),
                        ('lines', models.JSONField(default=list, help_text='[{sku, qty, resellable}]')),
                        ('amount_vnd', models.BigIntegerField(default=0, help_text='The value of the goods voided or refunded.')),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('result', models.JSONField(default=dict)),
                        ('receipt', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='refunds', to='pos.tillreceipt')),
                        ('store', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='till_refunds', to='inventory.store')),
                    ],
                    options={
                        'db_table': 'inventory_tillrefund',
                        'ordering': ['id'],
                    },
                ),
                migrations.CreateModel(
                    name='GoodsReceipt',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('receipt_id', models.CharField(max_length=64)),
                        ('content_hash', models.CharField(max_length=64)),
                        ('source', models.CharField(blank=True, help_text='Supplier or distribution centre.', max_length=120)),
                        ('received_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('lines', models.JSONField(default=list, help_text='[{sku, qty}]')),
                        ('result', models.JSONField(default=dict)),
                        ('store', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='goods_receipts', to='inventory.store')),
                    ],
                    options={
                        'verbose_name': 'goods receipt',
                        'verbose_name_plural': 'goods receipts',
                        'db_table': 'inventory_goodsreceipt',
                        'ordering': ['-id'],
                        'constraints': [models.UniqueConstraint(fields=('store', 'receipt_id'), name='goods_receipt_unique_per_store')],
                    },
                ),
                migrations.AddConstraint(
                    model_name='stockcount',
                    constraint=models.UniqueConstraint(fields=('store', 'count_id'), name='stock_count_unique_per_store'),
                ),
                migrations.AddConstraint(
                    model_name='stockcountline',
                    constraint=models.UniqueConstraint(fields=('count', 'product'), name='stock_count_line_unique_product'),
                ),
                migrations.AddIndex(
                    model_name='stocktransfer',
                    index=models.Index(fields=['to_store', 'status'], name='stock_transfer_inbound'),
                ),
                migrations.AddConstraint(
                    model_name='stocktransfer',
                    constraint=models.UniqueConstraint(fields=('from_store', 'transfer_id'), name='stock_transfer_unique_per_sender'),
                ),
                migrations.AddConstraint(
                    model_name='stocktransfer',
                    constraint=models.CheckConstraint(condition=models.Q(('from_store', models.F('to_store')), _negated=True), name='stock_transfer_between_stores'),
                ),
                migrations.AddConstraint(
                    model_name='stocktransferline',
                    constraint=models.CheckConstraint(condition=models.Q(('shipped_qty__gt', 0)), name='stock_transfer_line_qty_positive'),
                ),
                migrations.AddConstraint(
                    model_name='stocktransferline',
                    constraint=models.UniqueConstraint(fields=('transfer', 'product'), name='stock_transfer_line_unique_product'),
                ),
                migrations.AddIndex(
                    model_name='tillreceipt',
                    index=models.Index(fields=['store', 'sold_at'], name='till_receipt_store_sold_at'),
                ),
                migrations.AddConstraint(
                    model_name='tillreceipt',
                    constraint=models.UniqueConstraint(fields=('store', 'receipt_id'), name='till_receipt_unique_per_store'),
                ),
                migrations.AddConstraint(
                    model_name='tillreceipt',
                    constraint=models.CheckConstraint(condition=models.Q(('total_vnd__gte', 0)), name='till_receipt_total_nonnegative'),
                ),
                migrations.AddConstraint(
                    model_name='tillreceipt',
                    constraint=models.CheckConstraint(condition=models.Q(('money_vnd__gte', 0)), name='till_receipt_money_nonnegative'),
                ),
                migrations.AddConstraint(
                    model_name='tillreceipt',
                    constraint=models.CheckConstraint(condition=models.Q(('points_redeemed__gte', 0)), name='till_receipt_points_nonnegative'),
                ),
                migrations.AddConstraint(
                    model_name='tillreceiptline',
                    constraint=models.CheckConstraint(condition=models.Q(('qty__gt', 0)), name='till_line_qty_positive'),
                ),
                migrations.AddConstraint(
                    model_name='tillreceiptline',
                    constraint=models.CheckConstraint(condition=models.Q(('taken__lte', models.F('qty'))), name='till_line_taken_within_qty'),
                ),
                migrations.AddConstraint(
                    model_name='tillreceiptline',
                    constraint=models.CheckConstraint(condition=models.Q(('refunded_qty__lte', models.F('qty'))), name='till_line_refunded_within_qty'),
                ),
                migrations.AddConstraint(
                    model_name='tillrefund',
                    constraint=models.UniqueConstraint(fields=('store', 'refund_id'), name='till_refund_unique_per_store'),
                ),
            ],
        ),
        migrations.RunPython(relabel_content_types, unlabel_content_types),
    ]
