"""Relationship strength (services): what counts as an interaction, the ``ConversationDay``
aggregate folded from what ingest queues, and the ``ContactStrength`` rows computed from it
(the formula is in ``streams.selectors.ranking``); cadences for keep in touch.

Long because: the rule of what counts, the aggregate's writers (fold, merge move, contact
rebuild, workspace rebuild, each on PostgreSQL and SQLite) and the score they feed stay in one
module, so that incremental equals rebuild can be read in one place.

What counts: an activity on a contact's timeline that is not erased, not automated (newsletters,
no-reply mail), not device telemetry (battery, location, presence, ...) and not a draft; calls
and meetings count both ways (a missed or rejected call only as theirs), anything else by its
direction (one with no direction does not count). A conversation is the thread key, or the
channel itself when there is none; it counts once per UTC day and channel however many messages
it has. The last touch is the newest interaction that counts.

Kept current by three paths that give the same rows:
- ingest (``rank_touches_queue``) queues what of the batch counts as one ``RankBatch`` row of
  arrays (contact, time, channel, conversation, way: all the fold needs); the beat
  (``rank_refresh`` task) and every read (``strengths_current``) fold the queue into
  conversation-days and re-score those contacts (``rank_pending_refresh``);
- anything that rewrites timelines (merge, unmerge, reprocess, erasure, a workspace rebuild)
  stores the contacts' summaries (``streams.timelines``), which calls ``contact_rank_rebuild``:
  their queued interactions are dropped and their rows recomputed from their timelines (one
  snapshot), and their strength at once. Every rewrite that can stop an interaction counting
  (erasure, reprocessing) or move it (merge, unmerge) goes through it, which is why the fold
  can trust the queue without reading the activities. A merge with no counted activity on both
  timelines moves the merged contact's rows and queued interactions instead (``contact_rank_merge``);
- ``workspace_rank_rebuild`` (``mesh_rank --rebuild``) recomputes everything from the timelines.
Folds and rebuilds take turns (``_rank_lock``); an interaction is counted by exactly one
of them.
``ContactStrength`` is computed from the rows only, as of a day (a fold adds what it folded to
the stored all-time parts and reads the last year's rows): rows computed before today are
recomputed from all rows by the beat and the first read of a day, so scores decay without ingest.

The score (0-100) is a weighted sum of five factors, each 0-1, computed from the contact's
``ConversationDay`` rows (one per conversation, day and channel; what counts is above):

- frequency, 0.30: 1 - exp(-w / 8), w = conversation-days in the last 30 days + 1/2 of those
  30-90 days old + 1/4 of those 90-365 days old;
- recency, 0.25: 0.5 ** (days since the last touch / RECENCY_HALF_LIFE_DAYS);
- reciprocity, 0.15: min(in, out) / max(in, out) over the last 365 days' conversation-days
  (a call or meeting counts both ways);
- breadth, 0.15: channels used in the last 365 days, up to 3, / 3;
- tenure, 0.15: 1 - 0.5 ** (days from the first to the last touch / 365), so a long history
  is not zeroed by a quiet month.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import Max
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from .dbstats import fold_statistics_refresh
from .models import (
    Activity,
    Contact,
    ContactStrength,
    ConversationDay,
    KeepInTouch,
    KeepInTouchDefault,
    RankBatch,
    TimelineEntry,
    Workspace,
)
from .rawdb import IntArray, TextArray, ids_in, raw_cursor
from .visibility import visible_q, visible_sql

RECENCY_HALF_LIFE_DAYS = 30
WEIGHTS = {"frequency": 0.30, "recency": 0.25, "reciprocity": 0.15, "breadth": 0.15, "tenure": 0.15}
# Lowest score of each tier, strongest first; below the last: "faint".
TIERS = (("strong", 60), ("steady", 35), ("weak", 15))
FAINT = "faint"
TIER_NAMES = (*(name for name, _ in TIERS), FAINT)
# Cadences (ideal, at most) in days for contacts without their own, per tier; None: no reminders.
DEFAULT_CADENCES: dict[str, tuple[int, int] | None] = {
    "strong": (14, 42), "steady": (30, 90), "weak": None, FAINT: None,
}


@dataclass(frozen=True, slots=True)
class StrengthParts:
    """What the score is computed from: counts of conversation-days and touch times."""

    conversations: int
    last_30: int
    last_90: int
    last_365: int
    in_90: int
    out_90: int
    in_365: int
    out_365: int
    channels_90: tuple[str, ...]
    channels_365: int
    first_touch_at: dt.datetime | None
    last_touch_at: dt.datetime | None


def tier_of(score: int) -> str:
    for name, low in TIERS:
        if score >= low:
            return name
    return FAINT


def strength_factors(parts: StrengthParts, *, today: dt.date) -> dict[str, float]:
    """The five factors (0-1) of the score as of ``today``."""
    weighted = parts.last_30 + (parts.last_90 - parts.last_30) / 2 + (parts.last_365 - parts.last_90) / 4
    recency = tenure = 0.0
    if parts.last_touch_at is not None:
        quiet_days = max(0, (today - parts.last_touch_at.astimezone(dt.UTC).date()).days)
        recency = 0.5 ** (quiet_days / RECENCY_HALF_LIFE_DAYS)
        span = (parts.last_touch_at.astimezone(dt.UTC).date() - parts.first_touch_at.astimezone(dt.UTC).date()).days
        tenure = 1 - 0.5 ** (span / 365)
    both = max(parts.in_365, parts.out_365)
    return {
        "frequency": 1 - math.exp(-weighted / 8),
        "recency": recency,
        "reciprocity": min(parts.in_365, parts.out_365) / both if both else 0.0,
        "breadth": min(parts.channels_365, 3) / 3,
        "tenure": tenure,
    }


def strength_score(parts: StrengthParts, *, today: dt.date) -> int:
    factors = strength_factors(parts, today=today)
    return round(100 * sum(WEIGHTS[name] * value for name, value in factors.items()))


def strength_parts(*, today: dt.date, contact_ids: list[int] | None = None,
                   workspace_id: int | None = None) -> dict[int, StrengthParts]:
    """The parts of every contact (of ``contact_ids``, or of the workspace) that has
    conversation-days, from ``ConversationDay``."""
    return {contact_id: parts for contact_id, (_, parts) in _scored_parts(today, contact_ids, workspace_id).items()}


def _scored_parts(today: dt.date, contact_ids: Sequence[int] | None,
                  workspace_id: int | None, *, since: dt.date | None = None) -> dict[int, tuple[int, StrengthParts]]:
    """(workspace, parts) per contact in one grouped read, the last 90 days' channels as one
    comma-joined aggregate (a second read of them was a third of a re-scoring). ``since``: only
    the conversation-days from that day on are read (the all-time parts then count those alone)."""
    postgres = connection.vendor == "postgresql"
    if contact_ids is not None:
        if not contact_ids:
            return {}
        pred, params = ("= ANY(%s)", [IntArray(contact_ids)]) if postgres else ids_in(contact_ids)
        scope, where = "", f"d.contact_id {pred}"
    else:
        scope, where, params = f"JOIN {_t(Contact)} k ON k.id = d.contact_id", "k.workspace_id = %s", [workspace_id]
    d30, d90, d365 = (today - dt.timedelta(days=n - 1) for n in (30, 90, 365))
    theirs, ours = "(inbound > 0 OR mutual > 0)", "(outbound > 0 OR mutual > 0)"
    channels = "string_agg(DISTINCT channel, ',')" if postgres else "GROUP_CONCAT(DISTINCT channel)"
    # FILTER, not CASE: the distinct aggregates then sort only the window's rows, not every row
    # of the contact (most are older than a year). Grouped by the contact alone, the workspace
    # joined after: grouping by both re-sorted the index-ordered rows, spilling to disk.
    sql = f"""
        SELECT p.*, c.workspace_id FROM (
            SELECT d.contact_id, COUNT(*), COUNT(*) FILTER (WHERE day >= %s), COUNT(*) FILTER (WHERE day >= %s),
                   COUNT(*) FILTER (WHERE day >= %s),
                   COUNT(*) FILTER (WHERE day >= %s AND {theirs}), COUNT(*) FILTER (WHERE day >= %s AND {ours}),
                   COUNT(*) FILTER (WHERE day >= %s AND {theirs}), COUNT(*) FILTER (WHERE day >= %s AND {ours}),
                   COUNT(DISTINCT channel) FILTER (WHERE day >= %s), {channels} FILTER (WHERE day >= %s),
                   MIN(first_at), MAX(last_at)
            FROM {_t(ConversationDay)} d {scope}
            WHERE {where}{" AND d.day >= %s" if since else ""} GROUP BY d.contact_id
        ) p JOIN {_t(Contact)} c ON c.id = p.contact_id
    """
    days = [d.isoformat() for d in (d30, d90, d365, d90, d90, d365, d365, d365, d90)]
    with raw_cursor() if postgres else connection.cursor() as cur:
        cur.execute(sql, [*days, *params, *([since.isoformat()] if since else [])])
        rows = cur.fetchall()
    return {
        contact_id: (workspace, StrengthParts(
            total, l30, l90, l365, in90, out90, in365, out365, tuple(sorted(ch90.split(",") if ch90 else ())),
            ch365, _aware(first), _aware(last)))
        for contact_id, total, l30, l90, l365, in90, out90, in365, out365, ch365, ch90, first, last, workspace in rows
    }


def _aware(value):
    """SQLite's MIN/MAX of a datetime column comes back as text."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


