"""The sync API's reads: a page of changes a device may see, after an opaque token.

The change log (``Change``, written by the triggers of migration 0013) says *which* objects
changed, in one total order; a page serves each such object *as it is now* (CouchDB
``_changes`` semantics), so two concurrent updates of one row can never leave a replica with
the older one, and a replica that applies pages in order equals the server at the end.

Order and completeness (docs/design.md, "The sync change log"): rows are ordered by
``(xid, id)`` — the writing transaction's id, then the row's sequence number — and a page
serves only rows whose ``xid`` is below ``pg_snapshot_xmin`` of the statement's snapshot: every
transaction below it has finished, so the served rows are a prefix that only grows, and a row
committed later always sorts after every row already served. On SQLite the one writer makes the
sequence number the commit order (``xid`` is 0).

A token is a position ``(xid, seq)`` — everything up to it was served — or, after
``since=0``, a position in a snapshot of the current state (contacts, identities, activities in
id order) that continues with the log from where the snapshot began.
"""

from __future__ import annotations

import base64
import binascii
import functools
import time
from dataclasses import dataclass, replace

import orjson
from django.db import connection
from django.db.models import Exists, OuterRef, Q

from ..crypto import token_hash
from ..devices import device_by_token, device_columns_sql, device_from_row, token_plausible
from ..export import VERB_TYPES, activity_as2
from ..models import (
    Activity,
    Change,
    ChangeHorizon,
    Contact,
    Device,
    Identity,
    Participant,
    TimelineEntry,
    Workspace,
)
from ..rawdb import IntArray, dollar_numbered, prepared_fetch, prepared_rows, raw_cursor
from ..visibility import visible_sql
from .timelines import activities_by_ids, workspace_activities

SCOPES = ("own", "devices", "contacts")
OPS = {"c": "created", "u": "updated", "e": "erased", "d": "deleted", "r": "renamed", "m": "moved", "n": "unmerged"}
TYPES = {Change.Kind.ACTIVITY: "activity", Change.Kind.CONTACT: "contact", Change.Kind.IDENTITY: "identity"}
# A contact's "moved" is a merge (its merged_into changed); an identity's is a move to another contact.
CONTACT_OPS = {**OPS, "m": "merged"}
SNAPSHOT_PHASES = {"own": ("a",), "devices": ("a",), "contacts": ("c", "i", "a")}
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


class BadSyncToken(ValueError):
    """A ``since`` that did not come from us (400)."""


class SyncReset(Exception):
    """The token is behind the pruned horizon, or was issued for another scope (410): the
    device must download the current state again (``since=0``)."""


@dataclass(frozen=True, slots=True)
class SyncToken:
    """Everything up to log position ``(xid, seq)`` was served; with ``phase``, a snapshot is
    under way (objects of that kind after id ``after`` come next) and the log resumes at
    ``(xid, seq)`` once it ends. ``scope`` is the device's scope when the token was issued."""

    scope: str
    xid: int
    seq: int
    phase: str = ""
    after: int = 0

    def encode(self) -> str:
        text = f"1.{self.scope}.{self.xid}.{self.seq}.{self.phase or '-'}.{self.after}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> SyncToken:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            version, scope, xid, seq, phase, after = raw.split(".")
            token = cls(scope, int(xid), int(seq), "" if phase == "-" else phase, int(after))
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise BadSyncToken(f"bad sync token {text[:40]!r}") from None
        if version != "1" or scope not in SCOPES or min(token.xid, token.seq, token.after) < 0 or (
            token.phase and token.phase not in SNAPSHOT_PHASES[scope]
        ):
            raise BadSyncToken(f"bad sync token {text[:40]!r}")
        return token

    @property
    def position(self) -> tuple[int, int]:
        return (self.xid, self.seq)


def sync_page(*, device: Device, since: str | None, limit: int = DEFAULT_LIMIT, log: LogRead | None = None) -> dict:
    """``{"changes": [...], "next": token, "more": bool}`` for ``device`` after ``since``
    (``None``/``"0"``: from a snapshot of everything it may see now). ``log``: the page as
    `device_with_log` read it. Raises `BadSyncToken` and `SyncReset`."""
    scope = device.sync_scope
    if not since or since == "0":
        token = SyncToken(scope, *_log_boundary(), phase=SNAPSHOT_PHASES[scope][0])
    else:
        token = SyncToken.decode(since)
        if token.scope != scope:
            raise SyncReset(f"this device's scope is now {scope!r}, the token was issued for {token.scope!r}")
    if token.phase:
        return _snapshot_page(device, token, limit)
    return _log_page(device, token, limit, log)


