"""ingest_batch: normalize → dedup → resolve participants → insert activities → participants →
fan-out → device state → failures, with the cursor and the run's counts saved in the same
transaction. Each step is one function; ``_ingest_batch`` calls them in that order.

Long because: the steps of one transaction and their statements read top to bottom here.

A crash anywhere re-does at most the current batch, and re-doing it duplicates nothing:
activities are unique on (workspace, dedup_key), participants on (activity, identity, role),
timeline rows on (kind, owner, activity).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import gc
import json
import logging
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter

import orjson
import psycopg
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from connectors.base import ActivityDraft, BadItem, Connector, RawItem
from connectors.text import (
    ORJSON_MAX_DEPTH,
    TooDeep,
    clean_json,
    clean_text,
    json_deeper_than,
    needs_cleaning,
)

from .dbstats import statistics_refresh
from .devices import DevicePush, devices_push_lock, devices_push_record, item_seq
from .identity import (
    InvalidIdentity,
    Wanted,
    contacts_rename,
    display_source,
    identities_resolve,
    normalize,
)
from .models import Activity, Device, ImportFailure, Participant, Source, SyncRun, Workspace
from .ranking import rank_touches_queue
from .rawdb import IntArray, TextArray, copy_with_new_ids, raw_cursor
from .search import search_queue
from .timelines import activities_fan_out, timeline_rows_insert

log = logging.getLogger(__name__)

UNSET = object()

# Stored raw payloads nest at most as deep as orjson encodes (real ones nest fewer than ten
# levels), so the check costs nothing for a payload orjson encodes; deeper ones would exhaust the
# standard library encoder's recursion on the way to the database.
MAX_RAW_DEPTH = ORJSON_MAX_DEPTH
# A failure's reason is for a person to read: a connector that quotes a whole payload in its
# exception message is cut here.
MAX_REASON = 2000


@dataclass(slots=True)
class IngestResult:
    fetched: int = 0
    new: int = 0
    duplicate: int = 0
    failed: int = 0
    activity_ids: list[int] = field(default_factory=list)
    newest: dt.datetime | None = None

    def add(self, other: IngestResult) -> None:
        self.fetched += other.fetched
        self.new += other.new
        self.duplicate += other.duplicate
        self.failed += other.failed
        if other.newest and (self.newest is None or other.newest > self.newest):
            self.newest = other.newest

    def counts(self) -> dict[str, int]:
        return {"fetched": self.fetched, "new": self.new, "duplicate": self.duplicate, "failed": self.failed}


def scope_for(*, source: Source | None = None, device: Device | None = None) -> str:
    if source is not None:
        return f"source:{source.pk}"
    if device is not None:
        return f"device:{device.pk}"
    return "none"


def ingest_batch(
    *,
    workspace: Workspace,
    connector: Connector,
    items: Sequence[RawItem],
    source: Source | None = None,
    device: Device | None = None,
    cursor=UNSET,
    gap: str | None | object = UNSET,
    run: SyncRun | None = None,
) -> IngestResult:
    """Store one batch. Everything, the cursor included, commits together or not at all."""
    with gc_paused():
        return _ingest_batch(workspace=workspace, connector=connector, items=items, source=source, device=device,
                             cursor=cursor, gap=gap, run=run)


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection inside a bounded unit of work (an ingest batch, a sync
    page). A batch allocates a few hundred thousand
    short-lived objects (drafts, rows, parameters), nearly all freed by reference counting, but
    each allocation counts towards the collector's thresholds, and its full passes over the
    process's objects were about a tenth of ingest's Python time (py-spy). The batch is
    bounded, so memory stays bounded; collection resumes after it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _ingest_batch(
    *,
    workspace: Workspace,
    connector: Connector,
    items: Sequence[RawItem],
    source: Source | None,
    device: Device | None,
    cursor,
    gap,
    run: SyncRun | None,
) -> IngestResult:
    """The steps of a batch, in order; each is one function below."""
    result = IngestResult(fetched=len(items))
    scope = scope_for(source=source, device=device)
    failures: list[tuple[RawItem, str]] = []
    checked_at = timezone.now()
    drafts = _normalized(connector, items, failures)
    unique, repeats = _first_of_each_key(drafts, result)
    if not connection.in_atomic_block:
        statistics_refresh()  # every few batches: a cheap check, rarely an ANALYZE
    with transaction.atomic():
        fresh = _not_stored(workspace, unique, result)
        fresh = _raw_cleaned(_drafts_checked(fresh, repeats, failures, result, now=checked_at), failures)
        renames: dict[int, tuple[str, str]] = {}
        parts = participants_resolve(workspace, workspace.region, fresh, renames)
        now = timezone.now()
        rows = [activity_row(workspace, source, device, connector.key, raw, draft, now, *parts[draft.dedup_key])
                for raw, draft in fresh]
        if device is None:
            _draft_devices(workspace, fresh, rows)
        inserted = _activities_insert(rows)  # dedup_key → id, only rows this call inserted
        result.duplicate += len(rows) - len(inserted)
        result.new = len(inserted)
        result.activity_ids = list(inserted.values())
        contact_rows = _participants_insert(fresh, parts, inserted, result)
        _timelines_fan_out(rows, inserted, contact_rows, result.activity_ids)
        _ranking_update(workspace, rows, inserted, contact_rows)
        contacts_rename(renames)  # after the summary update has locked the contacts in id order
        _devices_state_update(fresh, rows, inserted)
        if source is not None:  # pushed items (no source) had their seqs held at the door
            _imported_seqs_hold(fresh, rows, inserted)
        result.failed = len(failures)
        _failures_record(workspace, connector.key, scope, source, device, failures, now)
        _failures_resolve(scope, drafts, failures, now)
        _source_cursor_save(source, cursor, gap)
        _run_counts_add(run, result)
    return result


def _normalized(connector: Connector, items: Sequence[RawItem], failures: list) -> list:
    """(raw, draft) of every item the connector normalizes into a draft with a valid, cleaned
    dedup key (all a duplicate needs to be recognized: the rest of a draft is checked once it is
    known to be new, ``_drafts_checked``); the others go to ``failures`` with their reason."""
    drafts: list[tuple[RawItem, ActivityDraft]] = []
    dirty_ids = _ids_need_cleaning(items)
    for raw in items:
        try:
            if dirty_ids:
                raw = _id_cleaned(raw)
            draft = connector.normalize(raw)
            if not isinstance(draft, ActivityDraft):
                raise BadItem(f"normalize returned {type(draft).__name__}, not an ActivityDraft")
            key = draft.dedup_key
            if not (isinstance(key, str) and 0 < len(key) <= 255):
                draft.clean_key()  # raises BadItem with the reason
            drafts.append((raw, draft))
        except BadItem as exc:
            failures.append((raw, exc.reason))
        except Exception as exc:  # a connector bug must not lose the rest of the batch
            log.exception("normalize failed for %s", raw.external_id)
            failures.append((raw, f"{type(exc).__name__}: {exc}"))
    return _keys_cleaned(drafts, failures)


def _ids_need_cleaning(items: Sequence[RawItem]) -> bool:
    """Whether any external id of the batch needs ``_id_cleaned``: one search over all of them
    (per item, the check was a tenth of a re-import's Python time); the usual answer is no."""
    try:
        return needs_cleaning("".join([raw.external_id for raw in items]))
    except (TypeError, AttributeError):  # an id that is not a string: each item sees to its own
        return True


def _keys_cleaned(drafts: list, failures: list) -> list:
    """The drafts with their dedup keys cleaned (``ActivityDraft.clean_key``), checked in one
    search over all of them as for the ids; a key empty once cleaned fails its item."""
    if not needs_cleaning("".join([draft.dedup_key for _, draft in drafts])):
        return drafts
    kept = []
    for raw, draft in drafts:
        try:
            draft.clean_key()
        except BadItem as exc:
            failures.append((raw, exc.reason))
            continue
        kept.append((raw, draft))
    return kept


def _first_of_each_key(drafts: list, result: IngestResult) -> tuple[list, dict[str, list]]:
    """The same thing twice inside one batch: the first one wins. The repeats are kept by key,
    in order, in case the first turns out invalid (``_drafts_checked``)."""
    unique: list[tuple[RawItem, ActivityDraft]] = []
    seen: set[str] = set()
    repeats: dict[str, list] = {}
    for item in drafts:
        key = item[1].dedup_key
        if key in seen:
            result.duplicate += 1
            repeats.setdefault(key, []).append(item)
            continue
        seen.add(key)
        unique.append(item)
    return unique, repeats


def _not_stored(workspace: Workspace, unique: list, result: IngestResult) -> list:
    """Skip what is already stored before doing any more work for it: re-imports are cheap."""
    existing = _existing_keys(workspace, [d.dedup_key for _, d in unique])
    fresh = [(raw, d) for raw, d in unique if d.dedup_key not in existing]
    result.duplicate += len(unique) - len(fresh)
    return fresh


def _drafts_checked(fresh: list, repeats: dict[str, list], failures: list, result: IngestResult, *,
                    now: dt.datetime) -> list:
    """The drafts about to be stored, validated and cleaned (``ActivityDraft.validate``,
    ``clean``): only these, as for raw payloads, so that a re-import of stored items pays for
    their keys alone. A draft that breaks the contract fails as an item, and the next one of
    the batch with its key takes its place (no longer a duplicate)."""
    kept = []
    for candidate in fresh:
        for n, (raw, draft) in enumerate([candidate, *repeats.get(candidate[1].dedup_key, ())]):
            try:
                draft.validate(now=now)
                draft.clean()
            except BadItem as exc:
                failures.append((raw, exc.reason))
                continue
            if n:
                result.duplicate -= 1  # a repeat that stands in was counted as a duplicate
            kept.append((raw, draft))
            break
    return kept


def _raw_cleaned(fresh: list, failures: list) -> list:
    """The raw payloads about to be stored, cleaned (``connectors.text``; only these: cleaning
    costs an orjson encode per item, and re-imports are mostly items already stored). The draft
    was cleaned after validate, so what is stored is clean either way; a reprocess normalizes
    the stored, cleaned payload. A payload nested absurdly deep fails as an item."""
    kept = []
    for raw, draft in fresh:
        try:
            payload = clean_json(raw.payload, max_depth=MAX_RAW_DEPTH)
        except TooDeep as exc:
            failures.append((raw, f"payload {exc}"))
            continue
        kept.append((raw if payload is raw.payload else RawItem(raw.external_id, payload, raw.received_at), draft))
    return kept


def _participants_insert(fresh: list, parts: dict, inserted: dict[str, int], result: IngestResult) -> list[tuple]:
    """Store the participants of the activities this batch inserted and return their contact
    timeline rows (contact id, activity id): one per contact, the owner's own excluded."""
    participant_rows: list[tuple[int, int, str]] = []
    contact_rows: list[tuple] = []
    for _raw, draft in fresh:
        activity_id = inserted.get(draft.dedup_key)
        if activity_id is None:
            continue
        owners = set()
        for identity, role in parts[draft.dedup_key][0]:
            participant_rows.append((activity_id, identity.pk, role))
            if identity.contact_id and not identity.is_self and identity.contact_id not in owners:
                owners.add(identity.contact_id)
                contact_rows.append((identity.contact_id, activity_id))
        if result.newest is None or draft.occurred_at > result.newest:
            result.newest = draft.occurred_at
    _participant_rows_insert(participant_rows)
    return contact_rows


def _timelines_fan_out(rows: list[_Row], inserted: dict[str, int], contact_rows: list[tuple],
                       activity_ids: list[int]) -> None:
    if connection.vendor != "postgresql":
        activities_fan_out(activity_ids=activity_ids)
        return
    # The timeline rows follow from what we just resolved: written directly, no join.
    # (activities_fan_out, the SQL form, serves SQLite, repairs and rebuilds; a test checks
    # both give the same timelines.)
    timeline_rows_insert(
        contact_rows=contact_rows,
        device_rows=[(row.device_id, inserted[row.dedup_key])
                     for row in rows if row.device_id is not None and row.dedup_key in inserted],
        occurred={inserted[row.dedup_key]: row.occurred_at for row in rows if row.dedup_key in inserted},
    )
    search_queue(activity_ids=activity_ids)


def _ranking_update(workspace: Workspace, rows: list[_Row], inserted: dict[str, int],
                    contact_rows: list[tuple]) -> None:
    """Relationship strength: the contact timeline rows just written that count, queued as one
    row holding what the fold needs (streams.ranking; folded into the aggregate and re-scored
    off this path)."""
    if not contact_rows:
        return
    rank_touches_queue(workspace_id=workspace.pk, touches=contact_rows,
                       activities=((inserted[row.dedup_key], row) for row in rows if row.dedup_key in inserted))


def _devices_state_update(fresh: list, rows: list[_Row], inserted: dict[str, int]) -> None:
    by_device: dict[int, list[ActivityDraft]] = {}
    for (_raw, draft), row in zip(fresh, rows, strict=True):
        if row.device_id is not None and draft.dedup_key in inserted:
            by_device.setdefault(row.device_id, []).append(draft)
    for device_id, device_drafts in by_device.items():
        _device_state(device_id, device_drafts)


def _imported_seqs_hold(fresh: list, rows: list[_Row], inserted: dict[str, int]) -> None:
    """Device events imported from a file (``mesh_import device``) carry their seqs as pushed
    ones do: held by the transaction that stores them (``streams.devices``)."""
    seqs: dict[int, set[int]] = {}
    for (raw, draft), row in zip(fresh, rows, strict=True):
        if row.device_id is not None and draft.dedup_key in inserted and (seq := item_seq(raw.payload)):
            seqs.setdefault(row.device_id, set()).add(seq)
    if seqs:
        highs = devices_push_lock(seqs)
        devices_push_record([DevicePush(d, highs[d], frozenset(s), None) for d, s in seqs.items()])


def _failures_resolve(scope: str, drafts: list, failures: list, now: dt.datetime) -> None:
    """Mark failures of items that now import as resolved (checked cheaply first, by one raw
    statement: most scopes have none open, and the ORM's exists() cost more than the probe)."""
    if not drafts or not _open_failures(scope):
        return
    failed = {raw.external_id for raw, _ in failures}
    ok_ids = [raw.external_id for raw, _ in drafts if raw.external_id not in failed]
    if ok_ids:
        ImportFailure.objects.filter(scope=scope, external_id__in=ok_ids, resolved_at=None).update(resolved_at=now)


def _open_failures(scope: str) -> bool:
    table = connection.ops.quote_name(ImportFailure._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE scope = %s AND resolved_at IS NULL)", [scope])
        return cur.fetchone()[0]


def _source_cursor_save(source: Source | None, cursor, gap) -> None:
    if source is None or (cursor is UNSET and gap is UNSET):
        return
    fields = {}
    if cursor is not UNSET:
        fields["cursor"] = cursor
    if gap is not UNSET:
        fields["gap"] = gap or ""
    Source.objects.filter(pk=source.pk).update(**fields)


def _run_counts_add(run: SyncRun | None, result: IngestResult) -> None:
    if run is None:
        return
    SyncRun.objects.filter(pk=run.pk).update(
        fetched=F("fetched") + result.fetched,
        new=F("new") + result.new,
        duplicate=F("duplicate") + result.duplicate,
        failed=F("failed") + result.failed,
        batches=F("batches") + 1,
    )
    if result.newest and (run.newest_item_at is None or result.newest > run.newest_item_at):
        run.newest_item_at = result.newest
        SyncRun.objects.filter(pk=run.pk).update(newest_item_at=result.newest)


def _id_cleaned(raw: RawItem) -> RawItem:
    """``raw`` with its external id as clean text (``connectors.text``); the same object when
    it needed nothing. The payload is cleaned later, only if the item is stored (_raw_cleaned)."""
    external_id = raw.external_id
    if not isinstance(external_id, str):
        external_id = str(external_id)
    if needs_cleaning(external_id):
        external_id = clean_text(external_id)
    if external_id is raw.external_id:
        return raw
    return RawItem(external_id, raw.payload, raw.received_at)


def _draft_devices(workspace: Workspace, fresh, rows: list[_Row]) -> None:
    """Drafts may name their device (``ActivityDraft.device``, a Mesh device id) when the batch
    has no single device: attach those that belong to this workspace."""
    wanted = {}
    for (_raw, draft), row in zip(fresh, rows, strict=True):
        if draft.device and str(draft.device).isdigit():
            wanted.setdefault(int(draft.device), []).append(row)
    if not wanted:
        return
    valid = set(Device.objects.filter(workspace=workspace, pk__in=list(wanted)).values_list("pk", flat=True))
    for device_id, device_rows in wanted.items():
        if device_id in valid:
            for row in device_rows:
                row.device_id = device_id


def _existing_keys(workspace: Workspace, keys: list[str]) -> set[str]:
    found: set[str] = set()
    if connection.vendor == "postgresql" and keys:
        # One probe of the (workspace, dedup_key) unique index per key, whatever the statistics
        # say. A workspace's first big import runs on statistics that have never seen it, so
        # "workspace_id = 10" is estimated at 1 row: a plain join then hashed every key of the
        # workspace per batch, and a per-key probe walked the workspace's time index instead
        # (16 s a batch at 58,000 rows; the IN-list form before took 438 ms at 450,000). The
        # workspace as an InitPlan parameter "(SELECT $2)" is estimated like any workspace, so
        # only the unique index is worth using (1.4 ms for 1,000 keys).
        table = connection.ops.quote_name(Activity._meta.db_table)
        with raw_cursor() as cur:
            cur.execute(
                f"SELECT a.dedup_key FROM unnest(%s::text[]) AS k(key) CROSS JOIN LATERAL "
                f"(SELECT dedup_key FROM {table} WHERE workspace_id = (SELECT %s::bigint) AND dedup_key = k.key "
                f"LIMIT 1) a",
                [TextArray(keys), workspace.pk],
            )
            return {row[0] for row in cur.fetchall()}
    for i in range(0, len(keys), 2000):
        found.update(
            Activity.objects.filter(workspace=workspace, dedup_key__in=keys[i : i + 2000]).values_list(
                "dedup_key", flat=True
            )
        )
    return found


@functools.lru_cache(maxsize=65536)
def _normalize_cached(kind: str, value: str, region: str) -> tuple[str, str]:
    # phonenumbers parsing dominates identity work; the same few thousand addresses recur.
    return normalize(kind, value, region=region)


def participants_resolve(workspace, region, fresh, contact_renames=None):
    """Normalize every participant of the batch, resolve all identities in one go, and return
    dedup_key → ([(identity, role)], invalid participants)."""
    wanted: dict[tuple[str, str], Wanted] = {}
    per_draft: dict[str, tuple[list[tuple[tuple[str, str], str]], list[dict]]] = {}
    shown_by: dict[tuple[str, str], ActivityDraft] = {}  # key → the draft its newest display came from
    create_for_automated = workspace.create_contacts_for_automated
    for _raw, draft in fresh:
        keys: list[tuple[tuple[str, str], str]] = []
        invalid: list[dict] = []
        for p in draft.participants:
            try:
                if isinstance(p.kind, str) and isinstance(p.value, str):
                    key = _normalize_cached(p.kind, p.value, region)
                else:
                    key = normalize(p.kind, p.value, region=region)
            except InvalidIdentity as exc:
                invalid.append({"role": p.role, "kind": p.kind, "value": p.value, "error": str(exc)})
                continue
            w = wanted.setdefault(key, Wanted())
            if p.display and (w.seen_at is None or draft.occurred_at > w.seen_at):  # newest display wins
                w.display, w.seen_at = p.display, draft.occurred_at
                w.avatar = p.avatar or w.avatar
                shown_by[key] = draft  # its source is worked out once per key, below
            if not draft.automated or create_for_automated:
                w.needs_contact = True
            keys.append((key, p.role))
        per_draft[draft.dedup_key] = (keys, invalid)
    for key, draft in shown_by.items():
        w = wanted[key]
        w.source = display_source(draft.channel, draft.extra, w.display)
    identities = identities_resolve(workspace=workspace, wanted=wanted, contact_renames=contact_renames)
    out = {}
    for dedup_key, (keys, invalid) in per_draft.items():
        seen = set()
        resolved = []
        for key, role in keys:
            if (key, role) in seen:
                continue
            seen.add((key, role))
            resolved.append((identities[key], role))
        out[dedup_key] = (resolved, invalid)
    return out


def _direction(draft: ActivityDraft, resolved) -> str:
    if draft.direction:
        return draft.direction
    senders = [ident for ident, role in resolved if role in ("from", "author")]
    if any(ident.is_self for ident in senders):
        return "out"
    if senders:
        return "in"
    return "none"


@dataclass(slots=True)
class _Row:
    """An activity about to be inserted, as column values (no model instance: building Django
    models was a fifth of the ingest time). Its fields are THE activity column list: the insert
    statements and the reprocess comparison all read it from here."""

    workspace_id: int
    source_id: int | None
    device_id: int | None
    connector: str
    external_id: str
    dedup_key: str
    channel: str
    verb: str
    direction: str
    occurred_at: dt.datetime
    subject: str
    text: str
    html: str
    url: str
    thread_key: str
    visibility: str
    attachments: list
    automated: bool
    extra: dict
    raw: object
    created_at: dt.datetime
    updated_at: dt.datetime


ACTIVITY_COLUMNS = tuple(f.name for f in dataclasses.fields(_Row))


def activity_row(workspace, source, device, connector_key, raw, draft, now, resolved, invalid) -> _Row:
    """The activity an item becomes, as column values (reprocessing compares it with what is
    stored)."""
    extra = dict(draft.extra)
    if invalid:
        extra["invalid_participants"] = invalid
    return _Row(
        workspace.pk, source.pk if source else None, device.pk if device else None, connector_key,
        raw.external_id[:255], draft.dedup_key, draft.channel, draft.verb, _direction(draft, resolved),
        draft.occurred_at, draft.subject, draft.text, draft.html, draft.url, draft.thread_key[:255],
        draft.visibility, draft.attachments, draft.automated, extra, raw.payload, now, now,
    )


def _activities_insert(rows: list[_Row]) -> dict[str, int]:
    """Insert activities, skipping (workspace, dedup_key) conflicts, and return dedup_key → id
    of exactly the rows this call inserted (a concurrent import of the same item loses
    cleanly). PostgreSQL: binary COPY (3× faster than multi-row VALUES, which also pays for
    client-side query conversion); elsewhere multi-row VALUES."""
    if not rows:
        return {}
    if connection.vendor == "postgresql":
        return _activities_copy(rows)
    fields = _activity_fields()
    qn = connection.ops.quote_name
    cols = ", ".join(qn(f.column) for f in fields)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    inserted: dict[str, int] = {}
    chunk = 500
    with connection.cursor() as cur:
        for i in range(0, len(rows), chunk):
            part = rows[i : i + chunk]
            params: list = []
            for obj in part:
                for f in fields:
                    params.append(f.get_db_prep_save(getattr(obj, f.attname), connection))
            sql = (
                f"INSERT INTO {qn(Activity._meta.db_table)} ({cols}) VALUES {', '.join([row_sql] * len(part))} "
                f"ON CONFLICT (workspace_id, dedup_key) DO NOTHING RETURNING id, dedup_key"
            )
            cur.execute(sql, params)
            inserted.update({key: pk for pk, key in cur.fetchall()})
    return inserted


def _activity_fields() -> list:
    return [Activity._meta.get_field(name) for name in ACTIVITY_COLUMNS]


STATE_KEYS = ("battery", "charging", "lat", "lon", "accuracy", "place", "presence", "network")


_STAGE = "mesh_stage_activity"


def _activities_copy(rows: list[_Row]) -> dict[str, int]:
    """Fast path: ids from the sequence, then binary COPY straight into the table (one write per
    row, no staging copy). The keys were checked just before, so a conflict means a concurrent
    import of the same items: then the COPY is rolled back to a savepoint and the staging path
    below sorts the rows out."""
    columns = [f.column for f in _activity_fields()]
    getter = attrgetter(*ACTIVITY_COLUMNS)
    try:
        with transaction.atomic():
            ids = copy_with_new_ids(Activity._meta.db_table, columns, [getter(row) for row in rows])
        return {row.dedup_key: pk for pk, row in zip(ids, rows, strict=True)}
    except psycopg.errors.UniqueViolation:
        log.info("concurrent import of the same items: inserting %d activities one conflict at a time", len(rows))
    return _activities_staged(rows)


def _activities_staged(rows: list[_Row]) -> dict[str, int]:
    fields = _activity_fields()
    qn = connection.ops.quote_name
    table = qn(Activity._meta.db_table)
    cols = ", ".join(qn(f.column) for f in fields)
    json_fields = {f.attname for f in fields if f.get_internal_type() == "JSONField"}
    with connection.cursor() as cur:
        # Per-connection staging table; emptied before each use (we may be inside an outer
        # transaction, so ON COMMIT cannot be relied upon).
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} AS SELECT {cols} FROM {table} WITH NO DATA")
        cur.execute(f"TRUNCATE {_STAGE}")
        with cur.cursor.copy(f"COPY {_STAGE} ({cols}) FROM STDIN") as copy:
            for obj in rows:
                copy.write_row([
                    (None if getattr(obj, f.attname) is None else json.dumps(getattr(obj, f.attname), ensure_ascii=False))
                    if f.attname in json_fields else getattr(obj, f.attname)
                    for f in fields
                ])
        cur.execute(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {_STAGE} "
            f"ON CONFLICT (workspace_id, dedup_key) DO NOTHING RETURNING id, dedup_key"
        )
        return {key: pk for pk, key in cur.fetchall()}