# Device events that describe the device, not a conversation with anyone.
TELEMETRY_VERBS = frozenset({
    "battery", "charging", "location", "place", "presence", "network", "wifi", "motion", "steps", "heartbeat",
    "screen", "app", "status",
})
BOTH_WAYS_VERBS = frozenset({"call", "meeting"})
UNANSWERED = ("missed", "rejected", "declined", "busy", "voicemail")
REFRESH_CHUNK = 2000
# Queued interactions per fold transaction: a contact is re-scored once per fold, so the larger
# the fewer times a busy contact is (no join limits it: the queue holds all the fold reads).
FOLD_CHUNK = 500_000 if connection.vendor == "postgresql" else 10_000
# Contacts re-scored per read of their conversation-days (SQLite: one parameter each).
SCORE_CHUNK = 50_000 if connection.vendor == "postgresql" else REFRESH_CHUNK
RANK_LOCK = 0x6D657368_0002  # "mesh" + 2: pg_advisory_xact_lock key of folds and rebuilds


class RankError(ValueError):
    """A cadence or setting that cannot be saved as asked; the message is for the user."""


def interaction_way(*, verb: str, direction: str, automated: bool, event_type: str = "") -> str | None:
    """How an activity counts: "in", "out", "both", or None when it does not count."""
    if automated or verb in TELEMETRY_VERBS or verb == "draft":
        return None
    if verb in BOTH_WAYS_VERBS and not any(word in (event_type or "") for word in UNANSWERED):
        return "both"
    if direction in ("in", "out"):
        return direction
    return "in" if verb in BOTH_WAYS_VERBS else None


