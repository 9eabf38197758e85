# Ranking's queue: one row per ingest batch holding the facts the fold needs (contact, time,
# channel, conversation, way) as parallel arrays, instead of one (contact, activity) pair per row
# that the fold joined back to the activity table. Pairs queued at the upgrade are converted:
# their activities read once here (erased ones and those that do not count dropped, as the old
# fold did), so nothing queued is lost.
from django.db import migrations, models

import streams.models

CHUNK = 5000


def queued_pairs_converted(apps, schema_editor):
    from streams.ranking import interaction_way  # the rule itself, not a copy of it

    RankTouch = apps.get_model("streams", "RankTouch")
    RankBatch = apps.get_model("streams", "RankBatch")
    Activity = apps.get_model("streams", "Activity")
    for workspace_id in RankTouch.objects.values_list("workspace_id", flat=True).distinct():
        pairs = list(RankTouch.objects.filter(workspace_id=workspace_id).order_by("activity_id", "contact_id")
                     .values_list("activity_id", "contact_id"))
        for i in range(0, len(pairs), CHUNK):
            part = pairs[i : i + CHUNK]
            activities = Activity.objects.filter(pk__in={a for a, _ in part}, erased_at=None).in_bulk()
            facts = []
            for activity_id, contact_id in part:
                a = activities.get(activity_id)
                way = a and interaction_way(verb=a.verb, direction=a.direction, automated=a.automated,
                                            event_type=str((a.extra or {}).get("type", "")))
                if way:
                    facts.append((contact_id, a.occurred_at, a.channel, a.thread_key or "", way))
            if facts:
                RankBatch.objects.create(workspace_id=workspace_id, interactions=len(facts), **dict(zip(
                    ("contact_ids", "occurred_ats", "channels", "conversations", "ways"),
                    (list(column) for column in zip(*facts, strict=True)), strict=True)))


def arrays_stored_uncompressed(apps, schema_editor):
    """PostgreSQL: a batch's arrays go out of line uncompressed. The queue lives minutes;
    compressing them was two thirds of ingest's insert (5.0 ms a 1,500-element batch, 1.9 ms
    without)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("streams", "RankBatch")._meta.db_table)
    for column in ("contact_ids", "occurred_ats", "channels", "conversations", "ways"):
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTERNAL")


class Migration(migrations.Migration):
    dependencies = [("streams", "0024_identity_log_statement_trigger")]

    operations = [
        migrations.CreateModel(
            name="RankBatch",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("workspace_id", models.BigIntegerField()),
                ("interactions", models.PositiveIntegerField()),
                ("contact_ids", streams.models.QueuedArray(element="bigint")),
                ("occurred_ats", streams.models.QueuedArray(element="timestamptz")),
                ("channels", streams.models.QueuedArray(element="text")),
                ("conversations", streams.models.QueuedArray(element="text")),
                ("ways", streams.models.QueuedArray(element="text")),
            ],
        ),
        migrations.RunPython(arrays_stored_uncompressed, migrations.RunPython.noop),
        migrations.RunPython(queued_pairs_converted, migrations.RunPython.noop),
        migrations.DeleteModel(name="RankTouch"),
    ]
