"""The activity-over-time picture of a contact or device: a 52-week heat strip, drawn on the
server as inline SVG (no script, no chart library).

The counts are one ``GROUP BY week`` over the timeline's keyset index (an index-only range
scan) of the shown items (``timeline_entries_to_count``: erased ones are not counted). They are
cached per owner together with the owner's summary (activity count and last activity time)
they were counted at: any new item, merge or rebuild changes the summary, so a cached strip
is never stale; erasing an item changes no summary, so ``activity_erase`` drops the strips of
its timelines (``heat_forget``). A contact with 100,000 items costs about 30 ms once, then a
cache read.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from django.core.cache import cache
from django.db.models import Count
from django.db.models.functions import TruncWeek
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .selectors.timelines import timeline_entries_to_count

WEEKS = 52
CELL = 12
GAP = 2
LEVELS = 4  # colour steps above zero
CACHE_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Week:
    start: dt.date
    count: int
    level: int

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=7)


def week_start(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())  # Monday, as date_trunc('week') and TruncWeek


def weekly_counts(*, kind: str, owner_id: int, first: dt.date, last: dt.date) -> dict[dt.date, int]:
    """Timeline items per week (Monday, UTC) for the weeks first..last inclusive."""
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=7), dt.time(), tzinfo=dt.UTC)
    rows = (
        timeline_entries_to_count(kind=kind, owner_id=owner_id)
        .filter(occurred_at__gte=start, occurred_at__lt=end)
        .annotate(week=TruncWeek("occurred_at", tzinfo=dt.UTC))
        .values("week")
        .annotate(n=Count("*"))
        .order_by()
        .values_list("week", "n")
    )
    out: dict[dt.date, int] = {}
    for week, n in rows:
        day = week.date() if isinstance(week, dt.datetime) else week
        out[day] = out.get(day, 0) + n
    return out


def _levels(counts: list[int]) -> list[int]:
    top = max(counts, default=0)
    if top <= 0:
        return [0] * len(counts)
    # Square-root scale: one busy week should not flatten every other week to the lowest step.
    return [0 if n <= 0 else max(1, min(LEVELS, round(LEVELS * (n / top) ** 0.5))) for n in counts]


def _cache_key(kind: str, owner_id: int) -> str:
    return f"mesh:heat:{kind}{owner_id}"


def heat_weeks(
    *, kind: str, owner_id: int, summary: tuple = (), now: dt.datetime | None = None, weeks: int = WEEKS
) -> list[Week]:
    """The last ``weeks`` weeks, oldest first, ending with the current one. ``summary`` is what
    identifies the timeline's state (e.g. (activity_count, last_activity_at)); with it the
    counts are cached."""
    today = (now or timezone.now()).astimezone(dt.UTC).date()
    last = week_start(today)
    first = last - dt.timedelta(weeks=weeks - 1)
    state = f"{first}:{weeks}:" + ":".join(str(s) for s in summary)
    cached = cache.get(_cache_key(kind, owner_id)) if summary else None
    counts = cached[1] if cached is not None and cached[0] == state else None
    if counts is None:
        by_week = weekly_counts(kind=kind, owner_id=owner_id, first=first, last=last)
        counts = [by_week.get(first + dt.timedelta(weeks=i), 0) for i in range(weeks)]
        if summary:
            cache.set(_cache_key(kind, owner_id), (state, counts), CACHE_SECONDS)
    return [
        Week(first + dt.timedelta(weeks=i), n, level)
        for i, (n, level) in enumerate(zip(counts, _levels(counts), strict=True))
    ]


def heat_forget(*, owners: list[tuple[str, int]]) -> None:
    """Drop the cached strips of these timelines ((kind, owner id) pairs): for a change that
    moves no summary (an erase)."""
    if owners:
        cache.delete_many([_cache_key(kind, owner_id) for kind, owner_id in owners])


def heat_svg(weeks: list[Week], *, link: str | None = None) -> str:
    """The strip as an SVG element: one cell per week, a month label where a month starts, a
    <title> on each cell (the tooltip, and what a screen reader says). With ``link`` (a query
    string prefix such as ``"?"``), each week links to the timeline filtered to that week.
    The markup is a pure function of the weeks, memoized per process: 52 ``format_html`` calls
    were ~2 ms of every contact page, and most requests redraw an unchanged strip."""
    return _heat_svg(tuple(weeks), link)


@functools.lru_cache(maxsize=1024)
def _heat_svg(weeks: tuple[Week, ...], link: str | None) -> str:
    width = len(weeks) * (CELL + GAP)
    height = CELL + 14
    cells = []
    for i, w in enumerate(weeks):
        x = i * (CELL + GAP)
        label = f"Week of {w.start.day} {w.start:%b %Y}: {w.count} item{'s' if w.count != 1 else ''}"
        rect = format_html(
            '<rect x="{}" y="0" width="{}" height="{}" rx="2" class="heat-{}"><title>{}</title></rect>',
            x, CELL, CELL, w.level, label,
        )
        if link is not None and w.count:
            rect = format_html('<a href="{}since={}&amp;until={}" aria-label="{}">{}</a>', link,
                               w.start.isoformat(), w.end.isoformat(), label, rect)
        cells.append(rect)
    labels, last_at = [], -99
    for i, w in enumerate(weeks):
        if (i == 0 or w.start.month != weeks[i - 1].start.month) and i - last_at >= 3:
            labels.append((i * (CELL + GAP), CELL + 12, f"{w.start:%b}"))
            last_at = i
    months = format_html_join("", '<text x="{}" y="{}" class="heat-month">{}</text>', labels)
    total = sum(w.count for w in weeks)
    # Week links make the strip a group of links: as role="img" they would stay Tab stops that
    # screen readers cannot see (axe's nested-interactive).
    role = "group" if link is not None and total else "img"
    return format_html(
        '<svg class="heat" role="{}" viewBox="0 0 {} {}" width="{}" height="{}" '
        'xmlns="http://www.w3.org/2000/svg" aria-label="{}">{}{}</svg>',
        role, width, height, width, height, f"{total} items in the last {len(weeks)} weeks",
        format_html_join("", "{}", ((c,) for c in cells)), months,
    )
