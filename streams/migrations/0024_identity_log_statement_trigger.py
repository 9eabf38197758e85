"""Ingest speed (issue 14): the sync log's identity update trigger becomes statement-level.

Migration 0013's row-level trigger planned its "activities of this identity" statement afresh on
every call (plpgsql keeps custom plans for a parameter whose generic plan looks dearer): ~0.5 ms a
renamed identity, 50 ms of a 1,000-activity batch in the benchmark, where ~50 identities per
batch take a newer display. One statement over the transition tables compares old and new rows
and logs the identities and their activities once per statement. No column list (PostgreSQL allows
none with transition tables): every identity ``UPDATE`` captures its rows, which are narrow, and
only rows whose ``contact_id``, ``display`` or ``is_self`` changed are logged, as before. SQLite
keeps its row triggers (``streams.sync``).
"""

from django.db import migrations

CHANGE = "streams_change"
COLUMNS = "(xid, workspace_id, kind, object_id, device_id, op, at)"
XID = "pg_current_xact_id()::text::bigint"
OFF = "IF current_setting('mesh.sync_log', true) = 'off' THEN RETURN NULL; END IF;"
CHANGED = ("o.contact_id IS DISTINCT FROM n.contact_id OR o.display IS DISTINCT FROM n.display "
           "OR o.is_self IS DISTINCT FROM n.is_self")

STATEMENT_LEVEL = [
    "DROP TRIGGER IF EXISTS mesh_sync_identity_update ON streams_identity",
    f"""CREATE OR REPLACE FUNCTION mesh_sync_identity_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {OFF}
        INSERT INTO {CHANGE} {COLUMNS}
        SELECT {XID}, n.workspace_id, 'i', n.id, NULL,
               CASE WHEN n.contact_id IS DISTINCT FROM o.contact_id THEN 'm' ELSE 'r' END, now()
        FROM mesh_new n JOIN mesh_old o ON o.id = n.id WHERE {CHANGED} ORDER BY n.id;
        IF FOUND THEN
            -- Index probes per changed identity and per activity (OFFSET 0: no pull-up): the transition
            -- tables' join is estimated at many rows, which made the plain join a sequential scan
            -- of all participants and activities.
            INSERT INTO {CHANGE} {COLUMNS}
            SELECT {XID}, a.workspace_id, 'a', a.id, a.device_id, 'u', now()
            FROM (SELECT DISTINCT p.activity_id
                  FROM (SELECT n.id FROM mesh_new n JOIN mesh_old o ON o.id = n.id WHERE {CHANGED} OFFSET 0) c
                  CROSS JOIN LATERAL (SELECT p.activity_id FROM streams_participant p
                                      WHERE p.identity_id = c.id OFFSET 0) p) x
            CROSS JOIN LATERAL (SELECT a.workspace_id, a.id, a.device_id FROM streams_activity a
                                WHERE a.id = x.activity_id OFFSET 0) a
            ORDER BY a.id;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER mesh_sync_identity_update AFTER UPDATE ON streams_identity
       REFERENCING OLD TABLE AS mesh_old NEW TABLE AS mesh_new
       FOR EACH STATEMENT EXECUTE FUNCTION mesh_sync_identity_update()""",
]

# Migration 0013's row-level trigger, for the way back.
ROW_LEVEL = [
    "DROP TRIGGER IF EXISTS mesh_sync_identity_update ON streams_identity",
    f"""CREATE OR REPLACE FUNCTION mesh_sync_identity_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {OFF}
        INSERT INTO {CHANGE} {COLUMNS} VALUES ({XID}, NEW.workspace_id, 'i', NEW.id, NULL,
            CASE WHEN NEW.contact_id IS DISTINCT FROM OLD.contact_id THEN 'm' ELSE 'r' END, now());
        INSERT INTO {CHANGE} {COLUMNS}
        SELECT {XID}, a.workspace_id, 'a', a.id, a.device_id, 'u', now() FROM streams_activity a
        WHERE a.id IN (SELECT p.activity_id FROM streams_participant p WHERE p.identity_id = NEW.id) ORDER BY a.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER mesh_sync_identity_update AFTER UPDATE OF contact_id, display, is_self ON streams_identity
       FOR EACH ROW WHEN (OLD.contact_id IS DISTINCT FROM NEW.contact_id OR OLD.display IS DISTINCT FROM NEW.display
                          OR OLD.is_self IS DISTINCT FROM NEW.is_self)
       EXECUTE FUNCTION mesh_sync_identity_update()""",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql, params=None)
    return run


class Migration(migrations.Migration):
    dependencies = [("streams", "0023_contact_lists")]
    operations = [migrations.RunPython(_run(STATEMENT_LEVEL), _run(ROW_LEVEL))]
