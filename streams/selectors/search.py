"""Full-text search pages over the timelines' shown activities (the index is built in
``streams.search``).

PostgreSQL: ``document @@ websearch_to_tsquery('simple', q)`` over ``SearchDocument``.
``websearch_to_tsquery`` accepts anything a person types ("quoted phrases", ``or``, ``-word``)
and never raises a syntax error. Results stay complete while the index queue drains: a search
also tests queued activities directly, as long as there are at most ``PENDING_SCAN_MAX`` of
them; beyond that (a bulk import in progress) it skips them and ``search_backlog`` says how
many are not searchable yet.

A GIN index finds matches but cannot return them newest first, so a frequent word (in 20% of a
million activities) would mean sorting 200,000 rows for a page of 50. The B-tree on
``(workspace, occurred_at, id)`` (and the timeline's keyset index) let PostgreSQL walk newest
first and probe each row's document by primary key, stopping after 50 matches; the tsvector
column's statistics (word frequencies) let the planner pick the right one of the two.

SQLite (the embedded demo): every word must appear in the subject or the text (``icontains``).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Unpack

from django.db import connection
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from ..models import Activity, SearchDocument, SearchPending, TimelineEntry, Workspace
from .timelines import (
    Cursor,
    Page,
    PageFilters,
    activities_by_ids,
    timeline_entries,
    timeline_filters,
    workspace_activities,
)

MAX_QUERY = 200
PENDING_SCAN_MAX = 5000

DOCUMENTS_TABLE = SearchDocument._meta.db_table
PENDING_TABLE = SearchPending._meta.db_table
# What a document is made of (streams.search builds them); a search tests still-queued
# activities with the same expression.
DOCUMENT_SQL = "to_tsvector('simple'::regconfig, {a}.subject || ' ' || {a}.text)"
_ACT = Activity._meta.db_table
_TSQ = "websearch_to_tsquery('simple'::regconfig, %s)"


def _queued_capped() -> int:
    """How many activities are queued, counted up to PENDING_SCAN_MAX + 1 (cheap however long
    the queue is)."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM (SELECT 1 FROM {PENDING_TABLE} LIMIT %s) q", [PENDING_SCAN_MAX + 1])
        return cur.fetchone()[0]


def search_backlog() -> int:
    """How many queued activities a search skips right now (0 while the queue is small)."""
    if connection.vendor != "postgresql" or _queued_capped() <= PENDING_SCAN_MAX:
        return 0
    return SearchPending.objects.count()


def search_terms(q: str) -> str:
    """The query as searched: trimmed and bounded; empty means no search."""
    return " ".join((q or "").split())[:MAX_QUERY]


def _words(q: str) -> list[str]:
    return [w for w in re.findall(r"[\w@.+'-]+", q) if w.lower() not in ("or", "and")][:10]


def _match(q: str, column: str):
    """"``column`` (an activity id) has a document matching ``q``": an EXISTS that PostgreSQL
    turns into a semi-join, so it can either start from the GIN index (a rare word) or walk
    the rows newest first and probe each one's document by primary key (a frequent word: it
    stops after a page of matches)."""
    if connection.vendor != "postgresql":
        return None
    return RawSQL(
        f"EXISTS (SELECT 1 FROM {DOCUMENTS_TABLE} d WHERE d.activity_id = {column} AND d.document @@ {_TSQ})",
        [q], output_field=BooleanField(),
    )


def _pending_match(q: str, column: str):
    """"``column`` is a queued activity whose text matches ``q``" (tested on the fly)."""
    return RawSQL(
        f"{column} IN (SELECT p.activity_id FROM {PENDING_TABLE} p JOIN {_ACT} pa ON pa.id = p.activity_id"
        f" WHERE {DOCUMENT_SQL.format(a='pa')} @@ {_TSQ})",
        [q], output_field=BooleanField(),
    )


CANDIDATES_MAX = 5000