def _way_of(verb: str, direction: str, automated: bool, event_type: str) -> str | None:
    """``interaction_way``, cached per kind of activity (a batch has a handful). Event types come
    from the sources: a long one is not kept (extra may hold 256 KB)."""
    if len(event_type) > 64:
        return interaction_way(verb=verb, direction=direction, automated=automated, event_type=event_type)
    return _way_cached(verb, direction, automated, event_type)


@functools.lru_cache(maxsize=1024)
def _way_cached(verb: str, direction: str, automated: bool, event_type: str) -> str | None:
    return interaction_way(verb=verb, direction=direction, automated=automated, event_type=event_type)


Key = tuple[int, dt.date, str, str]  # contact, day, channel, conversation
_WAY_INDEX = {"in": 0, "out": 1, "both": 2}


def _add(acc: dict, contact_id: int, occurred_at: dt.datetime, channel: str, conversation: str, way: str) -> None:
    occurred_at = occurred_at.astimezone(dt.UTC)
    key = (contact_id, occurred_at.date(), channel, conversation)
    row = acc.get(key)
    if row is None:
        row = acc[key] = [0, 0, 0, occurred_at, occurred_at]
    row[_WAY_INDEX[way]] += 1
    row[3] = min(row[3], occurred_at)
    row[4] = max(row[4], occurred_at)


_FACTS = ("contact_ids", "occurred_micros", "channels", "conversations", "ways")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
# The queue's times are microseconds since the epoch (UTC): ingest computes them exactly in
# Python and sends integers, the cheapest for both sides; the fold turns them into a UTC day per
# interaction (integer division, rounded down: / rounds toward zero) and a timestamp per group.
_UTC_DAY = "date '1970-01-01' + ({micros} / 86400000000 - (mod({micros}, 86400000000) < 0)::int)::int"
_AT = "timestamptz 'epoch' + {micros} * interval '1 microsecond'"


def rank_touches_queue(*, workspace_id: int, activities: Iterable[tuple[int, Any]],
                       touches: Iterable[tuple[int, int]]) -> None:
    """Ingest's step: ``touches`` are the (contact id, activity id) timeline rows a batch just
    wrote, ``activities`` its (id, activity) pairs, an activity being anything with the Activity
    model's fields (ingest passes its rows). Those that count are queued as one row of parallel
    arrays holding all the fold needs (it joins nothing); summing them into conversation-days
    is ``rank_pending_refresh``'s. Written for speed (a batch has ~1,000 activities and ~1,700
    touches): no tuple per touch, a cached rule per kind of activity."""
    counted = {}  # per activity, not per timeline row
    for activity_id, a in activities:
        if way := _way_of(a.verb, a.direction, a.automated, str(a.extra.get("type", ""))):
            counted[activity_id] = ((a.occurred_at - _EPOCH) // _MICROSECOND, a.channel, a.thread_key or "", way)
    columns = contact_ids, occurred_micros, channels, conversations, ways = [], [], [], [], []
    to_contacts, to_micros, to_channels, to_conversations, to_ways = (column.append for column in columns)
    for contact_id, activity_id in touches:
        if (fact := counted.get(activity_id)) is not None:
            to_contacts(contact_id)
            to_micros(fact[0])
            to_channels(fact[1])
            to_conversations(fact[2])
            to_ways(fact[3])
    if not contact_ids:
        return
    if connection.vendor != "postgresql":
        RankBatch.objects.create(workspace_id=workspace_id, interactions=len(contact_ids), contact_ids=contact_ids,
                                 occurred_micros=occurred_micros, channels=channels, conversations=conversations,
                                 ways=ways)
        return
    # One row of arrays per batch: a row per interaction cost the server about twice as much.
    with raw_cursor() as cur:
        cur.execute(f"INSERT INTO {_t(RankBatch)} (workspace_id, interactions, {', '.join(_FACTS)}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [workspace_id, len(contact_ids), IntArray(contact_ids), IntArray(occurred_micros), TextArray(channels),
                     TextArray(conversations), TextArray(ways)])


def _rank_lock() -> None:
    """Folds and rebuilds of conversation-days take turns, until the transaction ends: a rebuild
    replaces its contacts' rows and drops their queued interactions, so a fold committing meanwhile
    would be lost or counted twice. Ingest never waits for it. (SQLite: one writer.)"""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [RANK_LOCK])


def _touches(**timeline_filter):
    """(contact, channel, verb, direction, occurred at, thread key, automated, event type) of the
    shown contact timeline rows that match."""
    return (
        TimelineEntry.objects.filter(visible_q("activity__"), kind="c", **timeline_filter)
        .annotate(event_type=KeyTextTransform("type", "activity__extra"))
        .values_list("owner_id", "activity__channel", "activity__verb", "activity__direction",
                     "activity__occurred_at", "activity__thread_key", "activity__automated", "event_type")
        .iterator(chunk_size=5000)
    )


