"""The sync change log (issue 16 §1): ``Change`` rows written by triggers in the transaction of
every change to an activity, a contact or an identity, ``ChangeHorizon`` (how far the log was
pruned) and ``Device.sync_scope``.

Triggers rather than writes in the services, because the rows must be in the same transaction
as the change whoever makes it: the ORM, ingest's COPY and ``INSERT … SELECT``, merges,
reprocessing, raw SQL. PostgreSQL: statement-level triggers over transition tables (a COPY of
1,000 activities is one ``INSERT … SELECT``), row-level ``UPDATE OF`` triggers on contacts and
identities (PostgreSQL allows no transition table with a column list, and summary columns
updated by every ingest must not fire them). The SQL is frozen here, as a migration's must be;
docs/design.md "The sync change log" says why it is shaped so. SQLite's row triggers are
(re)installed after every ``migrate`` by ``streams.sync.sqlite_log_triggers``.
"""

import django.utils.timezone
from django.db import migrations, models

CHANGE = "streams_change"
COLUMNS = "(xid, workspace_id, kind, object_id, device_id, op, at)"
XID = "pg_current_xact_id()::text::bigint"
# ``SET LOCAL mesh.sync_log = 'off'`` silences the log for one transaction: dropping a whole
# workspace (benchmarks) would otherwise log a tombstone per row for devices that no longer exist.
OFF = "IF current_setting('mesh.sync_log', true) = 'off' THEN RETURN NULL; END IF;"

