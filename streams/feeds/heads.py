"""The head of a feed page: what the page is made of, read without loading an activity.

A head is the page's (occurred_at, id, updated_at) rows plus, on a first page, the tombstones
of the last ``TOMBSTONE_DAYS``. It decides the strong ``ETag`` and ``Last-Modified``, so a
conditional GET answers 304 from the head alone. Each statement is the selectors' timeline
read (``timeline_scan_sql``, ``timeline_entries``, ``lifestream_activities``: the same
"shown" rule as every page), kept fast with prepared statements where connections persist.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass
from functools import cache
from itertools import chain

from django.db import connection
from django.db.models import CharField, Q, QuerySet, Value
from django.utils import timezone

from ..feed_tokens import TOMBSTONE_DAYS
from ..models import Activity, TimelineEntry, Workspace
from ..rawdb import prepared_fetch
from ..selectors.timelines import (
    Cursor,
    keyset_before,
    lifestream_activities,
    timeline_entries,
    timeline_scan_sql,
)
from ..visibility import erased_q, erased_sql, visible_q

PAGE_SIZE = 50
TOMBSTONE_LIMIT = 100  # at most this many tombstones on a first page
# The tombstone window in the prepared statements, from the database clock rather than a
# parameter: a generic plan cannot estimate ``erased_at >= $n`` (it assumes a third of the
# table and seq-scans it), so PostgreSQL kept re-planning every poll with a custom plan (0.7 ms
# of planning for 0.3 ms of execution); a stable expression it estimates from its value.
_TOMBSTONE_CUTOFF_SQL = f"statement_timestamp() - interval '{int(TOMBSTONE_DAYS)} days'"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def _us(when: dt.datetime) -> int:
    """A timestamp as integer microseconds since the epoch (exact: timestamptz has microseconds)."""
    return (when - _EPOCH) // _MICROSECOND


def _when(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def us_sql(column: str) -> str:
    """``_us`` in SQL (exact: ``extract`` returns numeric)."""
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


@dataclass(slots=True)
class Head:
    """A page's head. Times are integer microseconds since the epoch, as the poll reads them: a
    304 parses no timestamp, and the fingerprint is a list of integers."""

    rows: list[tuple[int, int, int]]  # (occurred_at µs, activity id, updated_at µs), newest first
    next_cursor: Cursor | None
    dead: list[tuple[int, int]]  # (activity id, erased_at µs), most recent erase first

    @classmethod
    def from_rows(cls, items: list, dead: list, *, limit: int) -> Head:
        """``items``: up to ``limit + 1`` (occurred_at µs, id, updated_at µs), newest first (the
        extra row says whether there is an older page); ``dead``: (id, erased_at µs)."""
        more = len(items) > limit
        items = items[:limit]
        next_cursor = Cursor(_when(items[-1][0]), items[-1][1]) if more and items else None
        return cls(items, next_cursor, dead)

    @property
    def ids(self) -> list[int]:
        return [pk for _, pk, _ in self.rows]

    @property
    def tombstones(self) -> list[tuple[int, dt.datetime]]:
        return [(pk, _when(e)) for pk, e in self.dead]

    def last_modified(self, floor: dt.datetime) -> dt.datetime:
        newest = max([u for _, _, u in self.rows] + [e for _, e in self.dead], default=None)
        return floor if newest is None else max(floor, _when(newest))

    def fingerprint(self) -> bytes:
        """What the page is made of, for the ETag: the integers packed, which costs a tenth of
        writing them out as JSON (50 rows of 16-digit numbers). The next cursor follows from
        the rows and whether there are more; the counts make the packing unambiguous."""
        flat = [*chain.from_iterable(self.rows), *chain.from_iterable(self.dead)]
        return struct.pack(f"<3q{len(flat)}q", len(self.rows), len(self.dead), self.next_cursor is not None, *flat)


def recent_erased_sql() -> str:
    """The recently erased activities, from the partial index on erased_at (a handful of rows)."""
    return (f"SELECT id, erased_at FROM {Activity._meta.db_table} a "
            f"WHERE {erased_sql('a')} AND a.erased_at >= {_TOMBSTONE_CUTOFF_SQL}")


def timeline_tombstones_sql(*, columns: str, kind: str, owner: str, limit: str) -> str:
    """The tombstones of one timeline, most recent erase first, over a ``dead`` CTE
    (``recent_erased_sql``). They start from the erased rows, never from the owner's timeline:
    a generic plan assumes an average owner (a few rows) and would walk all 100,000 entries of
    a busy one; the CTE is MATERIALIZED to keep that order."""
    return f"""SELECT {columns} FROM dead JOIN {TimelineEntry._meta.db_table} te
        ON te.activity_id = dead.id AND te.kind = {kind} AND te.owner_id = {owner}
        ORDER BY dead.erased_at DESC, dead.id DESC LIMIT {limit}"""


@cache
def _first_page_sql() -> str:
    """The first page's head as one prepared statement (a merged contact's poll; other polls
    read it with the token, ``views.poll_sql``): the live rows and the tombstones in one UNION ALL."""
    live = timeline_scan_sql(columns="'i', te.occurred_at, te.activity_id, a.updated_at",
                             kind="$1", owner="$2", limit="$3")
    dead = timeline_tombstones_sql(columns="'t', te.occurred_at, te.activity_id, dead.erased_at",
                                   kind="$1", owner="$2", limit="$4")
    return f"WITH dead AS MATERIALIZED ({recent_erased_sql()}) ({live}) UNION ALL ({dead})"


@cache
def _older_page_sql() -> str:
    """An older page's head. The keyset condition is a row comparison, which PostgreSQL uses
    as an index bound: the OR form (``a < x OR (a = x AND b < y)``) is only a filter, so a
    page 34,000 entries deep would scan those 34,000 index entries first (0.2 ms vs 50 ms
    measured on the benchmark data)."""
    return timeline_scan_sql(columns="'i', te.occurred_at, te.activity_id, a.updated_at", kind="$1", owner="$2",
                             limit="$5", where="AND (te.occurred_at, te.activity_id) < ($3, $4)")


def _head_from_rows(rows, *, limit: int) -> Head:
    """A head from ('i', occurred_at, id, updated_at) and ('t', occurred_at, id, erased_at) rows."""
    items = sorted(((_us(o), pk, _us(u)) for part, o, pk, u in rows if part == "i"), reverse=True)
    dead = sorted(((pk, _us(e)) for part, _o, pk, e in rows if part == "t"), key=lambda r: (r[1], r[0]),
                  reverse=True)
    return Head.from_rows(items, dead, limit=limit)


def timeline_feed_head(
    *, kind: str, owner_id: int, before: Cursor | None, limit: int = PAGE_SIZE, now: dt.datetime | None = None
) -> Head:
    """A timeline page's head: a range scan on the keyset index over the shown activities, and
    the timeline's recent tombstones (by the partial erased index)."""
    if before is not None:
        rows = prepared_fetch("mesh_feed_page_v2", _older_page_sql(), [kind, owner_id, before.occurred_at,
                                                                          before.activity_id, limit + 1])
    elif now is None:  # the prepared first page reads the database clock (_TOMBSTONE_CUTOFF_SQL)
        rows = prepared_fetch("mesh_feed_head_v5", _first_page_sql(), [kind, owner_id, limit + 1, TOMBSTONE_LIMIT])
    else:
        rows = None
    if rows is not None:
        return _head_from_rows(rows, limit=limit)
    base = timeline_entries(kind=kind, owner_id=owner_id, erased=True)
    return _orm_head(base, before=before, now=now, limit=limit, pk="activity_id", activity="activity__")