# Adding summed conversation-days ({new}) to the kept ones ({t}): counts added, first and last
# time the least and greatest, so any split of the interactions into folds gives the rows a rebuild gives.
_ADD = """inbound = {t}.inbound + {new}.inbound, outbound = {t}.outbound + {new}.outbound,
    mutual = {t}.mutual + {new}.mutual,
    first_at = {least}({t}.first_at, {new}.first_at), last_at = {greatest}({t}.last_at, {new}.last_at)"""
_MERGE = "ON CONFLICT (contact_id, day, channel, conversation) DO UPDATE SET " + _ADD
_SAME_DAY = " AND ".join(f"d.{c} = s.{c}" for c in ("contact_id", "day", "channel", "conversation"))
_CD_COLUMNS = "(contact_id, day, channel, conversation, inbound, outbound, mutual, first_at, last_at)"
# ``interaction_way`` in SQL, its parameters ``_WAY_PARAMS`` (no-count verbs, both-ways verbs,
# unanswered patterns, both-ways verbs); incremental == rebuild (tests/test_ranking.py) holds the
# two to one rule.
_WAY_SQL = """CASE WHEN a.automated OR a.verb = ANY(%s) THEN NULL
                   WHEN a.verb = ANY(%s) AND NOT COALESCE(a.extra ->> 'type', '') LIKE ANY(%s) THEN 'both'
                   WHEN a.direction IN ('in', 'out') THEN a.direction
                   WHEN a.verb = ANY(%s) THEN 'in' END"""
_WAY_PARAMS = [sorted(TELEMETRY_VERBS | {"draft"}), sorted(BOTH_WAYS_VERBS), [f"%{word}%" for word in UNANSWERED],
               sorted(BOTH_WAYS_VERBS)]


def _claimed_ids_sql(workspace_id: int, upto: int) -> tuple[str, list]:
    """The workspace's oldest queued batches (ids up to ``upto``) holding up to FOLD_CHUNK
    interactions between them (at least one batch)."""
    return f"""SELECT id FROM (SELECT id, interactions, SUM(interactions) OVER (ORDER BY id) AS running
                               FROM {_t(RankBatch)} WHERE workspace_id = %s AND id <= %s) q
               WHERE running - interactions < %s""", [workspace_id, upto, FOLD_CHUNK]


class Added(NamedTuple):
    """What a fold added to one contact's conversation-days: the keys it did not have before,
    and the first and last time among the interactions folded."""

    new_days: int
    first_at: dt.datetime
    last_at: dt.datetime


def _fold_claimed(workspace_id: int, upto: int) -> dict[int, Added | None]:
    """Take a chunk of the queue off it and add it to the conversation-days; returns the
    contacts whose rows changed, with what was added to them (PostgreSQL; None on SQLite). The
    queue holds all the fold needs, so nothing is read from the activities: an interaction that
    stops counting after it was queued (its activity erased, reprocessed, or moved to another
    contact by a merge or unmerge) is dropped from the queue by the recount of its contacts that
    every such rewrite makes (``contact_rank_rebuild``), or relabelled by a merge's move
    (``contact_rank_merge``).
    PostgreSQL: claimed, summed and written in one statement, so a batch committed meanwhile is
    either taken here or left for the next fold; SQLite: summed in Python (one writer)."""
    claimed_ids, params = _claimed_ids_sql(workspace_id, upto)
    if connection.vendor != "postgresql":
        with connection.cursor() as cur:
            cur.execute(claimed_ids, params)
            ids = [row[0] for row in cur.fetchall()]
        acc: dict[Key, list] = {}
        for batch in RankBatch.objects.filter(pk__in=ids):
            for contact_id, micros, channel, conversation, way in zip(
                    *(getattr(batch, name) for name in _FACTS), strict=True):
                _add(acc, contact_id, _EPOCH + dt.timedelta(microseconds=micros), channel, conversation, way)
        RankBatch.objects.filter(pk__in=ids).delete()
        _upsert_sqlite(acc)
        return dict.fromkeys(sorted({key[0] for key in acc}))
    table = _t(ConversationDay)
    with raw_cursor() as cur:
        # Summed by sorting, not hashing: the sort's order is the index's, and the insert keeps
        # it (a CTE gives its rows back in the order they were made), so one sort does for both;
        # hashing the groups and then sorting them cost a fifth more. The sort stays in memory
        # for a whole chunk (FOLD_CHUNK interactions: ~52 MB; the default 4 MB spilled to disk).
        cur.execute("SET LOCAL enable_hashagg = off")
        cur.execute("SET LOCAL work_mem = '64MB'")
        cur.execute(f"""
            WITH claimed AS (
                DELETE FROM {_t(RankBatch)} WHERE id IN ({claimed_ids}) RETURNING {", ".join(_FACTS)}
            ),
            summed AS MATERIALIZED (
                SELECT contact_id, {_UTC_DAY.format(micros="t")} AS day, channel, conversation,
                       COUNT(*) FILTER (WHERE way = 'in') AS inbound, COUNT(*) FILTER (WHERE way = 'out') AS outbound,
                       COUNT(*) FILTER (WHERE way = 'both') AS mutual,
                       {_AT.format(micros="MIN(t)")} AS first_at, {_AT.format(micros="MAX(t)")} AS last_at
                FROM claimed, unnest({", ".join(_FACTS)}) AS f(contact_id, t, channel, conversation, way)
                GROUP BY 1, 2, 3, 4
            ),
            -- Per contact: what is added (returned), and its newest kept day. A key on a day after
            -- that cannot be kept: only the others are looked up (an import in time order adds
            -- mostly such keys: one probe per contact then, not one per key).
            per_contact AS MATERIALIZED (
                SELECT c.*, (SELECT MAX(x.day) FROM {table} x WHERE x.contact_id = c.contact_id) AS newest_day
                FROM (SELECT contact_id, COUNT(*) AS days, MIN(first_at) AS first_at, MAX(last_at) AS last_at
                      FROM summed GROUP BY 1) c
            ),
            -- Update the kept rows and plainly insert the new ones, not ON CONFLICT: its speculative
            -- insertion was a third of the write. Safe because folds and rebuilds, the only writers,
            -- take turns (_rank_lock); both parts see the rows as they were before the statement.
            -- The insert skips what the update returned (a hash of those keys) instead of probing
            -- the index a second time, and goes in the index's order (the sums').
            kept AS (
                UPDATE {table} d SET {_ADD.format(t="d", new="s", least="LEAST", greatest="GREATEST")}
                FROM summed s JOIN per_contact n ON n.contact_id = s.contact_id
                WHERE s.day <= n.newest_day AND {_SAME_DAY} RETURNING d.contact_id, d.day, d.channel, d.conversation
            ),
            added AS (
                INSERT INTO {table} {_CD_COLUMNS}
                SELECT * FROM summed s WHERE NOT EXISTS (SELECT FROM kept d WHERE {_SAME_DAY})
            ),
            kept_per_contact AS (SELECT contact_id, COUNT(*) AS days FROM kept GROUP BY 1)
            SELECT p.contact_id, p.days - COALESCE(k.days, 0), p.first_at, p.last_at
            FROM per_contact p LEFT JOIN kept_per_contact k ON k.contact_id = p.contact_id
        """, params)
        return {contact_id: Added(new_days, first_at, last_at) for contact_id, new_days, first_at, last_at in cur}


