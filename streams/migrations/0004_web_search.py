"""Full-text search indexes (PostgreSQL only; SQLite searches with LIKE and needs none).

- ``activity_fts_idx``: GIN on the same expression streams.search queries with, so no column is
  added and nothing in the write path changes; PostgreSQL computes the tsvector on insert.
- ``activity_ws_time_idx``: (workspace, occurred_at DESC, id DESC), so that a search for a
  frequent word walks the workspace newest first and stops after a page of matches instead of
  sorting every match.
"""

from django.db import migrations

CREATE = [
    "CREATE INDEX IF NOT EXISTS activity_fts_idx ON streams_activity "
    "USING gin (to_tsvector('simple'::regconfig, (subject || ' ' || text)))",
    "CREATE INDEX IF NOT EXISTS activity_ws_time_idx ON streams_activity (workspace_id, occurred_at DESC, id DESC)",
]
DROP = ["DROP INDEX IF EXISTS activity_fts_idx", "DROP INDEX IF EXISTS activity_ws_time_idx"]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for sql in statements:
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0003_email_roles"),
    ]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
