"""Timeline fan-out (write side). Reads live in selectors/timelines.py.

Fan-out on write: every activity gets one TimelineEntry per contact among its participants
(the owner's own contact excluded) and one for its device. Both are a single
``INSERT … SELECT … ON CONFLICT DO NOTHING`` so a re-run adds nothing, and a rebuild of any
set of contacts is the same statement after a DELETE (on PostgreSQL the same rows, with only
their difference from what is stored written): what ingest writes and what a from-scratch
rebuild writes cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Sequence

from django.db import connection, transaction
from django.db.models import Count, Max
from django.utils.dateparse import parse_datetime

from .models import Activity, Contact, Device, Identity, Participant, TimelineEntry
from .ranking import contact_rank_rebuild
from .rawdb import IntArray, TextArray, ids_in, raw_cursor, update_from_unnest
from .visibility import visible_q, visible_sql


def _t(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _aware(value) -> dt.datetime:
    """RETURNING gives datetimes on PostgreSQL and ISO strings on SQLite."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def _contact_fanout_sql(where_column: str, in_ids: str) -> str:
    """Contact timeline rows of the activities (or contacts) whose ``where_column`` is in
    ``in_ids`` (a predicate from ``rawdb.ids_in``)."""
    return f"""
        INSERT INTO {_t(TimelineEntry)} (kind, owner_id, occurred_at, activity_id, channel, direction)
        SELECT DISTINCT 'c', i.contact_id, a.occurred_at, a.id, a.channel, a.direction
        FROM {_t(Participant)} p
        JOIN {_t(Identity)} i ON i.id = p.identity_id
        JOIN {_t(Contact)} c ON c.id = i.contact_id
        JOIN {_t(Activity)} a ON a.id = p.activity_id
        WHERE {where_column} {in_ids} AND NOT c.is_self AND c.merged_into_id IS NULL
        ON CONFLICT (kind, owner_id, activity_id) DO NOTHING
        RETURNING owner_id, channel, occurred_at
    """


def _contact_fanout_by_activity_sql_pg() -> str:
    # Driven from the id list (unnest), so the plan is index lookups per activity whatever the
    # table statistics say; joining from the contact side picked seq scans on fresh tables.
    return f"""
        INSERT INTO {_t(TimelineEntry)} (kind, owner_id, occurred_at, activity_id, channel, direction)
        SELECT DISTINCT 'c', i.contact_id, a.occurred_at, a.id, a.channel, a.direction
        FROM unnest(%s::bigint[]) AS x(id)
        JOIN {_t(Activity)} a ON a.id = x.id
        JOIN {_t(Participant)} p ON p.activity_id = x.id
        JOIN {_t(Identity)} i ON i.id = p.identity_id
        JOIN {_t(Contact)} c ON c.id = i.contact_id
        WHERE NOT c.is_self AND c.merged_into_id IS NULL
        ON CONFLICT (kind, owner_id, activity_id) DO NOTHING
        RETURNING owner_id, channel, occurred_at
    """


def _device_fanout_sql(in_ids: str) -> str:
    return f"""
        INSERT INTO {_t(TimelineEntry)} (kind, owner_id, occurred_at, activity_id, channel, direction)
        SELECT 'd', a.device_id, a.occurred_at, a.id, a.channel, a.direction
        FROM {_t(Activity)} a
        WHERE a.id {in_ids} AND a.device_id IS NOT NULL
        ON CONFLICT (kind, owner_id, activity_id) DO NOTHING
        RETURNING owner_id, channel, occurred_at
    """


def activities_fan_out(*, activity_ids: Sequence[int]) -> int:
    """Write the timeline rows of these activities and update contact/device summaries by
    what was actually inserted (so a repeated call changes nothing). Returns rows written."""
    if not activity_ids:
        return 0
    written = 0
    with transaction.atomic(), connection.cursor() as cur:
        for i in range(0, len(activity_ids), 5000):
            chunk = list(activity_ids[i : i + 5000])
            pred, params = ids_in(chunk)
            if connection.vendor == "postgresql":
                cur.execute(_contact_fanout_by_activity_sql_pg(), [chunk])
            else:
                cur.execute(_contact_fanout_sql("p.activity_id", pred), params)
            contact_rows = cur.fetchall()
            cur.execute(_device_fanout_sql(pred), params)
            device_rows = cur.fetchall()
            _bump_contacts(contact_rows)
            _bump_devices(device_rows)
            written += len(contact_rows) + len(device_rows)
    return written


