"""Relationship strength and keep in touch (streams.ranking): the per-conversation-day
aggregate ingest keeps, each contact's strength with its parts, the queue of contacts whose
strength is out of date, cadences (per contact and per workspace tier) and the "going cold"
feed's tokens."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("streams", "0015_places")]

    operations = [
        migrations.CreateModel(
            name='KeepInTouch',
            fields=[
                ('contact', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='keep_in_touch', serialize=False, to='streams.contact')),
                ('every_days', models.PositiveIntegerField()),
                ('at_most_days', models.PositiveIntegerField()),
            ],
        ),
        migrations.CreateModel(
            name='ColdFeedToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('token_hash', models.CharField(max_length=64, unique=True)),
                ('token_prefix', models.CharField(blank=True, max_length=12)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='streams.workspace')),
            ],
        ),
        migrations.CreateModel(
            name='RankPending',
            fields=[
                ('contact_id', models.BigIntegerField(primary_key=True, serialize=False)),
                ('workspace_id', models.BigIntegerField()),
            ],
            options={
                'indexes': [models.Index(fields=['workspace_id'], name='rankpending_ws_idx')],
            },
        ),
        migrations.CreateModel(
            name='ContactStrength',
            fields=[
                ('contact', models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='strength', serialize=False, to='streams.contact')),
                ('score', models.PositiveSmallIntegerField(default=0)),
                ('tier', models.CharField(max_length=8)),
                ('conversations', models.PositiveIntegerField(default=0)),
                ('last_30', models.PositiveIntegerField(default=0)),
                ('last_90', models.PositiveIntegerField(default=0)),
                ('last_365', models.PositiveIntegerField(default=0)),
                ('in_90', models.PositiveIntegerField(default=0)),
                ('out_90', models.PositiveIntegerField(default=0)),
                ('in_365', models.PositiveIntegerField(default=0)),
                ('out_365', models.PositiveIntegerField(default=0)),
                ('channels_90', models.JSONField(blank=True, default=list)),
                ('channels_365', models.PositiveSmallIntegerField(default=0)),
                ('first_touch_at', models.DateTimeField(blank=True, null=True)),
                ('last_touch_at', models.DateTimeField(blank=True, null=True)),
                ('computed_on', models.DateField()),
                ('workspace', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='streams.workspace')),
            ],
            options={
                'indexes': [models.Index(fields=['workspace', '-score', '-contact'], name='strength_rank_idx'), models.Index(fields=['workspace', 'computed_on'], name='strength_day_idx')],
            },
        ),
        migrations.CreateModel(
            name='ConversationDay',
            fields=[
                ('pk', models.CompositePrimaryKey('contact', 'day', 'channel', 'conversation', blank=True, editable=False, primary_key=True, serialize=False)),
                ('day', models.DateField()),
                ('channel', models.CharField(max_length=16)),
                ('conversation', models.CharField(blank=True, max_length=255)),
                ('inbound', models.PositiveIntegerField(default=0)),
                ('outbound', models.PositiveIntegerField(default=0)),
                ('mutual', models.PositiveIntegerField(default=0)),
                ('first_at', models.DateTimeField()),
                ('last_at', models.DateTimeField()),
                ('contact', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='streams.contact')),
            ],
        ),
        migrations.CreateModel(
            name='KeepInTouchDefault',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('tier', models.CharField(max_length=8)),
                ('every_days', models.PositiveIntegerField(blank=True, null=True)),
                ('at_most_days', models.PositiveIntegerField(blank=True, null=True)),
                ('workspace', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='streams.workspace')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('workspace', 'tier'), name='keepintouchdefault_unique')],
            },
        ),
    ]
