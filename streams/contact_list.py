"""How the contact list shows its rows: each row's display values and its fragment from the
cache (streams.presenters.render_cached), for the rows ``selectors.contacts.contact_rows`` reads."""

from __future__ import annotations

import datetime as dt

from django.contrib.humanize.templatetags.humanize import NaturalTimeFormatter, naturaltime
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import get_language

from .presenters import render_cached
from .selectors.contacts import ContactRow


class _Formatted:
    """A lazy translated string whose ``%`` results are kept per language and arguments: for a
    row a day or more ago, naturaltime formats three through the translation machinery, which
    cost more than its date arithmetic (~1.6 ms of a 50-row page). Few distinct results exist
    ("3 months", "2 weeks"), so the memo stays small."""

    def __init__(self, lazy):
        self.lazy, self.done = lazy, {}

    def __mod__(self, args: dict) -> str:
        key = (get_language(), *args.items())
        text = self.done.get(key)
        if text is None:
            text = self.done[key] = str(self.lazy % args)
        return text


_PAST_DAY = _Formatted(NaturalTimeFormatter.time_strings["past-day"])
_PAST_UNITS = {unit: _Formatted(lazy) for unit, lazy in NaturalTimeFormatter.past_substrings.items()}


def last_seen(value: dt.datetime) -> str:
    """``naturaltime(value)``, the same text ("3 months, 2 weeks ago"), its strings formatted once."""
    now = dt.datetime.now(dt.UTC)
    if value < now and (now - value).days:  # naturaltime's branch for a day or more ago
        return _PAST_DAY % {"delta": timesince(value, now, time_strings=_PAST_UNITS)}
    return str(naturaltime(value))


def render_contact_rows(contacts: list[ContactRow], *, region: str, by_strength: bool) -> None:
    """Set ``c.fragment`` (the rendered ``_contact_row.html``) on each row of a list. Its key:
    what the row shows (name, identities and pictures, counts per channel, the last activity as
    its time and in words, the strength when listed by it) and the reader's zone and region."""
    zone = timezone.get_current_timezone_name()
    for c in contacts:
        c.identity_list = sorted(c.identities, key=lambda i: (i.kind, i.value))
        c.channel_list = sorted((c.channel_counts or {}).items())
        c.last_seen = last_seen(c.last_activity_at) if c.last_activity_at else ""
    render_cached(
        contacts, template="streams/_contact_row.html", kind="c",
        key_parts=lambda c: (c.pk, c.name, c.last_activity_at, c.last_seen, tuple(c.channel_list),
                             tuple((i.kind, i.value, i.display, i.avatar_url) for i in c.identity_list),
                             (c.tier, c.rank_score) if by_strength else None,
                             region, zone),
        context=lambda c: {"c": c, "region": region, "by_strength": by_strength})