# --- the log ---------------------------------------------------------------------------------

_SCOPE_SQL = {
    "own": "AND c.kind = 'a' AND c.device_id = {device}",
    "devices": "AND c.kind = 'a' AND c.device_id IS NOT NULL",
    "contacts": "",
}


def _log_page(device: Device, token: SyncToken, limit: int, log: LogRead | None = None) -> dict:
    rows, boundary, horizon = _log_rows(device, token, limit, log)
    if horizon is not None and token.position < horizon:
        raise SyncReset("the token is older than the change log's horizon (MESH_SYNC_HORIZON_DAYS)")
    more = len(rows) == limit
    last = rows[-1][:2] if rows else token.position
    # A page that is not full served every row of finished transactions: the next one can
    # start at the boundary, so a device whose scope sees none of a busy workspace's changes
    # does not read them again on every poll.
    position = last if more else max(last, boundary, token.position)
    return {
        "changes": _entries(device, [(kind, object_id, op) for _, _, kind, object_id, op in rows]),
        "next": replace(token, xid=position[0], seq=position[1]).encode(),
        "more": more,
    }


def _log_sql(scope: str) -> str:
    """The next log rows of a scope after a position, below the boundary of finished
    transactions, with that boundary and the pruned horizon (one row even when none follow)."""
    return f"""
        WITH b AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)
        SELECT b.xmin, h.xid, h.seq, c.xid, c.id, c.kind, c.object_id, c.op
        FROM b LEFT JOIN {ChangeHorizon._meta.db_table} h ON h.workspace_id = %s
        LEFT JOIN LATERAL (
            SELECT c.xid, c.id, c.kind, c.object_id, c.op FROM {Change._meta.db_table} c
            WHERE c.workspace_id = %s AND (c.xid, c.id) > (%s, %s) AND c.xid < b.xmin {_SCOPE_SQL[scope].format(device="%s")}
            ORDER BY c.xid, c.id LIMIT %s
        ) c ON true
    """


def _log_rows(device: Device, token: SyncToken, limit: int, log: LogRead | None = None):
    """The next ``limit`` log rows the device's scope may see, the boundary of finished
    transactions, and the pruned horizon (None: never pruned), in one statement on PostgreSQL."""
    scope = device.sync_scope
    scope_params = [device.pk] if scope == "own" else []
    if connection.vendor == "postgresql":
        params = [device.workspace_id, device.workspace_id, token.xid, token.seq, *scope_params, limit]
        if log is not None and (log.token, log.limit, log.device_id) == (token, limit, device.pk):
            found = log.found
        else:
            # A prepared statement where connections persist (planning was half an up-to-date poll).
            found = prepared_rows(f"mesh_sync_log_{scope}_v1", _log_sql(scope), params, server_binding=True)
        xmin, hxid, hseq = found[0][:3]
        rows = [row[3:] for row in found if row[3] is not None]
        return rows, (xmin, 0), (hxid, hseq) if hxid is not None else None
    # SQLite: one writer at a time, so ids are in commit order and every committed row is final.
    # The boundary is read first: a row committed after it waits for the next page.
    boundary = _log_boundary()
    qs = Change.objects.filter(workspace_id=device.workspace_id, id__gt=token.seq, id__lte=boundary[1])
    if scope == "own":
        qs = qs.filter(kind=Change.Kind.ACTIVITY, device_id=device.pk)
    elif scope == "devices":
        qs = qs.filter(kind=Change.Kind.ACTIVITY, device_id__isnull=False)
    rows = list(qs.order_by("id").values_list("xid", "id", "kind", "object_id", "op")[:limit])
    horizon = ChangeHorizon.objects.filter(workspace_id=device.workspace_id).values_list("xid", "seq").first()
    return rows, boundary, horizon


@dataclass(frozen=True, slots=True)
class LogRead:
    """A log page read by the statement that found the device (`device_with_log`), as
    `_log_sql` returns it."""

    device_id: int
    token: SyncToken
    limit: int
    found: list[tuple]