PG_INSTALL = [
    # Activities: one INSERT … SELECT per statement (COPY, INSERT … SELECT, ORM).
    f"""CREATE FUNCTION mesh_sync_activity_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {OFF}
        INSERT INTO {CHANGE} {COLUMNS}
        SELECT {XID}, n.workspace_id, 'a', n.id, n.device_id, 'c', now() FROM mesh_new n ORDER BY n.id;
        RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION mesh_sync_activity_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {OFF}
        INSERT INTO {CHANGE} {COLUMNS}
        SELECT {XID}, n.workspace_id, 'a', n.id, n.device_id,
               CASE WHEN n.erased_at IS NOT NULL AND o.erased_at IS NULL THEN 'e' ELSE 'u' END, now()
        FROM mesh_new n JOIN mesh_old o ON o.id = n.id WHERE n IS DISTINCT FROM o ORDER BY n.id;
        RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION mesh_sync_activity_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {OFF}
        INSERT INTO {CHANGE} {COLUMNS}
        SELECT {XID}, o.workspace_id, 'a', o.id, o.device_id, 'd', now() FROM mesh_old o ORDER BY o.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER mesh_sync_activity_insert AFTER INSERT ON streams_activity
       REFERENCING NEW TABLE AS mesh_new FOR EACH STATEMENT EXECUTE FUNCTION mesh_sync_activity_insert()""",
    """CREATE TRIGGER mesh_sync_activity_update AFTER UPDATE ON streams_activity
       REFERENCING OLD TABLE AS mesh_old NEW TABLE AS mesh_new
       FOR EACH STATEMENT EXECUTE FUNCTION mesh_sync_activity_update()""",
    """CREATE TRIGGER mesh_sync_activity_delete AFTER DELETE ON streams_activity
       REFERENCING OLD TABLE AS mesh_old FOR EACH STATEMENT EXECUTE FUNCTION mesh_sync_activity_delete()""",
    # Participants rewritten by reprocessing change what an activity shows (its people): the
    # delete always comes first, and ingest of a new activity never deletes.
    f"""CREATE FUNCTION mesh_sync_participant_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {OFF}
        INSERT INTO {CHANGE} {COLUMNS}
        SELECT {XID}, a.workspace_id, 'a', a.id, a.device_id, 'u', now()
        FROM streams_activity a WHERE a.id IN (SELECT activity_id FROM mesh_old) ORDER BY a.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER mesh_sync_participant_delete AFTER DELETE ON streams_participant
       REFERENCING OLD TABLE AS mesh_old FOR EACH STATEMENT EXECUTE FUNCTION mesh_sync_participant_delete()""",
    # Contacts and identities: created and deleted per statement ...
    *[
        sql
        for table, kind in (("streams_contact", "c"), ("streams_identity", "i"))
        for sql in (
            f"""CREATE FUNCTION mesh_sync_{table}_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
        {OFF}
                INSERT INTO {CHANGE} {COLUMNS}
                SELECT {XID}, n.workspace_id, '{kind}', n.id, NULL, 'c', now() FROM mesh_new n ORDER BY n.id;
                RETURN NULL;
            END $$""",
            f"""CREATE FUNCTION mesh_sync_{table}_delete() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
        {OFF}
                INSERT INTO {CHANGE} {COLUMNS}
                SELECT {XID}, o.workspace_id, '{kind}', o.id, NULL, 'd', now() FROM mesh_old o ORDER BY o.id;
                RETURN NULL;
            END $$""",
            f"""CREATE TRIGGER mesh_sync_{table}_insert AFTER INSERT ON {table}
               REFERENCING NEW TABLE AS mesh_new FOR EACH STATEMENT EXECUTE FUNCTION mesh_sync_{table}_insert()""",
            f"""CREATE TRIGGER mesh_sync_{table}_delete AFTER DELETE ON {table}
               REFERENCING OLD TABLE AS mesh_old FOR EACH STATEMENT EXECUTE FUNCTION mesh_sync_{table}_delete()""",
        )
    ],
    # ... and updated only through the columns a replica holds: contact summaries (counts,
    # strength) change on every ingest and must not flood the log.
    f"""CREATE FUNCTION mesh_sync_contact_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {OFF}
        INSERT INTO {CHANGE} {COLUMNS} VALUES ({XID}, NEW.workspace_id, 'c', NEW.id, NULL,
            CASE WHEN NEW.merged_into_id IS NULL AND OLD.merged_into_id IS NOT NULL THEN 'n'
                 WHEN NEW.merged_into_id IS DISTINCT FROM OLD.merged_into_id THEN 'm' ELSE 'r' END, now());
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER mesh_sync_contact_update AFTER UPDATE OF name, merged_into_id ON streams_contact
       FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.merged_into_id IS DISTINCT FROM NEW.merged_into_id)
       EXECUTE FUNCTION mesh_sync_contact_update()""",
    # An identity that moves (merge, unmerge) or is renamed changes every activity that shows it.
    f"""CREATE FUNCTION mesh_sync_identity_update() RETURNS trigger LANGUAGE plpgsql AS $$
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

PG_TRIGGERS = [
    ("streams_activity", "mesh_sync_activity_insert"), ("streams_activity", "mesh_sync_activity_update"),
    ("streams_activity", "mesh_sync_activity_delete"), ("streams_participant", "mesh_sync_participant_delete"),
    ("streams_contact", "mesh_sync_streams_contact_insert"), ("streams_contact", "mesh_sync_streams_contact_delete"),
    ("streams_identity", "mesh_sync_streams_identity_insert"),
    ("streams_identity", "mesh_sync_streams_identity_delete"),
    ("streams_contact", "mesh_sync_contact_update"), ("streams_identity", "mesh_sync_identity_update"),
]
PG_FUNCTIONS = [
    "mesh_sync_activity_insert", "mesh_sync_activity_update", "mesh_sync_activity_delete",
    "mesh_sync_participant_delete", "mesh_sync_streams_contact_insert", "mesh_sync_streams_contact_delete",
    "mesh_sync_streams_identity_insert", "mesh_sync_streams_identity_delete", "mesh_sync_contact_update",
    "mesh_sync_identity_update",
]

def install_triggers(apps, schema_editor):
    # SQLite's are installed after every migrate instead (streams.sync.sqlite_log_triggers): a
    # later migration that rebuilds a table there would drop them, or fail on a trigger that
    # names the table being rebuilt.
    if schema_editor.connection.vendor == "postgresql":
        for sql in PG_INSTALL:
            schema_editor.execute(sql, params=None)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for table, name in PG_TRIGGERS:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}", params=None)
        for name in PG_FUNCTIONS:
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {name}()", params=None)


class Migration(migrations.Migration):
    dependencies = [("streams", "0012_email_content_dedup_keys")]

    operations = [
        migrations.AddField(
            model_name="device",
            name="sync_scope",
            field=models.CharField(
                choices=[("own", "own"), ("devices", "devices"), ("contacts", "contacts")], default="own",
                max_length=8,
            ),
        ),
        migrations.CreateModel(
            name="Change",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("xid", models.BigIntegerField(default=0)),
                ("workspace_id", models.BigIntegerField()),
                ("kind", models.CharField(choices=[("a", "Activity"), ("c", "Contact"), ("i", "Identity")],
                                          max_length=1)),
                ("object_id", models.BigIntegerField()),
                ("device_id", models.BigIntegerField(blank=True, help_text="The activity's device when logged.",
                                                     null=True)),
                ("op", models.CharField(help_text="c created, u updated, e erased, d deleted, r renamed, m "
                                                  "merged/moved, n unmerged (streams.selectors.sync.OPS)",
                                        max_length=1)),
                ("at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={"indexes": [models.Index(fields=["workspace_id", "xid", "id"], name="change_log_idx")]},
        ),
        migrations.CreateModel(
            name="ChangeHorizon",
            fields=[
                ("workspace_id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("xid", models.BigIntegerField()),
                ("seq", models.BigIntegerField()),
                ("pruned_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.RunPython(install_triggers, drop_triggers),
    ]
