"""Pushed items stored raw before anything else reads them (webhooks, the device API, OwnTracks,
MQTT), and the kick that sends them to ingest after commit. ``inbound_process`` (in
``services``) is the other half: a worker ingesting what was stored here."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterable

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from connectors.base import RawItem

from .conf import conf
from .devices import (
    DeviceBatch,
    DevicePush,
    device_push_lock,
    device_push_record,
    devices_push_lock,
    devices_push_record,
    items_seqs,
)
from .ingest import scope_for
from .models import Device, InboundItem, Source, Workspace
from .queue import task_send
from .rawdb import insert_returning_ids, json_text

log = logging.getLogger(__name__)


def device_events_store(
    *, device: Device, items: list[RawItem], at: dt.datetime | None, connector: str = "device",
) -> tuple[list[int], int]:
    """A device's pushed events, stored raw (``inbound_store``) with the seqs they carry held,
    and the device seen at ``at`` (None: not a sign of life), in one transaction
    (``streams.devices``). ``connector``: whose normalizer reads them (``owntracks`` for the
    app's own messages)."""
    with transaction.atomic():
        seq_high = device_push_lock(device=device)
        stored = inbound_store(workspace=device.workspace, connector=connector, items=items, device=device)
        device_push_record(device=device, items=items, seq_high=seq_high, seen_at=at)
    return stored


def devices_events_store(batches: list[DeviceBatch]) -> tuple[int, int]:
    """``device_events_store`` for many devices in one transaction (``mesh_mqtt``'s batches): on
    PostgreSQL one statement of each kind for all of them (the locks, the raw insert, the seq
    ranges, the devices' update) and one kick after commit, so that a batch spread over many
    devices costs the round trips of one. Returns (number newly stored, number already stored)."""
    rows = [(b.device, key, item) for b in batches for key, items in b.items.items() for item in items]
    with transaction.atomic():
        highs = devices_push_lock(b.device.pk for b in batches)
        if connection.vendor == "postgresql":
            stored = _devices_inbound_insert(rows)
            if stored:
                scopes = [scope_for(device=b.device) for b in batches]
                transaction.on_commit(lambda: inbound_kick_many(scopes=scopes, item_ids=stored))
        else:
            stored = [pk for b in batches for key, items in b.items.items()
                      for pk in inbound_store(workspace=b.device.workspace, connector=key, items=items, device=b.device)[0]]
        devices_push_record([
            DevicePush(b.device.pk, highs[b.device.pk], items_seqs(i for items in b.items.values() for i in items),
                       b.seen_at, b.offline_at) for b in batches])
    return len(stored), len(rows) - len(stored)


def _devices_inbound_insert(rows: list[tuple[Device, str, RawItem]]) -> list[int]:
    """``inbound_store``'s insert with the device, workspace and connector given per row."""
    now = timezone.now()
    return insert_returning_ids(InboundItem._meta.db_table, fixed=[
        ("source_id", "bigint", None), ("state", "text", InboundItem.State.PENDING)], columns=[
        ("workspace_id", "bigint", [str(d.workspace_id) for d, _, _ in rows]),
        ("connector", "text", [key for _, key, _ in rows]),
        ("scope", "text", [scope_for(device=d) for d, _, _ in rows]),
        ("device_id", "bigint", [str(d.pk) for d, _, _ in rows]),
        ("external_id", "text", [i.external_id for _, _, i in rows]),
        ("payload", "jsonb", [json_text(i.payload) for _, _, i in rows]),
        ("received_at", "timestamptz", [(i.received_at or now).isoformat() for _, _, i in rows])],
        conflict="(scope, external_id)")


def inbound_store(
    *, workspace: Workspace, connector: str, items: Iterable[RawItem],
    source: Source | None = None, device: Device | None = None,
) -> tuple[list[int], int]:
    """Store raw pushed items first (durably, in PostgreSQL), before any processing.
    Returns (ids of newly stored items, number already stored). Ingestion is enqueued after
    commit."""

    scope = scope_for(source=source, device=device)
    items = list(items)
    if not items:
        return [], 0
    # One INSERT … ON CONFLICT DO NOTHING RETURNING: the constraint answers "seen before?" and
    # we learn exactly which rows are new (webhooks call this once per request: the three ORM
    # statements it replaces cost 10× the CPU, measured in bench/sms_bench.py).
    meta = InboundItem._meta
    fields = [meta.get_field(n) for n in (
        "workspace", "connector", "scope", "source", "device", "external_id", "payload", "received_at", "state")]
    qn = connection.ops.quote_name
    now = timezone.now()
    # One statement: outside a transaction it commits by itself (no BEGIN/COMMIT round trips
    # per webhook) and the kick below runs at once; inside the caller's, after it commits.
    if connection.vendor == "postgresql":  # rows as arrays: a batch of hundreds (MQTT) costs one short statement
        ids = insert_returning_ids(meta.db_table, fixed=[
            ("workspace_id", "bigint", workspace.pk), ("connector", "text", connector), ("scope", "text", scope),
            ("source_id", "bigint", source.pk if source else None), ("device_id", "bigint", device.pk if device else None),
            ("state", "text", InboundItem.State.PENDING)], columns=[
            ("external_id", "text", [i.external_id for i in items]),
            ("payload", "jsonb", [json_text(i.payload) for i in items]),
            ("received_at", "timestamptz", [(i.received_at or now).isoformat() for i in items])],
            conflict="(scope, external_id)")
    else:
        params: list = []
        for i in items:
            values = (workspace.pk, connector, scope, source.pk if source else None, device.pk if device else None,
                      i.external_id, i.payload, i.received_at or now, InboundItem.State.PENDING)
            params.extend(f.get_db_prep_save(v, connection) for f, v in zip(fields, values, strict=True))
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        with connection.cursor() as cur:
            cur.execute(f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
                        f"VALUES {', '.join([row] * len(items))} ON CONFLICT (scope, external_id) DO NOTHING RETURNING id",
                        params)
            ids = [r[0] for r in cur.fetchall()]
    if ids:
        transaction.on_commit(lambda: inbound_kick(scope=scope, item_ids=ids))
    return ids, len(items) - len(ids)


# A scope's kick stays set this long at most (a lost task message is re-sent by the next item
# after that; the workers' sweep re-sends items pending for MESH_INBOUND_SWEEP_SECONDS whatever
# happens).
INBOUND_KICK_TTL = 10


def inbound_kick_key(scope: str) -> str:
    return f"mesh:inbound-kick:{scope}"


def inbound_kick(*, scope: str, item_ids: list[int]) -> None:
    """Make sure one ``ingest_inbound`` task is on its way for ``scope``; called after the
    items committed. At most one task per scope is queued: it clears the kick *before* it
    looks for pending items, so an item committed before the clear is found by that task and
    one committed after it sets a new kick. Under a burst of webhooks this is a handful of
    tasks per second instead of one per request (a solo worker does ~350 empty tasks/s: one
    task per request was what bounded the webhook benchmark)."""
    key = inbound_kick_key(scope)
    try:
        if not cache.add(key, 1, timeout=INBOUND_KICK_TTL):
            return
        # A short coalescing window: the task is queued now and runs this much later, so a
        # burst of webhooks is one batch of many items, not many batches of a few (each batch
        # has a fixed cost: its transaction, identity lookups, the summaries).
        task_send("ingest_inbound", item_ids, countdown=conf.INBOUND_COALESCE_S or None)
    except Exception:  # Redis is down: the items are stored; the workers' sweep sends them
        with contextlib.suppress(Exception):
            cache.delete(key)
        log.exception("could not queue ingest of %d stored item(s) of %s", len(item_ids), scope)


def inbound_kick_many(*, scopes: Iterable[str], item_ids: list[int]) -> None:
    """``inbound_kick`` for a batch of many scopes (``mesh_mqtt``'s): one read says which scopes
    have a task on its way (under a burst, all of them: one Redis round trip per batch), and
    one task takes the items of the others (``inbound_process`` sorts them by scope)."""
    keys = [inbound_kick_key(scope) for scope in dict.fromkeys(scopes)]
    added: list[str] = []
    try:
        waiting = cache.get_many(keys)
        added = [key for key in keys if key not in waiting and cache.add(key, 1, timeout=INBOUND_KICK_TTL)]
        if added:
            task_send("ingest_inbound", item_ids, countdown=conf.INBOUND_COALESCE_S or None)
    except Exception:  # Redis is down: the items are stored; the workers' sweep sends them
        with contextlib.suppress(Exception):
            cache.delete_many(added)
        log.exception("could not queue ingest of %d stored item(s) of %d scope(s)", len(item_ids), len(keys))