def device_with_log(*, bearer: str, since: str | None, limit: int) -> tuple[Device | None, LogRead | None]:
    """The device a bearer token names (None: no such token) and, read by the same statement,
    the log page after ``since`` in the scope the token was issued for: an up-to-date poll is
    one round trip instead of two. The log is None where that does not apply (a snapshot, a
    token that does not decode, SQLite, no prepared statements); `sync_page` reads it then.
    The device is read afresh either way, so a revocation applies on the next request."""
    token = _log_token(since)
    if token is None or connection.vendor != "postgresql" or not token_plausible(bearer):
        return device_by_token(bearer), None
    digest = token_hash(bearer)
    params = [digest, token.xid, token.seq, limit, digest, token.scope]
    found = prepared_fetch(f"mesh_sync_poll_{token.scope}_v1", dollar_numbered(_poll_sql(token.scope)), params)
    if found is None:
        return device_by_token(bearer), None
    device_rows = [row for row in found if row[0] is not None]
    if not device_rows:
        return None, None
    device, rest = device_from_row(device_rows[0])
    head = rest[:3]  # the boundary and the horizon
    # UNION ALL keeps its branches' order in practice, not by contract: sort the log rows.
    log_rows = sorted((head + tuple(row[-5:]) for row in found if row[0] is None), key=lambda r: (r[3], r[4]))
    return device, LogRead(device.pk, token, limit, log_rows or [head + (None,) * 5])


def _log_token(since: str | None) -> SyncToken | None:
    """``since`` as a position in the log; None for a snapshot or a token that does not decode."""
    if not since or since == "0":
        return None
    try:
        token = SyncToken.decode(since)
    except BadSyncToken:
        return None
    return None if token.phase else token


@functools.cache
def _poll_sql(scope: str) -> str:
    """`_log_sql` with the device (and its workspace) a token hash names, ahead of the log rows,
    padded with NULLs so the device's columns are sent once, not on every row of a page."""
    fields = len(Device._meta.concrete_fields) + len(Workspace._meta.concrete_fields)
    return f"""
        WITH b AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)
        SELECT {device_columns_sql()}, b.xmin, h.xid, h.seq, NULL, NULL, NULL, NULL, NULL
        FROM {Device._meta.db_table} d JOIN {Workspace._meta.db_table} w ON w.id = d.workspace_id
        CROSS JOIN b LEFT JOIN {ChangeHorizon._meta.db_table} h ON h.workspace_id = d.workspace_id
        WHERE d.token_hash = %s
        UNION ALL
        SELECT {", ".join(["NULL"] * (fields + 3))}, c.xid, c.id, c.kind, c.object_id, c.op
        FROM {Device._meta.db_table} d CROSS JOIN b CROSS JOIN LATERAL (
            SELECT c.xid, c.id, c.kind, c.object_id, c.op FROM {Change._meta.db_table} c
            WHERE c.workspace_id = d.workspace_id AND (c.xid, c.id) > (%s, %s) AND c.xid < b.xmin
            {_SCOPE_SQL[scope].format(device="d.id")}
            ORDER BY c.xid, c.id LIMIT %s
        ) c
        WHERE d.token_hash = %s AND d.sync_scope = %s AND d.revoked_at IS NULL
    """


def sync_wait_servable(*, timeout: float = 120.0) -> bool:
    """Wait until every change logged so far may be served, i.e. every transaction that began
    before the newest logged one has finished (another database's open transaction on the same
    PostgreSQL holds the boundary back too). For benchmarks and tests that must see everything;
    False on timeout."""
    if connection.vendor != "postgresql":
        return True
    newest = Change.objects.order_by("-xid").values_list("xid", flat=True).first()
    deadline = time.monotonic() + timeout
    while newest is not None and _log_boundary()[0] <= newest:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _log_boundary() -> tuple[int, int]:
    """The log position below which every transaction has finished."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            return (cur.fetchone()[0], 0)
    return (0, Change.objects.order_by("-id").values_list("id", flat=True).first() or 0)


# --- the snapshot ----------------------------------------------------------------------------


def _snapshot_page(device: Device, token: SyncToken, limit: int) -> dict:
    """Objects of one kind in id order, as they are now. Whatever changes while the snapshot
    is read is in the log after the snapshot's start, which the last page hands over to."""
    ids = list(_snapshot_ids(device, token.phase).filter(pk__gt=token.after).order_by("pk")
               .values_list("pk", flat=True)[:limit])
    if len(ids) == limit:
        following = replace(token, after=ids[-1])
    else:
        phases = SNAPSHOT_PHASES[device.sync_scope]
        index = phases.index(token.phase)
        following = replace(token, phase=phases[index + 1] if index + 1 < len(phases) else "", after=0)
    entries = _entries(device, [(token.phase, pk, "") for pk in ids])
    return {"changes": entries, "next": following.encode(), "more": True}