def _participant_rows_insert(rows: list[tuple[int, int, str]]) -> None:
    """(activity_id, identity_id, role) rows; duplicates ignored."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        Participant.objects.bulk_create(
            [Participant(activity_id=a, identity_id=i, role=r) for a, i, r in rows], ignore_conflicts=True,
            batch_size=1000,
        )
        return
    table = connection.ops.quote_name(Participant._meta.db_table)
    with raw_cursor() as cur:
        cur.execute(
            f"INSERT INTO {table} (activity_id, identity_id, role) "
            f"SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) ON CONFLICT DO NOTHING",
            [IntArray([r[0] for r in rows]), IntArray([r[1] for r in rows]), TextArray([r[2] for r in rows])],
        )


def _device_state(device_id: int, drafts: list[ActivityDraft]) -> None:
    """Keep the device's latest known state (battery, location, ...) from its newest events."""
    state_keys = STATE_KEYS
    if not any(key in d.extra for d in drafts for key in state_keys):
        return
    changed = False
    state = dict(Device.objects.filter(pk=device_id).values_list("state", flat=True).first() or {})
    for draft in sorted(drafts, key=lambda d: d.occurred_at):
        when = draft.occurred_at.isoformat()
        for key in state_keys:
            if key in draft.extra:
                prev = state.get(key)
                if not isinstance(prev, dict) or prev.get("at", "") <= when:
                    state[key] = {"value": draft.extra[key], "at": when}
                    changed = True
    if changed:
        Device.objects.filter(pk=device_id).update(state=state)


