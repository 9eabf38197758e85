"""How the contact list shows its rows: each row's display values and its fragment from the
cache (streams.presenters.render_cached), for the rows ``selectors.contacts.contact_rows`` reads."""

from __future__ import annotations

from django.contrib.humanize.templatetags.humanize import naturaltime
from django.utils import timezone

from .presenters import render_cached
from .selectors.contacts import ContactRow


def render_contact_rows(contacts: list[ContactRow], *, region: str, by_strength: bool) -> None:
    """Set ``c.fragment`` (the rendered ``_contact_row.html``) on each row of a list. Its key:
    what the row shows (name, identities and pictures, counts per channel, the last activity as
    its time and in words, the strength when listed by it) and the reader's zone and region."""
    zone = timezone.get_current_timezone_name()
    for c in contacts:
        c.identity_list = sorted(c.identities, key=lambda i: (i.kind, i.value))
        c.channel_list = sorted((c.channel_counts or {}).items())
        c.last_seen = str(naturaltime(c.last_activity_at)) if c.last_activity_at else ""
    render_cached(
        contacts, template="streams/_contact_row.html", kind="c",
        key_parts=lambda c: (c.pk, c.name, c.last_activity_at, c.last_seen, tuple(c.channel_list),
                             tuple((i.kind, i.value, i.display, i.avatar_url) for i in c.identity_list),
                             (c.tier, c.rank_score) if by_strength else None,
                             region, zone),
        context=lambda c: {"c": c, "region": region, "by_strength": by_strength})