def _snapshot_ids(device: Device, kind: str):
    if kind == Change.Kind.CONTACT:
        return Contact.objects.filter(workspace_id=device.workspace_id)
    if kind == Change.Kind.IDENTITY:
        return Identity.objects.filter(workspace_id=device.workspace_id)
    return workspace_activities(workspace=device.workspace_id).filter(_activity_scope_q(device))


def _activity_scope_q(device: Device) -> Q:
    if device.sync_scope == "own":
        return Q(device_id=device.pk)
    if device.sync_scope == "devices":
        return Q(device_id__isnull=False)
    return Q(Exists(TimelineEntry.objects.filter(kind=TimelineEntry.Kind.CONTACT, activity_id=OuterRef("pk"))))


# --- objects as they are now -----------------------------------------------------------------


def _entries(device: Device, changes: list[tuple[str, int, str]]) -> list[dict]:
    """One entry per changed object (its last change in the page wins), in log order: the
    object now, or a tombstone when it is gone (erased, deleted, out of the device's reach)."""
    last: dict[tuple[str, int], str] = {}
    for kind, object_id, op in changes:
        last.pop((kind, object_id), None)  # re-inserted: dicts keep insertion order
        last[(kind, object_id)] = op
    by_kind: dict[str, list[int]] = {}
    for kind, object_id in last:
        by_kind.setdefault(kind, []).append(object_id)
    docs = {kind: _documents(device, kind, ids) for kind, ids in by_kind.items()}
    entries = []
    for (kind, object_id), op in last.items():
        doc = docs[kind].get(object_id)
        names = CONTACT_OPS if kind == Change.Kind.CONTACT else OPS
        entries.append({"type": TYPES[kind], "id": object_id, "op": names.get(op, "snapshot"),
                        "deleted": doc is None, "object": doc})
    return entries


def _documents(device: Device, kind: str, ids: list[int]) -> dict[int, dict]:
    """The current documents of the objects ``ids`` of ``kind`` the device may see."""
    if kind == Change.Kind.CONTACT:
        rows = Contact.objects.filter(workspace_id=device.workspace_id, pk__in=ids)
        return {row["id"]: contact_document(row) for row in rows.values("id", "name", "merged_into_id", "is_self")}
    if kind == Change.Kind.IDENTITY:
        rows = Identity.objects.filter(workspace_id=device.workspace_id, pk__in=ids)
        return {row["id"]: identity_document(row)
                for row in rows.values("id", "kind", "value", "display", "contact_id", "is_self")}
    if connection.vendor == "postgresql":
        return _activity_documents_pg(device, ids)
    shown = set(_snapshot_ids(device, Change.Kind.ACTIVITY).filter(pk__in=ids).values_list("pk", flat=True))
    return activity_documents(workspace=device.workspace, ids=sorted(shown))