def _candidates(q: str) -> list[int] | None:
    """The ids of every document matching ``q`` when there are at most ``CANDIDATES_MAX`` (one
    GIN lookup, a few ms), else None (a frequent word: PostgreSQL reads documents in table
    order and stops at the limit, ~3 ms)."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT activity_id FROM {DOCUMENTS_TABLE} WHERE document @@ {_TSQ} LIMIT %s", [q, CANDIDATES_MAX + 1])
        ids = [r[0] for r in cur.fetchall()]
    return ids if len(ids) <= CANDIDATES_MAX else None


def _pending_scannable() -> bool:
    """Some activities are queued, and few enough to test directly."""
    return 0 < _queued_capped() <= PENDING_SCAN_MAX


def _matching_rows(qs, q: str, column: str, order: tuple[str, str], limit: int) -> list[tuple]:
    """The newest ``limit`` (occurred_at, id) rows of ``qs`` matching ``q``: from the documents,
    merged with still-queued matches. Two statements rather than one with OR: an OR keeps
    PostgreSQL from planning the document match as a semi-join, and a frequent word then
    took seconds at a million activities."""
    fields = [o.lstrip("-") for o in order]
    candidates = _candidates(q)
    if candidates is not None:
        # A rarer word: its few documents are the candidates, filtered and ordered directly.
        # (PostgreSQL's estimate for a word missing from its statistics is ~0.5 % of the
        # table, so it chose to walk newest first: 1.4 s for a word no document holds.)
        by_id = RawSQL(f"{column} = ANY(%s::bigint[])", [candidates], output_field=BooleanField())
        rows = list(qs.filter(by_id).order_by(*order).values_list(*fields)[:limit])
    else:
        rows = list(qs.filter(_match(q, column)).order_by(*order).values_list(*fields)[:limit])
    if _pending_scannable():
        rows += qs.filter(_pending_match(q, column)).order_by(*order).values_list(*fields)[:limit]
        rows = sorted(set(rows), reverse=True)[:limit]
    return rows


def _fallback(q: str, prefix: str = "") -> Q:
    cond = Q()
    for word in _words(q) or [q]:
        cond &= Q(**{f"{prefix}subject__icontains": word}) | Q(**{f"{prefix}text__icontains": word})
    return cond


def _page(rows: list[tuple[dt.datetime, int]], limit: int) -> Page:
    more = len(rows) > limit
    rows = rows[:limit]
    ids = [pk for _, pk in rows]
    by_id = activities_by_ids(ids=ids)
    return Page([by_id[pk] for pk in ids if pk in by_id], Cursor(*rows[-1]) if more and rows else None)


def timeline_search_page(
    *, kind: str, owner_id: int, q: str, before: Cursor | None = None, limit: int = 50,
    **filters: Unpack[PageFilters],
) -> Page:
    """A timeline's activities matching ``q``, newest first, keyset paged like the timeline."""
    qs = timeline_filters(timeline_entries(kind=kind, owner_id=owner_id), before=before, pk="activity_id", **filters)
    if connection.vendor == "postgresql":
        rows = _matching_rows(qs, q, f'"{TimelineEntry._meta.db_table}"."activity_id"',
                              ("-occurred_at", "-activity_id"), limit + 1)
    else:
        rows = list(qs.filter(_fallback(q, prefix="activity__")).order_by("-occurred_at", "-activity_id")
                    .values_list("occurred_at", "activity_id")[: limit + 1])
    return _page(rows, limit)


def workspace_search_page(
    *, workspace: Workspace, q: str, before: Cursor | None = None, limit: int = 50, **filters: Unpack[PageFilters]
) -> Page:
    """Every activity of the workspace matching ``q``, newest first."""
    qs = timeline_filters(workspace_activities(workspace=workspace), before=before, pk="id", **filters)
    if connection.vendor == "postgresql":
        rows = _matching_rows(qs, q, f'"{_ACT}"."id"', ("-occurred_at", "-id"), limit + 1)
    else:
        rows = list(qs.filter(_fallback(q)).order_by("-occurred_at", "-id").values_list("occurred_at", "id")[: limit + 1])
    return _page(rows, limit)


def highlight_terms(q: str) -> list[str]:
    """Words of the query worth marking in results (lower case, no operators)."""
    return [w.lower().strip("\"'") for w in _words(q) if not w.startswith("-") and len(w) > 1][:10]