def lifestream_feed_head(
    *, workspace: Workspace, before: Cursor | None, limit: int = PAGE_SIZE, now: dt.datetime | None = None
) -> Head:
    """The public items of a workspace, newest first (on the activity_public_idx index)."""
    base = lifestream_activities(workspace=workspace, erased=True)
    return _orm_head(base, before=before, now=now, limit=limit, pk="id", activity="")


def _part(tag: str) -> Value:
    return Value(tag, output_field=CharField())


def _orm_head(base: QuerySet, *, before: Cursor | None, now: dt.datetime | None, limit: int, pk: str,
              activity: str) -> Head:
    """The head by the ORM, over timeline rows (``pk="activity_id"``, the activity's columns
    behind ``activity="activity__"``) or over activities themselves (``pk="id"``, ``activity=""``):
    the shown rows of the page, and the recent tombstones."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=TOMBSTONE_DAYS)
    live = (
        base.annotate(part=_part("i"))
        .filter(visible_q(activity))
        .filter(Q() if before is None else keyset_before("occurred_at", pk, before))
        .order_by("-occurred_at", f"-{pk}")
        .values_list("part", "occurred_at", pk, f"{activity}updated_at")[: limit + 1]
    )
    if before is not None:
        return _head_from_rows(list(live), limit=limit)
    dead = (
        base.annotate(part=_part("t"))
        .filter(erased_q(activity), **{f"{activity}erased_at__gte": cutoff})
        .order_by(f"-{activity}erased_at", f"-{pk}")
        .values_list("part", "occurred_at", pk, f"{activity}erased_at")[:TOMBSTONE_LIMIT]
    )
    # One UNION ALL round trip where the database can order and slice inside a union (PostgreSQL).
    if connection.features.supports_slicing_ordering_in_compound:
        rows = list(live.union(dead, all=True))
    else:
        rows = list(live) + list(dead)
    return _head_from_rows(rows, limit=limit)