def contact_document(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"], "merged_into": row["merged_into_id"], "is_self": row["is_self"]}


def identity_document(row: dict) -> dict:
    return {"id": row["id"], "identity": f"{row['kind']}:{row['value']}", "display": row["display"],
            "contact": row["contact_id"], "is_self": row["is_self"]}


def activity_documents(*, workspace, ids: list[int]) -> dict[int, dict]:
    """Activities as ``mesh_export`` writes them (one shape for an activity), with the contacts
    whose timelines they are on now."""
    activities = activities_by_ids(ids=ids)
    contacts: dict[int, list[int]] = {}
    for activity_id, owner_id in TimelineEntry.objects.filter(
        kind=TimelineEntry.Kind.CONTACT, activity_id__in=ids
    ).values_list("activity_id", "owner_id"):
        contacts.setdefault(activity_id, []).append(owner_id)
    docs = {}
    for pk, activity in activities.items():
        activity.workspace = workspace  # the tag: URI's, without a query per activity
        doc = docs[pk] = activity_as2(activity, contact_ids=contacts.get(pk, []))
        delivery = (activity.extra or {}).get("delivery") if isinstance(activity.extra, dict) else None
        if delivery:  # live state a device shows (an SMS sent from Mesh: delivered, failed)
            doc["mesh:delivery"] = delivery
    return docs


# rfc3339's form, written by PostgreSQL: formatting two datetimes per activity in Python was a
# sixth of a catch-up page.
_RFC3339_SQL = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


def _activity_documents_pg(device: Device, ids: list[int]) -> dict[int, dict]:
    """``activity_documents`` for the shown activities among ``ids`` in the device's scope, built
    straight from two statements' rows: no model instances and no ``activity_as2`` (they were
    most of a catch-up page's time). The shape is ``activity_as2``'s key for key
    (tests/test_sync.py compares the two for every kind of activity)."""
    a, te = Activity._meta.db_table, TimelineEntry._meta.db_table
    p, i = Participant._meta.db_table, Identity._meta.db_table
    sql = f"""
        SELECT a.id, a.verb, {_RFC3339_SQL.format("a.occurred_at")}, {_RFC3339_SQL.format("a.updated_at")},
               a.subject, a.text, nullif(a.attachments, '[]')::text, a.channel, a.direction, a.dedup_key,
               a.thread_key, a.source_id, a.device_id, a.visibility, a.automated, (a.extra -> 'delivery')::text,
               ARRAY(SELECT te.owner_id FROM {te} te WHERE te.activity_id = a.id AND te.kind = 'c')
        FROM {a} a WHERE a.id = ANY(%s) AND a.workspace_id = %s AND {visible_sql("a")}
    """
    # The participants as plain rows, not aggregated per activity: json_agg was two thirds of
    # PostgreSQL's time for a page of 1,000. Looked up by index per activity (a LATERAL that
    # OFFSET 0 keeps from being flattened): for `activity_id = ANY(1,000 ids)` the planner
    # chose a sequential scan of every participant, 12 of 15 ms at 100,000 activities.
    persons_sql = f"""
        SELECT p.activity_id, p.role, i.kind || ':' || i.value, coalesce(nullif(i.display, ''), i.value)
        FROM unnest(%s::bigint[]) AS x(id)
        JOIN LATERAL (SELECT * FROM {p} p WHERE p.activity_id = x.id OFFSET 0) p ON true
        JOIN {i} i ON i.id = p.identity_id ORDER BY p.id
    """
    scope, workspace = device.sync_scope, device.workspace
    # Binary results: psycopg decodes the owner arrays and numbers in C (the text form's arrays
    # were a tenth of a page's Python); the times stay text, already formatted.
    with raw_cursor() as cur:
        cur.execute(sql, [IntArray(ids), device.workspace_id], binary=True)
        rows = cur.fetchall()
        cur.execute(persons_sql, [IntArray([row[0] for row in rows])], binary=True)
        persons: dict[int, list[tuple[int, str, str, str]]] = {}
        for person in cur.fetchall():
            persons.setdefault(person[0], []).append(person)
    docs = {}
    tag = f"tag:mesh,{workspace.created_at.strftime('%Y')}:{workspace.slug}/"  # export.tag_uri's prefix
    for (pk, verb, published, updated, subject, text, attachments, channel, direction, dedup_key, thread_key,
         source_id, device_id, visibility, automated, delivery, contact_ids) in rows:
        if not (device_id == device.pk if scope == "own" else device_id is not None
                if scope == "devices" else contact_ids):  # the scopes of _activity_scope_q
            continue
        actor, to, cc = None, [], []
        for _, role, identity, name in persons.get(pk, ()):
            person = {"mesh:identity": identity, "name": name}
            if role == "to":
                to.append(person)
            elif role == "cc":
                cc.append(person)
            elif actor is None and role in ("from", "author"):
                actor = person
        doc = docs[pk] = {
            "id": tag + dedup_key, "type": VERB_TYPES.get(verb, "Create"), "published": published,
            "updated": updated, "name": subject, "content": text, "actor": actor, "to": to, "cc": cc,
            "attachment": [
                {"name": x.get("name", ""), "mediaType": x.get("type") or x.get("mediaType", ""), "size": x.get("size")}
                for x in (orjson.loads(attachments) if attachments else None) or ()
            ],
            "mesh:channel": channel, "mesh:verb": verb, "mesh:direction": direction, "mesh:dedupKey": dedup_key,
            "mesh:threadKey": thread_key, "mesh:source": source_id, "mesh:device": device_id,
            "mesh:contacts": sorted(contact_ids), "mesh:visibility": visibility, "mesh:automated": automated,
        }
        delivery = orjson.loads(delivery) if delivery else None
        if delivery:
            doc["mesh:delivery"] = delivery
    return docs


def sync_state(*, device: Device) -> dict[tuple[str, int], dict]:
    """Everything the device may see now, keyed like a replica: ``(type, id) → document``
    (what a full snapshot hands over; tests compare replicas with it)."""
    state = {}
    for kind in SNAPSHOT_PHASES[device.sync_scope]:
        ids = list(_snapshot_ids(device, kind).values_list("pk", flat=True))
        state.update(((TYPES[kind], pk), doc) for pk, doc in _documents(device, kind, ids).items())
    return state

