"""The sync API's writes: a device's scope, and pruning the change log past the horizon.

The log itself is written by database triggers (migration 0013), never from here; reads are in
``streams.selectors.sync``.
"""

from __future__ import annotations

import datetime as dt

from django.db import connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from .conf import conf
from .models import Change, ChangeHorizon, Device
from .selectors.sync import SCOPES

PRUNE_CHUNK = 10_000


class SyncScopeError(ValueError):
    pass


def device_sync_scope_set(*, device: Device, scope: str) -> Device:
    """What the device's token may read through the sync API. Its tokens issued under another
    scope answer 410 from now on, so its replica starts again from a snapshot."""
    if scope not in SCOPES:
        raise SyncScopeError(f"unknown sync scope {scope!r} (one of {', '.join(SCOPES)})")
    Device.objects.filter(pk=device.pk).update(sync_scope=scope)
    device.sync_scope = scope
    return device


def sync_prune(*, now: dt.datetime | None = None, horizon_days: int | None = None) -> int:
    """Delete each workspace's oldest log rows, those older than ``MESH_SYNC_HORIZON_DAYS``, as
    a prefix of the log's order, and record how far (``ChangeHorizon``): a token from before
    that answers 410 rather than a stream with a gap. Rows of unfinished transactions are never
    pruned. Returns the number of rows deleted."""
    days = conf.SYNC_HORIZON_DAYS if horizon_days is None else horizon_days
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    deleted = 0
    workspaces = Change.objects.filter(at__lt=cutoff).values_list("workspace_id", flat=True).distinct()
    for workspace_id in list(workspaces):
        while True:
            n = _prune_chunk(workspace_id, cutoff)
            deleted += n
            if n < PRUNE_CHUNK:
                break
    return deleted


@transaction.atomic
def _prune_chunk(workspace_id: int, cutoff: dt.datetime) -> int:
    limit = _finished_below()
    rows = list(
        Change.objects.filter(workspace_id=workspace_id).order_by("xid", "id").values_list("xid", "id", "at")[:PRUNE_CHUNK]
    )
    prefix = 0
    for xid, _, at in rows:
        # Stop at the first row that must stay: the rest of the log keeps its order.
        if at >= cutoff or (limit is not None and xid >= limit):
            break
        prefix += 1
    if not prefix:
        return 0
    xid, seq, _ = rows[prefix - 1]
    Change.objects.filter(workspace_id=workspace_id).filter(Q(xid__lt=xid) | Q(xid=xid, id__lte=seq)).delete()
    ChangeHorizon.objects.update_or_create(
        workspace_id=workspace_id, defaults={"xid": xid, "seq": seq, "pruned_at": timezone.now()}
    )
    return prefix


def _finished_below() -> int | None:
    """PostgreSQL: the transaction id below which every transaction has finished."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cur:
        cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        return cur.fetchone()[0]


# --- SQLite's change-log triggers -------------------------------------------------------------
# PostgreSQL's are installed by migration 0013. SQLite's are dropped before every ``migrate`` and
# installed after it (streams.apps): SQLite rebuilds a table to add most columns, which drops the
# table's triggers, and refuses the rebuild while another trigger names that table.

_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
_COLUMNS = "(xid, workspace_id, kind, object_id, device_id, op, at)"


def _row(kind: str, row: str, op: str, device: str = "NULL") -> str:
    return f"INSERT INTO streams_change {_COLUMNS} VALUES (0, {row}.workspace_id, '{kind}', {row}.id, {device}, {op}, {_NOW})"


def _activities_where(where: str) -> str:
    return (f"INSERT INTO streams_change {_COLUMNS} SELECT 0, a.workspace_id, 'a', a.id, a.device_id, 'u', {_NOW} "
            f"FROM streams_activity a WHERE {where}")


SQLITE_TRIGGERS = {  # name: (event, table, WHEN condition, body)
    "mesh_sync_activity_insert": ("INSERT", "streams_activity", "", _row("a", "NEW", "'c'", "NEW.device_id")),
    "mesh_sync_activity_update": ("UPDATE", "streams_activity", "", _row(
        "a", "NEW", "CASE WHEN NEW.erased_at IS NOT NULL AND OLD.erased_at IS NULL THEN 'e' ELSE 'u' END",
        "coalesce(NEW.device_id, OLD.device_id)")),  # a deleted device's: see migration 0022
    "mesh_sync_activity_delete": ("DELETE", "streams_activity", "", _row("a", "OLD", "'d'", "OLD.device_id")),
    "mesh_sync_participant_delete": ("DELETE", "streams_participant", "", _activities_where("a.id = OLD.activity_id")),
    "mesh_sync_contact_insert": ("INSERT", "streams_contact", "", _row("c", "NEW", "'c'")),
    "mesh_sync_contact_delete": ("DELETE", "streams_contact", "", _row("c", "OLD", "'d'")),
    "mesh_sync_contact_update": (
        "UPDATE OF name, merged_into_id", "streams_contact",
        "OLD.name IS NOT NEW.name OR OLD.merged_into_id IS NOT NEW.merged_into_id",
        _row("c", "NEW", "CASE WHEN NEW.merged_into_id IS NULL AND OLD.merged_into_id IS NOT NULL THEN 'n' "
                         "WHEN NEW.merged_into_id IS NOT OLD.merged_into_id THEN 'm' ELSE 'r' END")),
    "mesh_sync_identity_insert": ("INSERT", "streams_identity", "", _row("i", "NEW", "'c'")),
    "mesh_sync_identity_delete": ("DELETE", "streams_identity", "", _row("i", "OLD", "'d'")),
    "mesh_sync_identity_update": (
        "UPDATE OF contact_id, display, is_self", "streams_identity",
        "OLD.contact_id IS NOT NEW.contact_id OR OLD.display IS NOT NEW.display OR OLD.is_self IS NOT NEW.is_self",
        _row("i", "NEW", "CASE WHEN NEW.contact_id IS NOT OLD.contact_id THEN 'm' ELSE 'r' END") + "; "
        + _activities_where("a.id IN (SELECT p.activity_id FROM streams_participant p WHERE p.identity_id = NEW.id)")),
}


def sqlite_log_triggers(*, using: str, install: bool) -> None:
    """Drop SQLite's change-log triggers (before ``migrate``) or install them (after it, when the
    log's table exists). Nothing elsewhere: PostgreSQL's live in migration 0013."""
    conn = connections[using]
    if conn.vendor != "sqlite":
        return
    with conn.cursor() as cur:
        for name in SQLITE_TRIGGERS:
            cur.execute(f"DROP TRIGGER IF EXISTS {name}")
        if install and Change._meta.db_table in conn.introspection.table_names(cur):
            for name, (event, table, when, body) in SQLITE_TRIGGERS.items():
                condition = f" WHEN {when}" if when else ""
                cur.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{condition} BEGIN {body}; END")
