"""The "going cold" list as a feed (JSON Feed 1.1, RSS 2.0) behind a revocable token, so a
reminder can go anywhere a feed reader or a phone can poll: the tokens (services, made as
``streams.feed_tokens`` makes a timeline's: 256 random bits shown once, a SHA-256 hash stored)
and the two documents. An item is one contact due on one date: when the contact is touched
again, the next reminder is a new item.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets as pysecrets

from django.urls import reverse
from django.utils import feedgenerator, timezone

from .crypto import token_hash
from .export import rfc3339
from .feed_tokens import TOKEN_PREFIX, public_base_url, token_well_formed
from .models import ColdFeedToken, Workspace
from .selectors.ranking import ColdEntry

FORMATS = ("rss", "json")
CONTENT_TYPES = {"rss": "application/rss+xml; charset=utf-8", "json": "application/feed+json; charset=utf-8"}
FEED_LIMIT = 100
_ID = 918273645  # a placeholder contact id: the contact URL is reversed once per feed, around it


def cold_feed_urls(token: str, *, base: str | None = None) -> dict[str, str]:
    base = (base or public_base_url()).rstrip("/")
    return {fmt: base + reverse("cold-feed", kwargs={"token": token, "fmt": fmt}) for fmt in FORMATS}


def cold_feed_token_create(*, workspace: Workspace) -> tuple[ColdFeedToken, str]:
    """A new token for the workspace's going-cold feed; the token is shown only now."""
    token = TOKEN_PREFIX + pysecrets.token_urlsafe(32)
    row = ColdFeedToken.objects.create(workspace=workspace, token_hash=token_hash(token), token_prefix=token[:12])
    return row, token


def cold_feed_token_revoke(*, workspace: Workspace) -> int:
    """Revoke every live going-cold token of the workspace; returns how many."""
    return ColdFeedToken.objects.filter(workspace=workspace, revoked_at=None).update(revoked_at=timezone.now())


def cold_feed_tokens(*, workspace: Workspace) -> list[ColdFeedToken]:
    return list(ColdFeedToken.objects.filter(workspace=workspace, revoked_at=None).order_by("-created_at", "-pk"))


def cold_feed_workspace(token: str) -> Workspace | None:
    """The workspace a live token opens; None for a malformed, unknown or revoked one alike."""
    if not token_well_formed(token):
        return None
    row = (ColdFeedToken.objects.select_related("workspace")
           .filter(token_hash=token_hash(token), revoked_at=None).first())
    return row.workspace if row is not None else None


def _title(entry: ColdEntry, now: dt.datetime) -> str:
    late = (now - entry.due_at).days
    when = "due today" if late < 1 else f"{late} day{'s' if late != 1 else ''} past due"
    return f"{entry.name}: {when} ({entry.tier}, {entry.strength})"


def _summary(entry: ColdEntry) -> str:
    cadence = f"every {entry.every_days} days, at most {entry.at_most_days}"
    return (f"Last touch {entry.last_touch_at:%Y-%m-%d}; {cadence}"
            f"{' (own)' if entry.own_cadence else ' (tier default)'}. Strength {entry.strength}, {entry.explained}.")


def _guid(workspace: Workspace, entry: ColdEntry) -> str:
    return f"tag:mesh,2026:{workspace.slug}/cold/{entry.contact_id}/{entry.due_at:%Y-%m-%d}"


def cold_feed_render(*, workspace: Workspace, entries: list[ColdEntry], fmt: str, base_url: str,
                     now: dt.datetime) -> str:
    """The feed document of ``entries`` (most urgent first) in ``fmt``."""
    base_url = base_url.rstrip("/")
    home = base_url + reverse("cold-list")
    # One reverse() for the page, not one per entry (100 reverse() calls were ~15 % of the feed request's Python).
    head, tail = reverse("contact-detail", args=[_ID]).rsplit(str(_ID), 1)

    def contact_url(contact_id: int) -> str:
        return f"{base_url}{head}{contact_id}{tail}"

    title = f"Going cold · {workspace.name or workspace.slug}"
    if fmt == "json":
        return json.dumps({
            "version": "https://jsonfeed.org/version/1.1", "title": title, "home_page_url": home,
            "items": [{
                "id": _guid(workspace, e), "url": contact_url(e.contact_id),
                "title": _title(e, now), "content_text": _summary(e), "date_published": rfc3339(e.due_at),
                "_mesh": {**e.as_json(), "last_touch_at": rfc3339(e.last_touch_at), "due_at": rfc3339(e.due_at),
                          "cold_at": rfc3339(e.cold_at)},
            } for e in entries],
        }, ensure_ascii=False)
    feed = feedgenerator.Rss201rev2Feed(title=title, link=home, description="Contacts past their cadence",
                                        language="en")
    for e in entries:
        feed.add_item(title=_title(e, now), link=contact_url(e.contact_id),
                      description=_summary(e), unique_id=_guid(workspace, e), unique_id_is_permalink=False,
                      pubdate=e.due_at)
    return feed.writeString("utf-8")