def timeline_rows_insert(*, contact_rows: list[tuple[int, int]], device_rows: list[tuple[int, int]],
                         occurred: dict[int, dt.datetime]) -> int:
    """Insert the timeline rows (owner_id, activity_id) of freshly inserted activities, for
    contacts and devices, PostgreSQL only; bump summaries by what was new. Time, channel and
    direction are copied from the activity row inside PostgreSQL (sending a thousand
    timestamps as parameters cost more than the join); ``occurred`` (activity id → time)
    serves the summaries."""
    written = 0
    sql = f"""
        INSERT INTO {_t(TimelineEntry)} (kind, owner_id, occurred_at, activity_id, channel, direction)
        SELECT %s, x.owner_id, a.occurred_at, a.id, a.channel, a.direction
        FROM unnest(%s::bigint[], %s::bigint[]) AS x(owner_id, activity_id)
        JOIN {_t(Activity)} a ON a.id = x.activity_id
        ON CONFLICT (kind, owner_id, activity_id) DO NOTHING
        RETURNING owner_id, channel, activity_id
    """
    with raw_cursor() as cur:
        for kind, rows, bump in (("c", contact_rows, _bump_contacts), ("d", device_rows, _bump_devices)):
            if not rows:
                continue
            cur.execute(sql, [kind, IntArray([r[0] for r in rows]), IntArray([r[1] for r in rows])])
            returned = [(owner, channel, occurred[aid]) for owner, channel, aid in cur.fetchall()]
            bump(returned)
            written += len(returned)
    return written


def _bump_contacts(rows: list[tuple]) -> None:
    if not rows:
        return
    delta: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    newest: dict[int, object] = {}
    for owner_id, channel, occurred_at in rows:
        occurred_at = _aware(occurred_at)
        delta[owner_id][channel] += 1
        if owner_id not in newest or occurred_at > newest[owner_id]:
            newest[owner_id] = occurred_at
    if connection.vendor == "postgresql":
        _bump_contacts_sql(delta, newest)
        return
    # Lock in id order: two batches touching the same contacts cannot deadlock.
    contacts = list(Contact.objects.select_for_update().filter(pk__in=delta).order_by("pk"))
    for c in contacts:
        counts = dict(c.channel_counts or {})
        for channel, n in delta[c.pk].items():
            counts[channel] = counts.get(channel, 0) + n
        c.channel_counts = counts
        c.activity_count = sum(counts.values())
        if c.last_activity_at is None or newest[c.pk] > c.last_activity_at:
            c.last_activity_at = newest[c.pk]
    Contact.objects.bulk_update(contacts, ["channel_counts", "activity_count", "last_activity_at"])


def _bump_contacts_sql(delta, newest) -> None:
    """One UPDATE for all contacts of the batch, counts merged inside PostgreSQL."""
    ids = sorted(delta)
    update_from_unnest(
        _t(Contact), ids,
        """activity_count = t.activity_count + d.n,
           last_activity_at = GREATEST(t.last_activity_at, d.newest),
           channel_counts = t.channel_counts || (
               SELECT jsonb_object_agg(e.key, COALESCE((t.channel_counts ->> e.key)::bigint, 0) + e.value::bigint)
               FROM jsonb_each_text(d.delta) AS e
           )""",
        [
            ("n", "int", IntArray([sum(delta[i].values()) for i in ids])),
            ("newest", "timestamptz", TextArray([newest[i].isoformat() for i in ids])),
            ("delta", "jsonb", TextArray([json.dumps(delta[i]) for i in ids])),
        ],
    )


