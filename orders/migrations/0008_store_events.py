# Store events (issue #18): a routing decision's cause (the event's ledger reference; with a database default, so a
# process still running the code from before can insert decisions during a deploy), the store_event kind, and the
# change offered to a pickup customer whose units a store event took.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0007_routing_decision_lz4'),
    ]

    operations = [
        migrations.AddField(
            model_name='routingdecision',
            name='cause',
            field=models.CharField(blank=True, db_default='', default='', max_length=120),
        ),
        migrations.AlterField(
            model_name='routingdecision',
            name='kind',
            field=models.CharField(choices=[('initial', 'At placement'), ('reroute', 'Re-route after a short pick'), ('wave', 'Wave re-optimisation'), ('manual', 'Re-routed by staff'), ('store_event', 'Re-routed after a store event')], max_length=16),
        ),
        migrations.CreateModel(
            name='ChangeOffer',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('cause', models.CharField(help_text="The store event's ledger reference, e.g. 'pos:HCM-Q1-001:R-0042'.", max_length=120)),
                ('event_kind', models.CharField(blank=True, help_text='sale, count, damage or transfer.', max_length=16)),
                ('missing', models.JSONField(default=list, help_text='[{sku, qty}]: the units the event took from this pickup.')),
                ('options', models.JSONField(help_text='[{id, kind, store, store_name, distance_km, ready_by, lines, missing}]')),
                ('status', models.CharField(choices=[('open', 'Open'), ('accepted', 'Accepted'), ('expired', 'Expired unanswered (kept what is left)'), ('superseded', 'Superseded by a later offer'), ('withdrawn', 'Withdrawn: the order was cancelled')], default='open', max_length=16)),
                ('chosen', models.CharField(blank=True, help_text='The option applied: move, keep or cancel.', max_length=16)),
                ('decided_by', models.CharField(blank=True, max_length=150)),
                ('decided_at', models.DateTimeField(blank=True, null=True)),
                ('expires_at', models.DateTimeField()),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('fulfillment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='change_offers', to='orders.fulfillment')),
                ('order', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='change_offers', to='orders.order')),
            ],
            options={
                'verbose_name': 'change offer',
                'verbose_name_plural': 'change offers',
                'ordering': ['id'],
                'indexes': [models.Index(condition=models.Q(('status', 'open')), fields=['expires_at'], name='change_offer_open_idx')],
                'constraints': [models.CheckConstraint(condition=models.Q(('status__in', ['open', 'accepted', 'expired', 'superseded', 'withdrawn'])), name='change_offer_status_valid'), models.UniqueConstraint(condition=models.Q(('status', 'open')), fields=('fulfillment',), name='change_offer_one_open_per_fulfillment')],
            },
        ),
    ]
