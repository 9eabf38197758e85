# Ranking's queue holds its times as microseconds since the epoch (bigint[]) instead of
# timestamptz[]: ingest already computed them as integers and had the server turn each back into
# a timestamp and re-sort the array (a third of the queue insert's server time); the fold now
# derives the UTC day by integer division and makes a timestamp per conversation-day only.
# Batches queued at the upgrade are converted in place, so nothing queued is lost.
import datetime as dt

from django.db import migrations

import streams.models

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _converted(apps, schema_editor, *, to_micros: bool):
    RankBatch = apps.get_model("streams", "RankBatch")
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(RankBatch._meta.db_table)
        # ALTER … TYPE … USING takes no subquery: the per-element conversion is a function.
        if to_micros:
            kind, element = "bigint", "(extract(epoch FROM t) * 1000000)::bigint"
            source = "timestamptz"
        else:
            kind, element = "timestamptz", "timestamptz 'epoch' + t * interval '1 microsecond'"
            source = "bigint"
        schema_editor.execute(
            f"CREATE FUNCTION pg_temp.mesh_queued_times({source}[]) RETURNS {kind}[] LANGUAGE sql IMMUTABLE AS $$ "
            f"SELECT COALESCE(array_agg({element} ORDER BY n), '{{}}') FROM unnest($1) WITH ORDINALITY AS u(t, n) $$")
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN occurred_micros TYPE {kind}[] "
                              "USING pg_temp.mesh_queued_times(occurred_micros)")
        # A new type takes its default storage: the queue's arrays stay uncompressed (0025).
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN occurred_micros SET STORAGE EXTERNAL")
        schema_editor.execute("DROP FUNCTION pg_temp.mesh_queued_times")
        return
    for batch in RankBatch.objects.all():  # SQLite: JSON lists, ISO text or integers
        if to_micros:
            batch.occurred_micros = [(dt.datetime.fromisoformat(t) - EPOCH) // dt.timedelta(microseconds=1)
                                     for t in batch.occurred_micros]
        else:
            batch.occurred_micros = [(EPOCH + dt.timedelta(microseconds=t)).isoformat() for t in batch.occurred_micros]
        batch.save(update_fields=["occurred_micros"])


def queued_times_to_micros(apps, schema_editor):
    _converted(apps, schema_editor, to_micros=True)


def queued_micros_to_times(apps, schema_editor):
    _converted(apps, schema_editor, to_micros=False)


class Migration(migrations.Migration):
    dependencies = [("streams", "0025_rank_queue_batches")]

    operations = [
        migrations.RenameField(model_name="rankbatch", old_name="occurred_ats", new_name="occurred_micros"),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AlterField(
                model_name="rankbatch", name="occurred_micros",
                field=streams.models.QueuedArray(element="bigint"))],
            database_operations=[migrations.RunPython(queued_times_to_micros, queued_micros_to_times)],
        ),
    ]