def _failures_record(workspace, connector_key, scope, source, device, failures, now) -> None:
    if not failures:
        return
    for raw, reason in failures:
        external_id = clean_text(str(raw.external_id))[:255]
        # A blank reason (or one that was only control characters) would leave the record unexplained.
        reason = clean_text(str(reason)).strip()[:MAX_REASON] or "no reason given by the connector"
        payload = _failure_payload(raw.payload)
        obj, created = ImportFailure.objects.get_or_create(
            scope=scope,
            external_id=external_id,
            defaults=dict(
                workspace=workspace, source=source, device=device, connector=connector_key,
                reason=reason, payload=payload, first_seen_at=now, last_seen_at=now,
            ),
        )
        if not created:
            ImportFailure.objects.filter(pk=obj.pk).update(
                reason=reason, payload=payload, attempts=F("attempts") + 1, last_seen_at=now, resolved_at=None
            )


def _failure_payload(payload):
    """A failed item's payload as JSON that PostgreSQL and SQLite store, whatever it holds:
    cleaned text, NaN and infinities as null, and a bounded ``repr`` for what is not JSON."""
    try:
        payload = clean_json(payload)
        if json_deeper_than(payload, MAX_RAW_DEPTH):
            return {"_error": f"payload nested deeper than {MAX_RAW_DEPTH} levels", "repr": clean_text(reprlib.repr(payload))}
        try:
            # Through JSON and back: keys become strings, dates ISO text, as the column keeps them.
            return orjson.loads(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS))
        except TypeError:  # an integer beyond 64 bits, a type JSON lacks
            return json.loads(json.dumps(payload, default=repr), parse_constant=lambda _: None)
    except Exception:  # the failure must be recorded whatever its payload is
        return {"repr": clean_text(reprlib.repr(payload))}