def _bump_devices(rows: list[tuple]) -> None:
    if not rows:
        return
    delta: dict[int, int] = defaultdict(int)
    newest: dict[int, object] = {}
    for owner_id, _channel, occurred_at in rows:
        occurred_at = _aware(occurred_at)
        delta[owner_id] += 1
        if owner_id not in newest or occurred_at > newest[owner_id]:
            newest[owner_id] = occurred_at
    if connection.vendor == "postgresql":
        ids = sorted(delta)
        update_from_unnest(
            _t(Device), ids,
            "activity_count = t.activity_count + d.n, last_event_at = GREATEST(t.last_event_at, d.newest)",
            [("n", "int", IntArray([delta[i] for i in ids])),
             ("newest", "timestamptz", TextArray([newest[i].isoformat() for i in ids]))],
        )
        return
    devices = list(Device.objects.select_for_update().filter(pk__in=delta).order_by("pk"))
    for d in devices:
        d.activity_count += delta[d.pk]
        if d.last_event_at is None or newest[d.pk] > d.last_event_at:
            d.last_event_at = newest[d.pk]
    Device.objects.bulk_update(devices, ["activity_count", "last_event_at"])


def contact_timelines_rebuild(*, contact_ids: Sequence[int], rank: bool = True) -> None:
    """Recompute the timelines and summaries of these contacts from participants: the result is
    exactly what a from-scratch rebuild gives. Contacts merged into another end up empty.
    ``rank`` False: their strength is not recounted (a merge that moved it already)."""
    contact_ids = sorted({int(c) for c in contact_ids})
    if not contact_ids:
        return
    with transaction.atomic(), connection.cursor() as cur:
        list(Contact.objects.select_for_update().filter(pk__in=contact_ids).order_by("pk").values_list("pk"))
        pred, params = ids_in(contact_ids)
        if connection.vendor == "postgresql":
            cur.execute(_contact_rebuild_sql_pg(), params * 2)
            _contact_summaries_write(contact_ids, cur.fetchall(), rank=rank)
            return
        cur.execute(f"DELETE FROM {_t(TimelineEntry)} WHERE kind = 'c' AND owner_id {pred}", params)
        cur.execute(_contact_fanout_sql("i.contact_id", pred), params)
        contact_summaries_refresh(contact_ids=contact_ids, rank=rank)


def _contact_rebuild_sql_pg() -> str:
    """The rebuild as one statement that writes only the difference (parameters: the contact
    ids, twice): rows no longer wanted deleted, rows whose activity's time, channel or direction
    changed corrected, missing rows inserted; it answers (contact, channel, shown items, newest
    shown) from the wanted rows, as ``contact_summaries_refresh`` counts them. A merge keeps the
    survivor's rows instead of deleting and re-inserting them (index upkeep was most of a
    merge's CPU), and the recount joining every row to its activity (for the erased ones) goes.
    The three writes touch disjoint rows, so their order inside the statement does not matter."""
    te = _t(TimelineEntry)
    return f"""
        WITH wanted AS MATERIALIZED (
            SELECT DISTINCT i.contact_id AS owner_id, a.occurred_at, a.id AS activity_id, a.channel, a.direction,
                   {visible_sql("a")} AS shown
            FROM {_t(Participant)} p
            JOIN {_t(Identity)} i ON i.id = p.identity_id
            JOIN {_t(Contact)} c ON c.id = i.contact_id
            JOIN {_t(Activity)} a ON a.id = p.activity_id
            WHERE i.contact_id = ANY(%s::bigint[]) AND NOT c.is_self AND c.merged_into_id IS NULL
        ), existing AS MATERIALIZED (
            SELECT id, owner_id, activity_id, occurred_at, channel, direction FROM {te}
            WHERE kind = 'c' AND owner_id = ANY(%s::bigint[])
        ), gone AS (
            DELETE FROM {te} WHERE id IN (
                SELECT e.id FROM existing e LEFT JOIN wanted w USING (owner_id, activity_id)
                WHERE w.activity_id IS NULL)
        ), corrected AS (
            UPDATE {te} t SET occurred_at = w.occurred_at, channel = w.channel, direction = w.direction
            FROM existing e JOIN wanted w USING (owner_id, activity_id)
            WHERE t.id = e.id AND (e.occurred_at, e.channel, e.direction)
                                  IS DISTINCT FROM (w.occurred_at, w.channel, w.direction)
        ), added AS (
            INSERT INTO {te} (kind, owner_id, occurred_at, activity_id, channel, direction)
            SELECT 'c', w.owner_id, w.occurred_at, w.activity_id, w.channel, w.direction FROM wanted w
            WHERE NOT EXISTS (SELECT FROM existing e WHERE e.owner_id = w.owner_id AND e.activity_id = w.activity_id)
            ON CONFLICT (kind, owner_id, activity_id) DO NOTHING
        )
        SELECT owner_id, channel, count(*), max(occurred_at) FROM wanted WHERE shown GROUP BY owner_id, channel
    """