def _fold(workspace_id: int, upto: int, today: dt.date | None) -> int:
    """One transaction: a chunk of the queue added to the conversation-days, and the contacts
    re-scored. Returns the contacts re-scored."""
    with transaction.atomic(savepoint=False):
        _rank_lock()
        added = _fold_claimed(workspace_id, upto)
        _strengths_after_fold(added, today or utc_today())
    return len(added)


def _upsert_sqlite(acc: dict[Key, list]) -> None:
    """Add summed conversation-days to the kept ones (``_ADD``; MIN/MAX of two values), timestamps
    as Django stores them (naive UTC text)."""
    keys = sorted(acc)
    table = _t(ConversationDay)
    with connection.cursor() as cur:
        for i in range(0, len(keys), 100):
            part = keys[i : i + 100]
            params: list = []
            for k in part:
                r = acc[k]
                params += [k[0], k[1].isoformat(), k[2], k[3], r[0], r[1], r[2], _db_time(r[3]), _db_time(r[4])]
            cur.execute(
                f"INSERT INTO {table} {_CD_COLUMNS} VALUES {', '.join(['(%s, %s, %s, %s, %s, %s, %s, %s, %s)'] * len(part))} "
                + _MERGE.format(t=table, new="excluded", least="MIN", greatest="MAX"), params,
            )


def _db_time(value: dt.datetime):
    return connection.ops.adapt_datetimefield_value(value)


