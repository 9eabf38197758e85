# A deleted device's activities leave the replicas of the devices scope: the activity update
# trigger logs the device an activity had (its SET NULL update), not the none it has now.
from django.db import migrations


def _activity_update_log(device_id: str) -> str:
    """Migration 0013's activity update trigger function, logging ``device_id`` as the row's device."""
    return f"""CREATE OR REPLACE FUNCTION mesh_sync_activity_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF current_setting('mesh.sync_log', true) = 'off' THEN RETURN NULL; END IF;
        INSERT INTO streams_change (xid, workspace_id, kind, object_id, device_id, op, at)
        SELECT pg_current_xact_id()::text::bigint, n.workspace_id, 'a', n.id, {device_id},
               CASE WHEN n.erased_at IS NOT NULL AND o.erased_at IS NULL THEN 'e' ELSE 'u' END, now()
        FROM mesh_new n JOIN mesh_old o ON o.id = n.id WHERE n IS DISTINCT FROM o ORDER BY n.id;
        RETURN NULL;
    END $$"""


def log_the_device_an_activity_leaves(apps, schema_editor):
    """A deleted device's activities lose their device (SET NULL): their update is logged under
    the device they had, so the ``devices`` scope reads it and serves their tombstones (its
    replicas kept them before). SQLite's trigger is installed by streams.sync."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_activity_update_log("coalesce(n.device_id, o.device_id)"), params=None)


def log_the_new_device_only(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_activity_update_log("n.device_id"), params=None)


class Migration(migrations.Migration):
    dependencies = [("streams", "0020_ranking_ingest")]
    operations = [
        migrations.RunPython(log_the_device_an_activity_leaves, log_the_new_device_only),
    ]