def contact_summaries_refresh(*, contact_ids: Sequence[int], rank: bool = True) -> None:
    """Recount the summary fields of these contacts from the shown items of their timelines
    (an erased item leaves its timeline row for the feeds' tombstone, not the counts)."""
    rows = (
        TimelineEntry.objects.filter(visible_q("activity__"), kind="c", owner_id__in=contact_ids)
        .values_list("owner_id", "channel")
        .annotate(n=Count("id"), newest=Max("occurred_at"))
    )
    _contact_summaries_write(contact_ids, rows, rank=rank)


def _contact_summaries_write(contact_ids: Sequence[int], rows, *, rank: bool) -> None:
    """Store the summaries of these contacts from (contact, channel, shown items, newest shown)
    rows (none for a contact with nothing shown), then (``rank``) their strength from the same
    timelines."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    newest: dict[int, object] = {}
    for owner_id, channel, n, latest in rows:
        counts[owner_id][channel] = n
        if owner_id not in newest or latest > newest[owner_id]:
            newest[owner_id] = latest
    contacts = list(Contact.objects.filter(pk__in=contact_ids))
    for c in contacts:
        c.channel_counts = dict(sorted(counts.get(c.pk, {}).items()))
        c.activity_count = sum(c.channel_counts.values())
        c.last_activity_at = newest.get(c.pk)
    Contact.objects.bulk_update(contacts, ["channel_counts", "activity_count", "last_activity_at"])
    if rank:
        contact_rank_rebuild(contact_ids=contact_ids)  # strength follows the same timelines


def device_summaries_refresh(*, device_ids: Sequence[int]) -> None:
    """Recount the summary fields of these devices from the shown items of their timelines."""
    rows = (
        TimelineEntry.objects.filter(visible_q("activity__"), kind="d", owner_id__in=device_ids)
        .values("owner_id").annotate(n=Count("id"), newest=Max("occurred_at"))
    )
    found = {row["owner_id"]: row for row in rows}
    devices = list(Device.objects.filter(pk__in=device_ids))
    for d in devices:
        row = found.get(d.pk) or {"n": 0, "newest": None}
        d.activity_count, d.last_event_at = row["n"], row["newest"]
    Device.objects.bulk_update(devices, ["activity_count", "last_event_at"])


def workspace_timelines_rebuild(*, workspace_id: int) -> None:
    """Throw away and rebuild every contact and device timeline of a workspace (repair tool,
    and the reference the tests compare incremental results with)."""
    with transaction.atomic(), connection.cursor() as cur:
        contact_ids = list(Contact.objects.filter(workspace_id=workspace_id).values_list("pk", flat=True))
        device_ids = list(Device.objects.filter(workspace_id=workspace_id).values_list("pk", flat=True))
        if contact_ids:
            contact_timelines_rebuild(contact_ids=contact_ids)
        if device_ids:
            pred, params = ids_in(device_ids)
            cur.execute(f"DELETE FROM {_t(TimelineEntry)} WHERE kind = 'd' AND owner_id {pred}", params)
            Device.objects.filter(pk__in=device_ids).update(activity_count=0, last_event_at=None)
            ids = list(Activity.objects.filter(device_id__in=device_ids).values_list("pk", flat=True))
            for i in range(0, len(ids), 5000):
                p2, params2 = ids_in(ids[i : i + 5000])
                cur.execute(_device_fanout_sql(p2), params2)
                _bump_devices(cur.fetchall())