def _t(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


# --- recomputing from the timelines --------------------------------------------------------------


def contact_rank_rebuild(*, contact_ids: Sequence[int], today: dt.date | None = None) -> None:
    """Recompute these contacts' conversation-days from their timelines (the same sums the folds
    make) and their strength, dropping their queued interactions (so the fold checks none
    against the activities). Called wherever timelines store their contacts' summaries
    (``streams.timelines``): merges, unmerges, reprocessing and erasure keep ranking right
    through it."""
    contact_ids = sorted({int(c) for c in contact_ids})
    if not contact_ids:
        return
    # Joining the caller's transaction, never a savepoint (here and below): SQLite refuses one
    # while a statement of the caller is still open (the timeline rebuild's INSERT … RETURNING).
    with transaction.atomic(savepoint=False):
        _rank_lock()
        for i in range(0, len(contact_ids), REFRESH_CHUNK):
            chunk = contact_ids[i : i + REFRESH_CHUNK]
            ConversationDay.objects.filter(contact_id__in=chunk).delete()
            if connection.vendor == "postgresql":
                _rebuilt_sql(chunk)
                continue
            _queued_drop_sqlite(set(chunk))  # SQLite: one writer
            acc: dict[Key, list] = {}
            for contact_id, channel, verb, direction, occurred_at, thread_key, automated, event_type in _touches(
                    owner_id__in=chunk):
                if way := interaction_way(verb=verb, direction=direction, automated=automated, event_type=event_type):
                    _add(acc, contact_id, occurred_at, channel, thread_key or "", way)
            if acc:
                _upsert_rebuilt(acc)
        strengths_refresh(contact_ids=contact_ids, today=today)


def contact_rank_merge(*, target_id: int, other_id: int, today: dt.date | None = None) -> bool:
    """A merge's recount without reading the timelines again: ``other``'s conversation-days
    become ``target``'s (added where both have the key, as a fold adds) and its queued
    interactions are relabelled ``target``'s. That equals the rebuild unless a counted activity is
    on both timelines (the merged timeline holds it once, the sum would count it twice): then it
    returns False having changed nothing, as on SQLite, and the rebuild does the recount. Call it
    before the timelines are rebuilt: it reads them as they were."""
    if connection.vendor != "postgresql":
        return False
    table, te = _t(ConversationDay), _t(TimelineEntry)
    with transaction.atomic(savepoint=False):
        _rank_lock()
        with raw_cursor() as cur:
            # INTERSECT (a hash or a sort) whatever the statistics say: as a join, contacts they do
            # not know yet (estimated at a row each) could be planned as a nested loop over both
            # timelines. The few shared activities are then looked up one by one.
            cur.execute(f"""
                SELECT EXISTS (
                    SELECT FROM (SELECT activity_id FROM {te} WHERE kind = 'c' AND owner_id = %s
                                 INTERSECT SELECT activity_id FROM {te} WHERE kind = 'c' AND owner_id = %s) s
                    CROSS JOIN LATERAL (SELECT FROM {_t(Activity)} a WHERE a.id = s.activity_id
                                        AND {visible_sql("a")} AND ({_WAY_SQL}) IS NOT NULL OFFSET 0) a)
            """, [other_id, target_id, *_WAY_PARAMS])
            if cur.fetchone()[0]:
                return False
            cur.execute(f"""
                WITH requeued AS (
                    UPDATE {_t(RankBatch)} SET contact_ids = array_replace(contact_ids, %s, %s)
                    WHERE contact_ids && ARRAY[%s]::bigint[]
                ),
                moved AS (
                    DELETE FROM {table} WHERE contact_id = %s
                    RETURNING day, channel, conversation, inbound, outbound, mutual, first_at, last_at
                )
                INSERT INTO {table} {_CD_COLUMNS} SELECT %s, * FROM moved ORDER BY day, channel, conversation
            """ + _MERGE.format(t=table, new="excluded", least="LEAST", greatest="GREATEST"),
                [other_id, target_id, other_id, other_id, target_id])
        strengths_refresh(contact_ids=[target_id, other_id], today=today)
    return True


def _queued_drop_sqlite(contact_ids: set[int]) -> None:
    """SQLite's ``_rebuilt_sql`` queue step: these contacts' elements taken out of every queued batch."""
    for batch in RankBatch.objects.all():
        keep = [i for i, c in enumerate(batch.contact_ids) if c not in contact_ids]
        if len(keep) < batch.interactions:
            for name in _FACTS:
                setattr(batch, name, [getattr(batch, name)[i] for i in keep])
            batch.interactions = len(keep)
            batch.save()


def _rebuilt_sql(chunk: list[int]) -> None:
    """PostgreSQL: the contacts' queued interactions dropped (their elements taken out of the
    queued batches' arrays; a batch left empty is deleted by the next fold), and their
    conversation-days summed from their timelines (``_WAY_SQL`` is ``interaction_way``'s rule)
    and written, in one statement, so from one snapshot: a batch commits its timeline rows and
    its queue row together, so it is either counted here and dropped from the queue, or left
    queued for the next fold. Reading the rows into Python to sum them there cost ~5x the CPU
    (``mesh_rank --rebuild``). The queue has no index on the contacts (ingest pays for none):
    it holds a row per batch the beat has not folded."""
    ids = IntArray(chunk)
    # The arrays' remaining elements in one scan of each: one aggregate level, so the same order.
    kept = ", ".join(f"COALESCE(array_agg({c}), '{{}}')" for c in ("c", "o", "ch", "cv", "w"))
    with raw_cursor() as cur:
        cur.execute(f"""
            WITH dropped AS (
                UPDATE {_t(RankBatch)} q SET (interactions, {", ".join(_FACTS)}) = (
                    SELECT COUNT(*), {kept}
                    FROM unnest(q.{", q.".join(_FACTS)}) AS f(c, o, ch, cv, w) WHERE c <> ALL(%s))
                WHERE q.contact_ids && %s
            ),
            touches AS (
                SELECT te.owner_id AS contact_id, (a.occurred_at AT TIME ZONE 'UTC')::date AS day, a.channel,
                       COALESCE(a.thread_key, '') AS conversation, a.occurred_at, {_WAY_SQL} AS way
                FROM {_t(TimelineEntry)} te JOIN {_t(Activity)} a ON a.id = te.activity_id AND {visible_sql("a")}
                WHERE te.kind = 'c' AND te.owner_id = ANY(%s)
            )
            INSERT INTO {_t(ConversationDay)} {_CD_COLUMNS}
            SELECT contact_id, day, channel, conversation, COUNT(*) FILTER (WHERE way = 'in'),
                   COUNT(*) FILTER (WHERE way = 'out'), COUNT(*) FILTER (WHERE way = 'both'),
                   MIN(occurred_at), MAX(occurred_at)
            FROM touches WHERE way IS NOT NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        """, [ids, ids, *_WAY_PARAMS, ids])


def _upsert_rebuilt(acc: dict[Key, list]) -> None:
    ConversationDay.objects.bulk_create([
        ConversationDay(contact_id=k[0], day=k[1], channel=k[2], conversation=k[3], inbound=r[0], outbound=r[1],
                        mutual=r[2], first_at=r[3], last_at=r[4])
        for k, r in sorted(acc.items())
    ], batch_size=2000)


def workspace_rank_rebuild(*, workspace: Workspace, today: dt.date | None = None) -> int:
    """Throw away and recompute every conversation-day and strength of a workspace from its
    timelines (``mesh_rank --rebuild``), then fold what was queued meanwhile. Returns the number
    of contacts with a strength."""
    ids = list(Contact.objects.filter(workspace=workspace).values_list("pk", flat=True))
    contact_rank_rebuild(contact_ids=ids, today=today)
    rank_pending_refresh(workspace=workspace, today=today)
    return ContactStrength.objects.filter(workspace=workspace).count()


# --- strengths -------------------------------------------------------------------------------------


def strengths_refresh(*, contact_ids: Sequence[int] | None = None, workspace: Workspace | None = None,
                      today: dt.date | None = None) -> int:
    """Compute and store the strength of these contacts (or all of a workspace's) as of
    ``today`` (default: the UTC date). A contact with nothing that counts has no row."""
    today = today or utc_today()
    if contact_ids is None:
        ids = list(Contact.objects.filter(workspace=workspace).values_list("pk", flat=True))
    else:
        ids = sorted({int(c) for c in contact_ids})
    done = 0
    for i in range(0, len(ids), SCORE_CHUNK):
        chunk = ids[i : i + SCORE_CHUNK]
        parts = _scored_parts(today, chunk, None)
        rows = []
        for contact_id, (workspace_id, p) in parts.items():
            rows.append(_strength_row(contact_id, workspace_id, p, today))
        with transaction.atomic(savepoint=False):
            ContactStrength.objects.filter(contact_id__in=[c for c in chunk if c not in parts]).delete()
            _strengths_write(rows, today)
        done += len(rows)
    return done


_STRENGTH_COLUMNS = ("contact_id", "workspace_id", "score", "tier", "conversations", "last_30", "last_90", "last_365",
                     "in_90", "out_90", "in_365", "out_365", "channels_90", "channels_365", "first_touch_at",
                     "last_touch_at", "computed_on")


def utc_today() -> dt.date:
    return timezone.now().astimezone(dt.UTC).date()


def _strength_row(contact_id: int, workspace_id: int, parts: StrengthParts, today: dt.date) -> tuple:
    """(contact, workspace, score, tier, parts): what ``_strengths_write`` stores."""
    score = strength_score(parts, today=today)
    return contact_id, workspace_id, score, tier_of(score), parts


def _strengths_after_fold(added: Mapping[int, Added | None], today: dt.date) -> None:
    """Re-score the contacts a fold added to. A contact's all-time parts (its conversation-days,
    first and last touch) are its stored strength's plus what the fold added, so only its last
    year of conversation-days is read, not its whole history each minute. Stored strengths are
    exact: every other change to conversation-days re-scores from all of them in its own
    transaction (``contact_rank_rebuild``, merges, the day's first read). Contacts without a
    stored strength, and every contact on SQLite, are re-scored from all their rows."""
    known: dict[int, tuple] = {}
    if added and connection.vendor == "postgresql" and None not in added.values():
        with raw_cursor() as cur:
            cur.execute(f"""SELECT contact_id, workspace_id, conversations, first_touch_at, last_touch_at
                            FROM {_t(ContactStrength)} WHERE contact_id = ANY(%s) AND first_touch_at IS NOT NULL""",
                        [IntArray(sorted(added))])
            known = {row[0]: row[1:] for row in cur}
    rest = [contact_id for contact_id in added if contact_id not in known]
    if rest:
        strengths_refresh(contact_ids=rest, today=today)
    ids = sorted(known)
    for i in range(0, len(ids), SCORE_CHUNK):
        chunk = ids[i : i + SCORE_CHUNK]
        recent = _scored_parts(today, chunk, None, since=today - dt.timedelta(days=364))
        rows = []
        for contact_id in chunk:
            workspace_id, conversations, first_at, last_at = known[contact_id]
            fold = added[contact_id]
            whole = {"conversations": conversations + fold.new_days, "first_touch_at": min(first_at, fold.first_at),
                     "last_touch_at": max(last_at, fold.last_at)}
            parts = (dataclasses.replace(recent[contact_id][1], **whole) if contact_id in recent
                     else StrengthParts(last_30=0, last_90=0, last_365=0, in_90=0, out_90=0, in_365=0, out_365=0,
                                        channels_90=(), channels_365=0, **whole))
            rows.append(_strength_row(contact_id, workspace_id, parts, today))
        _strengths_write(rows, today)


def _strengths_write(rows: list[tuple], today: dt.date) -> None:
    """Upsert (contact, workspace, score, tier, parts) rows. PostgreSQL: one statement over
    arrays (the ORM's bulk_create spent two thirds of a refresh preparing values)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        ContactStrength.objects.bulk_create([
            ContactStrength(contact_id=c, workspace_id=w, score=score, tier=tier, conversations=p.conversations,
                            last_30=p.last_30, last_90=p.last_90, last_365=p.last_365, in_90=p.in_90,
                            out_90=p.out_90, in_365=p.in_365, out_365=p.out_365, channels_90=list(p.channels_90),
                            channels_365=p.channels_365, first_touch_at=p.first_touch_at,
                            last_touch_at=p.last_touch_at, computed_on=today)
            for c, w, score, tier, p in rows
        ], update_conflicts=True, unique_fields=["contact"], update_fields=list(_STRENGTH_COLUMNS[1:]))
        return
    counts = ("conversations", "last_30", "last_90", "last_365", "in_90", "out_90", "in_365", "out_365")
    columns = ", ".join(_STRENGTH_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _STRENGTH_COLUMNS[1:])
    with raw_cursor() as cur:
        cur.execute(
            f"""INSERT INTO {_t(ContactStrength)} ({columns})
                SELECT c, w, s, t, {", ".join(counts)}, ch::jsonb, n, f, l, %s::date
                FROM unnest(%s::bigint[], %s::bigint[], %s::smallint[], %s::text[],
                            {", ".join(["%s::int[]"] * len(counts))}, %s::text[], %s::smallint[],
                            %s::timestamptz[], %s::timestamptz[])
                     AS u(c, w, s, t, {", ".join(counts)}, ch, n, f, l)
                ON CONFLICT (contact_id) DO UPDATE SET {updates}""",
            [today.isoformat(), IntArray([r[0] for r in rows]), IntArray([r[1] for r in rows]),
             IntArray([r[2] for r in rows]), TextArray([r[3] for r in rows]),
             *(IntArray([getattr(r[4], name) for r in rows]) for name in counts),
             TextArray([json.dumps(list(r[4].channels_90)) for r in rows]),
             IntArray([r[4].channels_365 for r in rows]),
             TextArray([r[4].first_touch_at.isoformat() for r in rows]),
             TextArray([r[4].last_touch_at.isoformat() for r in rows])],
        )


def rank_pending_refresh(*, workspace: Workspace | None = None, today: dt.date | None = None) -> int:
    """Fold the queue (one workspace's, or all) into conversation-days and re-score the contacts,
    about FOLD_CHUNK interactions a transaction: what was queued when it began (an import that goes on
    queueing does not keep it folding). Returns the contacts re-scored."""
    queued = RankBatch.objects.all() if workspace is None else RankBatch.objects.filter(workspace_id=workspace.pk)
    total = 0
    for workspace_id, upto in queued.values_list("workspace_id").annotate(upto=Max("id")):
        while RankBatch.objects.filter(workspace_id=workspace_id, id__lte=upto).exists():
            fold_statistics_refresh()
            total += _fold(workspace_id, upto, today)
    return total


def strengths_current(*, workspace: Workspace, today: dt.date | None = None) -> None:
    """Before a read: the queue folded and every strength computed as of today (the first read
    of a day recomputes the workspace's: scores decay without ingest)."""
    today = today or utc_today()
    rank_pending_refresh(workspace=workspace, today=today)
    stale = list(ContactStrength.objects.filter(workspace=workspace, computed_on__lt=today)
                 .values_list("contact_id", flat=True))
    if stale:
        strengths_refresh(contact_ids=stale, today=today)


def rank_refresh_all(*, today: dt.date | None = None) -> int:
    """The beat's task: drain the queue and bring every workspace's strengths to today."""
    count = rank_pending_refresh(today=today)
    for workspace in Workspace.objects.filter(pk__in=ContactStrength.objects.filter(
            computed_on__lt=today or utc_today()).values("workspace_id")):
        strengths_current(workspace=workspace, today=today)
    return count


# --- cadences ---------------------------------------------------------------------------------------


def _check_cadence(every_days: int, at_most_days: int | None) -> int:
    if every_days < 1:
        raise RankError("the interval must be at least a day")
    at_most_days = at_most_days or every_days * 3
    if at_most_days < every_days:
        raise RankError(f"'at most' ({at_most_days} d) is shorter than the interval ({every_days} d)")
    if at_most_days > 3660:
        raise RankError("'at most' is longer than ten years")
    return at_most_days


def contact_cadence_set(*, workspace: Workspace, contact: Contact, every_days: int | None,
                        at_most_days: int | None = None) -> KeepInTouch | None:
    """A contact's own cadence (``every_days`` None: removed, so its tier's default applies).
    'At most' defaults to three times the interval. Set on the surviving contact of a merge."""
    if contact.workspace_id != workspace.pk:
        raise RankError("contact is not in this workspace")
    contact = contact.root()
    if every_days is None:
        KeepInTouch.objects.filter(contact=contact).delete()
        return None
    at_most_days = _check_cadence(every_days, at_most_days)
    row, _ = KeepInTouch.objects.update_or_create(
        contact=contact, defaults={"every_days": every_days, "at_most_days": at_most_days})
    return row


def tier_cadence_set(*, workspace: Workspace, tier: str, every_days: int | None,
                     at_most_days: int | None = None) -> KeepInTouchDefault:
    """The workspace's default cadence for a tier (``every_days`` None: no reminders for it)."""
    if tier not in TIER_NAMES:
        raise RankError(f"unknown tier {tier!r}: use one of {', '.join(TIER_NAMES)}")
    if every_days is not None:
        at_most_days = _check_cadence(every_days, at_most_days)
    else:
        at_most_days = None
    row, _ = KeepInTouchDefault.objects.update_or_create(
        workspace=workspace, tier=tier, defaults={"every_days": every_days, "at_most_days": at_most_days})
    return row


def parse_days(text: str) -> int:
    """'14', '14d', '2w' or '3m' (30-day months) as days; RankError otherwise."""
    value = str(text).strip().lower()
    units = {"d": 1, "w": 7, "m": 30, "y": 365}
    factor = units.get(value[-1:], None)
    number = value[:-1] if factor else value
    try:
        days = int(number) * (factor or 1)
    except ValueError:
        raise RankError(f"{text!r} is not a number of days (e.g. 14d, 2w, 3m)") from None
    if days < 1:
        raise RankError(f"{text!r} is not a positive number of days")
    return days

