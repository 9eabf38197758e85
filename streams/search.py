"""Full-text search over activities (subject and text).

PostgreSQL: ``to_tsvector('simple', subject || ' ' || text) @@ websearch_to_tsquery('simple', q)``,
served by a GIN expression index (migration ``web_search``). ``websearch_to_tsquery`` accepts
anything a person types ("quoted phrases", ``or``, ``-word``) and never raises a syntax error.
The ``simple`` configuration does not stem: mail is multilingual, and a stemmer for the wrong
language finds less than no stemmer at all.

A GIN index finds matches but cannot return them newest first, so a frequent word (in 20% of a
million activities) would mean sorting 200,000 rows for a page of 50. The migration also adds a
B-tree on ``(workspace, occurred_at, id)``: then PostgreSQL can walk the workspace newest first
and test each row, stopping after 50 matches. Its statistics on the expression index (word
frequencies) let the planner pick the right one of the two for each query.

SQLite (the embedded demo): every word must appear in the subject or the text (``icontains``).
"""

from __future__ import annotations

import datetime as dt
import re

from django.db import connection
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from .models import Activity, TimelineEntry, Workspace
from .selectors import Cursor, Page, activities_by_ids, timeline_filters

MAX_QUERY = 200
# Must be the indexed expression, token for token, or PostgreSQL will not use the index.
DOCUMENT_SQL = "to_tsvector('simple'::regconfig, (\"streams_activity\".\"subject\" || ' ' || \"streams_activity\".\"text\"))"
INDEX_DOCUMENT_SQL = "to_tsvector('simple'::regconfig, (subject || ' ' || text))"


def search_terms(q: str) -> str:
    """The query as searched: trimmed and bounded; empty means no search."""
    return " ".join((q or "").split())[:MAX_QUERY]


def _words(q: str) -> list[str]:
    return [w for w in re.findall(r"[\w@.+'-]+", q) if w.lower() not in ("or", "and")][:10]


def _match(q: str):
    """A condition on ``streams_activity`` rows; usable on Activity and (joined) TimelineEntry."""
    if connection.vendor == "postgresql":
        return RawSQL(
            f"{DOCUMENT_SQL} @@ websearch_to_tsquery('simple'::regconfig, %s)", [q], output_field=BooleanField()
        )
    return None


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
    *,
    kind: str,
    owner_id: int,
    q: str,
    before: Cursor | None = None,
    limit: int = 50,
    channel: str | None = None,
    direction: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Page:
    """A timeline's activities matching ``q``, newest first, keyset paged like the timeline."""
    qs = TimelineEntry.objects.filter(kind=kind, owner_id=owner_id, activity__erased_at=None)
    match = _match(q)
    qs = qs.filter(match) if match is not None else qs.filter(_fallback(q, prefix="activity__"))
    qs = timeline_filters(qs, before=before, pk="activity_id", channel=channel, direction=direction,
                          since=since, until=until)
    rows = list(qs.order_by("-occurred_at", "-activity_id").values_list("occurred_at", "activity_id")[: limit + 1])
    return _page(rows, limit)


def workspace_search_page(
    *,
    workspace: Workspace,
    q: str,
    before: Cursor | None = None,
    limit: int = 50,
    channel: str | None = None,
    direction: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Page:
    """Every activity of the workspace matching ``q``, newest first."""
    qs = Activity.objects.filter(workspace=workspace, erased_at=None)
    match = _match(q)
    qs = qs.filter(match) if match is not None else qs.filter(_fallback(q))
    qs = timeline_filters(qs, before=before, pk="id", channel=channel, direction=direction, since=since,
                          until=until)
    rows = list(qs.order_by("-occurred_at", "-id").values_list("occurred_at", "id")[: limit + 1])
    return _page(rows, limit)


def highlight_terms(q: str) -> list[str]:
    """Words of the query worth marking in results (lower case, no operators)."""
    return [w.lower().strip("\"'") for w in _words(q) if not w.startswith("-") and len(w) > 1][:10]
