"""How the contact list shows its rows: each row's display values and its fragment from the
cache (streams.presenters.render_cached), for the rows ``selectors.contacts.contact_rows`` reads."""

from __future__ import annotations

import datetime as dt
import functools

from django.contrib.humanize.templatetags.humanize import NaturalTimeFormatter, naturaltime
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import get_language

from .presenters import render_cached
from .selectors.contacts import ContactRow


class _Formatted:
    """A lazy translated string's ``%`` results in one language, kept per arguments: for a row a
    day or more ago, naturaltime formats three through the translation machinery, which cost
    more than its date arithmetic (~1.6 ms of a 50-row page). Few distinct results exist
    ("3 months", "2 weeks"), so the memo stays small."""

    def __init__(self, lazy):
        self.lazy, self.done = lazy, {}

    def __mod__(self, args: dict) -> str:
        key = tuple(args.values())
        text = self.done.get(key)
        if text is None:
            text = self.done[key] = str(self.lazy % args)
        return text


@functools.cache
def _past_strings(language: str) -> tuple[_Formatted, dict[str, _Formatted]]:
    return (_Formatted(NaturalTimeFormatter.time_strings["past-day"]),
            {unit: _Formatted(lazy) for unit, lazy in NaturalTimeFormatter.past_substrings.items()})


def last_seen(value: dt.datetime, language: str | None = None) -> str:
    """``naturaltime(value)``, the same text ("3 months, 2 weeks ago"), its strings formatted
    once; ``language``: the active one (looked up once per page by the caller)."""
    now = dt.datetime.now(dt.UTC)
    if value < now and (now - value).days:  # naturaltime's branch for a day or more ago
        past_day, units = _past_strings(language or get_language())
        return past_day % {"delta": timesince(value, now, time_strings=units)}
    return str(naturaltime(value))


def render_contact_rows(contacts: list[ContactRow], *, region: str, by_strength: bool) -> None:
    """Set ``c.fragment`` (the rendered ``_contact_row.html``) on each row of a list. Its key:
    what the row shows (name, identities and pictures, counts per channel, the last activity as
    its time and in words, the strength when listed by it) and the reader's zone and region."""
    zone, language = timezone.get_current_timezone_name(), get_language()
    for c in contacts:
        c.identity_list = sorted(c.identities, key=lambda i: (i.kind, i.value))
        c.channel_list = sorted((c.channel_counts or {}).items())
        c.last_seen = last_seen(c.last_activity_at, language) if c.last_activity_at else ""
    render_cached(
        contacts, template="streams/_contact_row.html", kind="c",
        key_parts=lambda c: (c.pk, c.name, c.last_activity_at, c.last_seen, tuple(c.channel_list),
                             tuple((i.kind, i.value, i.display, i.avatar_url) for i in c.identity_list),
                             (c.tier, c.rank_score) if by_strength else None,
                             region, zone),
        context=lambda c: {"c": c, "region": region, "by_strength": by_strength})
