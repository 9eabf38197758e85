"""Outbound feeds: one relationship's timeline (a contact's or a device's, behind a token) or a
workspace's public lifestream, as RSS 2.0, Atom (RFC 4287), JSON Feed 1.1 and an Activity
Streams 2.0 ``OrderedCollectionPage``.

Built on ``django.contrib.syndication``: ``get_object()`` resolves the token (or workspace) and
reads the *head* of the page; ``items()`` reads the activities through a selector; each format
is a ``feedgenerator.SyndicationFeed`` subclass. What the syndication view does not do, and
feed readers rely on, is added in ``__call__``:

- The head is one indexed query (the page's (occurred_at, id, updated_at) rows plus, on the first
  page, the tombstones of the last 30 days). It decides the strong ``ETag`` and
  ``Last-Modified``, so ``If-None-Match``/``If-Modified-Since`` answer 304 without loading a
  single activity: a poll costs the token lookup and the head, which on persistent connections
  are one prepared statement, planned once, returning one row of integers (``_poll_sql``). The
  same for every format, and the same before a body is served from the cache.
- Rendered bodies are cached in Redis (when ``REDIS_URL`` is set) under the ETag, which is a
  hash of everything the body depends on; so a cached body is never stale and needs no
  invalidation.
- Paging is RFC 5005 style: ``?before=<cursor>``, ``rel="next"`` (and ``first``) links.
- Erased items are tombstones for ``TOMBSTONE_DAYS`` on the first page: Atom and RSS
  ``at:deleted-entry`` (RFC 6721), AS2 ``Tombstone``, JSON Feed ``_mesh.deleted``.
- Privacy tiers: ``metadata`` shows who/when/channel, ``subject`` adds the subject or first
  line, ``full`` adds the content, sanitized with nh3 (no scripts, no remote images).
- The public lifestream names no one: no counterpart in titles, authors or GUIDs, and an
  item's text only where the owner wrote it (``feed_entry(public=True)``).
- Plain-text fields (titles, names, descriptions, ``content_text``) hold no markup in any
  format: ``<`` and ``>`` become look-alikes (``feed_text``), then the serializer escapes once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html as htmllib
import json
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, cached_property, partial
from itertools import chain

import nh3
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.syndication.views import Feed
from django.core.exceptions import ObjectDoesNotExist
from django.db import connection
from django.db.models import CharField, Q, Value
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
)
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse
from django.utils import feedgenerator, timezone
from django.utils.html import escape
from django.utils.http import http_date, parse_http_date_safe, quote_etag
from django.views.decorators.http import require_safe

from .crypto import token_hash
from .export import AS2_CONTEXT, VERB_TYPES, rfc3339, tag_uri
from .feed_tokens import (
    TOMBSTONE_DAYS,
    FeedOwner,
    FeedTokenError,
    feed_token_create,
    feed_token_resolve,
    feed_token_revoke,
    feed_token_rotate,
    feed_token_touch,
    feed_tokens_for,
    feed_urls,
    owner_from_token,
    token_from_values,
    token_select_sql,
    token_well_formed,
)
from .models import Activity, Contact, FeedToken, Identity, Participant, TimelineEntry, Workspace
from .rawdb import prepared_fetch
from .selectors import BadCursor, Cursor, keyset_before
from .throttle import feed_throttle

log = logging.getLogger(__name__)

PAGE_SIZE = 50
TOMBSTONE_LIMIT = 100  # at most this many tombstones on a first page
# Bump when the rendering changes, so that cached bodies and ETags of the old one are not used.
RENDER_VERSION = "feeds-2"
TOMBSTONE_NS = "http://purl.org/atompub/tombstones/1.0"
CACHE_TTL_SECONDS = 24 * 3600
CONTENT_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
    "as2": "application/activity+json; charset=utf-8",
}
CHANNEL_LABELS = {"email": "Email", "sms": "SMS", "mms": "MMS", "call": "Call", "device": "Event"}
# The lifestream says which way an item went, never with whom.
PUBLIC_DIRECTIONS = {"in": "received", "out": "sent"}
PUBLIC_CALL_DIRECTIONS = {"in": "received", "out": "made"}
PUBLIC_MESSAGE_LABELS = {"Email", "SMS", "MMS", "Direct message"}
X_VERB_LABELS = {"post": "Post", "mention": "Mention", "message": "Direct message", "reply": "Reply"}
# No <img>: remote images in mail are tracking pixels.
SAFE_TAGS = set(nh3.ALLOWED_TAGS) - {"img", "map", "area"}
# The tombstone window in the prepared statements, from the database clock rather than a
# parameter: a generic plan cannot estimate ``erased_at >= $n`` (it assumes a third of the
# table and seq-scans it), so PostgreSQL kept re-planning every poll with a custom plan (0.7 ms
# of planning for 0.3 ms of execution); a stable expression it estimates from its value.
_TOMBSTONE_CUTOFF_SQL = f"statement_timestamp() - interval '{int(TOMBSTONE_DAYS)} days'"


# --- the head: what a page is made of, read without loading activities --------------------------


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def _us(when: dt.datetime) -> int:
    """A timestamp as integer microseconds since the epoch (exact: timestamptz has microseconds)."""
    return (when - _EPOCH) // _MICROSECOND


def _when(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def _us_sql(column: str) -> str:
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


def _keyset(before: Cursor | None, *, at: str, pk: str):
    """``(at, pk) < cursor`` as a row comparison, which PostgreSQL turns into an index bound (the
    equivalent OR form is only a filter, and costs O(depth): see ``_older_page_sql``)."""
    return Q() if before is None else keyset_before(at, pk, before)


def _part(tag: str) -> Value:
    return Value(tag, output_field=CharField())


def _head_from(live, dead, *, limit: int, first_page: bool) -> Head:
    """Run the page query and (on a first page) the tombstone query, as one UNION ALL round
    trip where the database can order and slice inside a union (PostgreSQL)."""
    if not first_page:
        rows = list(live)
    elif connection.features.supports_slicing_ordering_in_compound:
        rows = list(live.union(dead, all=True))
    else:
        rows = list(live) + list(dead)
    return _head_from_rows(rows, limit=limit)


@cache
def _first_page_sql() -> str:
    """The first page's head as one prepared statement (a merged contact's poll; other polls
    read it with the token, ``_poll_sql``): the same two queries as the ORM path below, in one
    UNION ALL."""
    te, a = TimelineEntry._meta.db_table, Activity._meta.db_table
    # The tombstones start from the partial index on erased_at (a handful of rows), never from
    # the owner's timeline: a generic plan assumes an average owner (a few rows) and would walk
    # all 100,000 entries of a busy one. MATERIALIZED keeps that order.
    return f"""
        WITH dead AS MATERIALIZED (
            SELECT id, erased_at FROM {a} WHERE erased_at IS NOT NULL AND erased_at >= {_TOMBSTONE_CUTOFF_SQL}
        )
        (SELECT 'i', te.occurred_at, te.activity_id, a.updated_at
         FROM {te} te JOIN {a} a ON a.id = te.activity_id
         WHERE te.kind = $1 AND te.owner_id = $2 AND a.erased_at IS NULL
         ORDER BY te.occurred_at DESC, te.activity_id DESC LIMIT $3)
        UNION ALL
        (SELECT 't', te.occurred_at, te.activity_id, dead.erased_at
         FROM dead JOIN {te} te ON te.activity_id = dead.id AND te.kind = $1 AND te.owner_id = $2
         ORDER BY dead.erased_at DESC, dead.id DESC LIMIT $4)
    """


@cache
def _older_page_sql() -> str:
    """An older page's head. The keyset condition is a row comparison, which PostgreSQL uses
    as an index bound: the OR form (``a < x OR (a = x AND b < y)``) is only a filter, so a
    page 34,000 entries deep would scan those 34,000 index entries first (0.2 ms vs 50 ms
    measured on the benchmark data)."""
    te, a = TimelineEntry._meta.db_table, Activity._meta.db_table
    return f"""
        SELECT 'i', te.occurred_at, te.activity_id, a.updated_at
        FROM {te} te JOIN {a} a ON a.id = te.activity_id
        WHERE te.kind = $1 AND te.owner_id = $2 AND a.erased_at IS NULL
          AND (te.occurred_at, te.activity_id) < ($3, $4)
        ORDER BY te.occurred_at DESC, te.activity_id DESC LIMIT $5
    """


def _head_from_rows(rows, *, limit: int) -> Head:
    """A head from ('i', occurred_at, id, updated_at) and ('t', occurred_at, id, erased_at) rows."""
    items = sorted(((_us(o), pk, _us(u)) for part, o, pk, u in rows if part == "i"), reverse=True)
    dead = sorted(((pk, _us(e)) for part, _o, pk, e in rows if part == "t"), key=lambda r: (r[1], r[0]),
                  reverse=True)
    return Head.from_rows(items, dead, limit=limit)


def timeline_feed_head(
    *, kind: str, owner_id: int, before: Cursor | None, limit: int = PAGE_SIZE, now: dt.datetime | None = None
) -> Head:
    """A timeline page's head: a range scan on the keyset index joined to the activities
    (erased ones skipped), and the timeline's recent tombstones (by the partial erased index)."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=TOMBSTONE_DAYS)
    if before is not None:
        rows = prepared_fetch("mesh_feed_page_v1", _older_page_sql(), [kind, owner_id, before.occurred_at,
                                                                          before.activity_id, limit + 1])
    elif now is None:  # the prepared first page reads the database clock (_TOMBSTONE_CUTOFF_SQL)
        rows = prepared_fetch("mesh_feed_head_v4", _first_page_sql(), [kind, owner_id, limit + 1, TOMBSTONE_LIMIT])
    else:
        rows = None
    if rows is not None:
        return _head_from_rows(rows, limit=limit)
    base = TimelineEntry.objects.filter(kind=kind, owner_id=owner_id)
    return _orm_head(base, before=before, cutoff=cutoff, limit=limit, pk="activity_id", activity="activity__")


def lifestream_feed_head(
    *, workspace: Workspace, before: Cursor | None, limit: int = PAGE_SIZE, now: dt.datetime | None = None
) -> Head:
    """The public items of a workspace, newest first (on the activity_public_idx index)."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=TOMBSTONE_DAYS)
    base = Activity.objects.filter(workspace=workspace, visibility="public")
    return _orm_head(base, before=before, cutoff=cutoff, limit=limit, pk="id", activity="")


def _orm_head(base, *, before: Cursor | None, cutoff: dt.datetime, limit: int, pk: str, activity: str) -> Head:
    """The head by the ORM, over timeline rows (``pk="activity_id"``, the activity's columns
    behind ``activity="activity__"``) or over activities themselves (``pk="id"``, ``activity=""``):
    the live rows of the page, and the recent tombstones."""
    live = (
        base.annotate(part=_part("i"))
        .filter(**{f"{activity}erased_at": None})
        .filter(_keyset(before, at="occurred_at", pk=pk))
        .order_by("-occurred_at", f"-{pk}")
        .values_list("part", "occurred_at", pk, f"{activity}updated_at")[: limit + 1]
    )
    dead = (
        base.annotate(part=_part("t"))
        .filter(**{f"{activity}erased_at__gte": cutoff})
        .order_by(f"-{activity}erased_at", f"-{pk}")
        .values_list("part", "occurred_at", pk, f"{activity}erased_at")[:TOMBSTONE_LIMIT]
    )
    return _head_from(live, dead, limit=limit, first_page=before is None)


# --- items: one activity as the tier allows ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Party:
    """A participant as a feed needs it (plain row; ``identity`` is itself, so code written
    for ``Participant.identity`` reads the same)."""

    role: str
    value: str
    display: str
    is_self: bool

    @property
    def identity(self) -> _Party:
        return self


@dataclass(slots=True)
class _Row:
    """An activity as the prepared query returns it: the fields a feed item reads."""

    id: int
    workspace_id: int
    dedup_key: str
    channel: str
    verb: str
    direction: str
    occurred_at: dt.datetime
    updated_at: dt.datetime
    erased_at: dt.datetime | None
    subject: str
    text: str
    html: str
    attachments: list
    persons: list
    workspace: Workspace | None = None

    @property
    def pk(self) -> int:
        return self.id


@cache
def _activities_sql() -> str:
    a, p, i = Activity._meta.db_table, Participant._meta.db_table, Identity._meta.db_table
    # $2: the tier shows a subject or first line; $3: the tier shows the content.
    return f"""
        SELECT a.id, a.workspace_id, a.dedup_key, a.channel, a.verb, a.direction, a.occurred_at, a.updated_at,
               a.erased_at,
               CASE WHEN $2 THEN a.subject ELSE '' END, CASE WHEN $2 THEN a.text ELSE '' END,
               CASE WHEN $3 THEN a.html ELSE '' END, CASE WHEN $3 THEN a.attachments ELSE '[]'::jsonb END,
               (SELECT coalesce(json_agg(json_build_array(p.role, i.value, i.display, i.is_self) ORDER BY p.id), '[]')
                FROM {p} p JOIN {i} i ON i.id = p.identity_id WHERE p.activity_id = a.id)
        FROM {a} a WHERE a.id = ANY($1)
    """


def _json_value(value):
    return json.loads(value) if isinstance(value, str | bytes) else value


def feed_activities(*, ids: list[int], tier: str) -> dict[int, Activity | _Row]:
    """The page's activities with only the columns the tier shows (a metadata feed never
    reads a body), each with ``persons``: one prepared statement where prepared statements pay
    (see ``prepared_fetch``), else two ORM queries."""
    rows = prepared_fetch("mesh_feed_activities_v1", _activities_sql(),
                          [ids, tier != FeedToken.Tier.METADATA, tier == FeedToken.Tier.FULL])
    if rows is not None:
        out: dict[int, _Row] = {}
        for *fields_, attachments, persons in rows:
            out[fields_[0]] = _Row(*fields_, _json_value(attachments) or [],
                                   [_Party(*x) for x in _json_value(persons) or []])
        return out
    fields = ["id", "workspace_id", "dedup_key", "channel", "verb", "direction", "occurred_at", "updated_at",
              "erased_at"]
    if tier != FeedToken.Tier.METADATA:
        fields += ["subject", "text"]
    if tier == FeedToken.Tier.FULL:
        fields += ["html", "attachments"]
    activities = {a.pk: a for a in Activity.objects.filter(pk__in=ids).only(*fields)}
    for a in activities.values():
        a.persons = []
    rows = (
        Participant.objects.filter(activity_id__in=ids).order_by("pk")
        .values_list("activity_id", "role", "identity__value", "identity__display", "identity__is_self")
    )
    for activity_id, *fields_ in rows:
        activities[activity_id].persons.append(_Party(*fields_))
    return activities


@dataclass(slots=True)
class FeedEntry:
    guid: str
    title: str
    link: str
    published: dt.datetime
    updated: dt.datetime
    channel: str
    as2_type: str
    author: str | None
    recipients: list[str]
    summary: str | None  # plain text (subject tier and up)
    content_html: str | None  # sanitized HTML (full tier)
    content_text: str | None  # plain text (full tier)
    attachments: list[dict] = field(default_factory=list)


# Plain text in a feed (titles, names, descriptions, content_text) is escaped once, by the XML
# or JSON serializer. A reader that renders an RSS title as HTML (many do; a naive page puts
# every field into innerHTML) would turn a decoded "<" back into markup, and escaping twice
# makes feedparser-based readers show "&#x27;". So plain text holds no angle brackets: they
# become the look-alike single angle quotation marks, and every reader shows the same text.
_NO_MARKUP = str.maketrans({"<": "\u2039", ">": "\u203a"})
# What a tag: URI may not contain (RFC 3986); a dedup key can (a device event id is the
# client's string), and a GUID is shown as text by some readers.
_NOT_IN_URI = str.maketrans({c: f"%{ord(c):02X}" for c in '<>"{}|\\^` \t\r\n'})


def feed_text(text: str) -> str:
    """Plain text as a feed carries it: no markup, whatever the reader does with it."""
    return text.translate(_NO_MARKUP)


def _summary_html(text: str) -> str:
    """Plain text in an HTML field (RSS description, Atom summary, AS2 summary). Quotes stay
    as they are: they mean nothing outside a tag, and an entity is one more thing to decode."""
    return htmllib.escape(text, quote=False)


def feed_guid(a: Activity, *, public: bool = False) -> str:
    """The item's ``tag:`` URI (the ``id`` of ``mesh_export``). The public lifestream's is
    opaque: a dedup key is the source's identifier and can hold an address or a number."""
    if public:
        digest = hashlib.sha256(a.dedup_key.encode()).hexdigest()[:32]
        return f"tag:mesh,{a.workspace.created_at:%Y}:{a.workspace.slug}/public/{digest}"
    return tag_uri(a).translate(_NOT_IN_URI)


def _name(participant) -> str:
    ident = participant.identity
    return feed_text(ident.display or ident.value)


def _label(a: Activity) -> str:
    if a.channel in ("twitter", "x"):
        return X_VERB_LABELS.get(a.verb, "Post")
    if a.channel == "device":
        verb = (a.verb or "event").split(".")[0]
        return CHANNEL_LABELS.get(verb) or verb.replace("_", " ").capitalize()
    return CHANNEL_LABELS.get(a.channel) or a.channel.capitalize()


def _first_line(a: Activity) -> str:
    text = (a.subject or "").strip()
    if not text:
        text = next((line.strip() for line in (a.text or "").splitlines() if line.strip()), "")
    return text[:140] + ("…" if len(text) > 140 else "")


def _http_url(url) -> str:
    url = str(url or "").strip()
    return url if url.lower().startswith(("http://", "https://")) else ""


def sanitize_html(html: str) -> str:
    return nh3.clean(
        html, tags=SAFE_TAGS, clean_content_tags={"script", "style"}, url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def _text_html(text: str) -> str:
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join(f"<p>{escape(p.strip()).replace(chr(10), '<br>')}</p>" for p in paragraphs)


def _attachments(a: Activity) -> list[dict]:
    out = []
    for att in a.attachments or []:
        if not isinstance(att, dict):
            continue
        size = att.get("size")
        out.append({
            "name": feed_text(str(att.get("name") or att.get("filename") or "attachment")[:200]),
            "type": str(att.get("mediaType") or att.get("type") or att.get("content_type") or "application/octet-stream")[:100],
            "size": size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
            "url": _http_url(att.get("url")),
        })
    return out


def _public_title(a: Activity) -> str:
    """A lifestream item's title: what and which way, with no one's name."""
    label = _label(a)
    if label == "Call":
        return f"Call {PUBLIC_CALL_DIRECTIONS[a.direction]}" if a.direction in PUBLIC_CALL_DIRECTIONS else label
    if label in PUBLIC_MESSAGE_LABELS and a.direction in PUBLIC_DIRECTIONS:
        return f"{label} {PUBLIC_DIRECTIONS[a.direction]}"
    return label  # a post, a location, a battery report: no "way" to it


def _owner_wrote(a: Activity, parts: list, sender) -> bool:
    """Whether the item's text is the owner's own, which making it public publishes. Narrowly:
    an item with no counterpart at all (a location, a note, a post), or a message whose sender
    is one of the owner's identities (or, with no sender recorded, that went out). A device's
    text about a call or message is its app's, about the counterpart: not the owner's."""
    if all(p.identity.is_self for p in parts):
        return True
    if a.channel == "device":
        return False
    if sender is not None:
        return sender.identity.is_self
    return a.direction == "out"


def feed_entry(a: Activity, *, tier: str, link: str, public: bool = False) -> FeedEntry:
    """One activity as a feed item, showing no more than ``tier`` allows. ``a.workspace`` must
    be set (the GUID is made from it); participants are read from ``a.persons`` when the
    selector attached them (no query), else from the relation.

    ``public`` (the lifestream): no participant is named, not even the owner (the workspace is
    the feed's author), and the content is shown only where the owner wrote it."""
    parts = getattr(a, "persons", None)  # feed_activities attaches them as plain rows
    if parts is None:
        parts = list(a.participants.all())
    sender = next((p for p in parts if p.role in ("from", "author")), None)
    others = [p for p in parts if p.role not in ("from", "author") and not p.identity.is_self]
    recipients = [_name(p) for p in parts if p.role in ("to", "cc", "bcc")]
    if a.direction == "out":
        who, prep = (others[0] if others else None), "to"
    elif a.direction == "in":
        who, prep = sender or (others[0] if others else None), "from"
    else:
        who, prep = sender or (others[0] if others else None), "with"
    title = _label(a) + (f" {prep} {_name(who)}" if who is not None else "")
    author = _name(sender) if sender is not None else None
    if public:
        title, author, recipients = _public_title(a), None, []
        if not _owner_wrote(a, parts, sender):
            tier = FeedToken.Tier.METADATA
    summary = content_html = content_text = None
    attachments: list[dict] = []
    if tier in (FeedToken.Tier.SUBJECT, FeedToken.Tier.FULL):
        line = feed_text(_first_line(a))
        if line:
            title = f"{title}: {line}"
            summary = line
    if tier == FeedToken.Tier.FULL:
        attachments = _attachments(a)
        body = sanitize_html(a.html) if a.html.strip() else _text_html(a.text or "")
        if attachments:
            body += "<ul>" + "".join(
                f"<li>{escape(x['name'])} ({escape(x['type'])}{f', {x['size']} bytes' if x['size'] is not None else ''})</li>"
                for x in attachments
            ) + "</ul>"
        content_html = body
        content_text = feed_text(a.text or htmllib.unescape(nh3.clean(a.html or "", tags=set())) or summary or "")
    return FeedEntry(
        guid=feed_guid(a, public=public),
        title=title,
        link=link,
        published=a.occurred_at,
        updated=max(a.updated_at, a.occurred_at),
        channel=a.channel,
        as2_type=VERB_TYPES.get(a.verb, "Create"),
        author=author,
        recipients=recipients,
        summary=summary,
        content_html=content_html,
        content_text=content_text,
        attachments=attachments,
    )


# --- the formats ---------------------------------------------------------------------------------


def _json(doc: dict) -> str:
    """Compact JSON with < > & written as \\u escapes (as Django's json_script does): the
    values are unchanged for any JSON reader, and the document holds no markup even for a
    client that sniffs it as HTML."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _write_tombstones(handler, tombstones) -> None:
    for ref, when in tombstones:
        handler.addQuickElement("at:deleted-entry", None, {"ref": ref, "when": rfc3339(when)})


class RssFeedGenerator(feedgenerator.Rss201rev2Feed):
    def rss_attributes(self):
        return {**super().rss_attributes(), "xmlns:at": TOMBSTONE_NS}

    def add_root_elements(self, handler):
        super().add_root_elements(handler)
        for rel in ("first", "next"):
            if self.feed.get(f"{rel}_url"):
                handler.addQuickElement("atom:link", None, {"rel": rel, "href": self.feed[f"{rel}_url"]})
        _write_tombstones(handler, self.feed["tombstones"])

    def latest_post_date(self):
        return self.feed["updated"]


class AtomFeedGenerator(feedgenerator.Atom1Feed):
    def root_attributes(self):
        return {**super().root_attributes(), "xmlns:at": TOMBSTONE_NS}

    def add_root_elements(self, handler):
        super().add_root_elements(handler)
        for rel in ("first", "next"):
            if self.feed.get(f"{rel}_url"):
                handler.addQuickElement("link", "", {"rel": rel, "href": self.feed[f"{rel}_url"]})
        _write_tombstones(handler, self.feed["tombstones"])

    def add_item_elements(self, handler, item):
        super().add_item_elements(handler, item)
        entry: FeedEntry = item["entry"]
        if entry.content_html is not None:
            handler.addQuickElement("content", entry.content_html, {"type": "html"})

    def latest_post_date(self):
        return self.feed["updated"]


class JsonFeedGenerator(feedgenerator.SyndicationFeed):
    """JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/)."""

    content_type = CONTENT_TYPES["json"]

    def document(self) -> dict:
        doc = {
            "version": "https://jsonfeed.org/version/1.1",
            "title": self.feed["title"],
            "home_page_url": self.feed["link"],
            "feed_url": self.feed["feed_url"],
            "description": self.feed["description"],
            "language": self.feed["language"],
            "authors": [{"name": self.feed["author_name"]}],
        }
        if self.feed.get("next_url"):
            doc["next_url"] = self.feed["next_url"]
        items = []
        for item in self.items:
            e: FeedEntry = item["entry"]
            out = {
                "id": e.guid,
                "url": e.link,
                "title": e.title,
                "date_published": rfc3339(e.published),
                "date_modified": rfc3339(e.updated),
                "tags": [e.channel],
            }
            if e.content_html is not None:
                out["content_html"] = e.content_html
                out["content_text"] = e.content_text or ""
            else:
                out["content_text"] = e.summary or e.title
            if e.summary:
                out["summary"] = e.summary
            if e.author:
                out["authors"] = [{"name": e.author}]
            with_url = [x for x in e.attachments if x["url"]]
            if with_url:
                out["attachments"] = [
                    {"url": x["url"], "mime_type": x["type"], "title": x["name"],
                     **({"size_in_bytes": x["size"]} if x["size"] is not None else {})}
                    for x in with_url
                ]
            items.append(out)
        doc["items"] = items
        if self.feed["tombstones"]:
            # JSON Feed has no deletions; an extension (keys starting with "_") carries them.
            doc["_mesh"] = {"deleted": [{"id": ref, "deleted": rfc3339(when)} for ref, when in self.feed["tombstones"]]}
        return doc

    def write(self, outfile, encoding):
        outfile.write(_json(self.document()))


class As2FeedGenerator(feedgenerator.SyndicationFeed):
    """An Activity Streams 2.0 OrderedCollectionPage of the page's activities, tombstones first."""

    content_type = CONTENT_TYPES["as2"]

    def document(self) -> dict:
        ordered: list[dict] = [
            {"type": "Tombstone", "id": ref, "formerType": "Create", "deleted": rfc3339(when)}
            for ref, when in self.feed["tombstones"]
        ]
        for item in self.items:
            e: FeedEntry = item["entry"]
            obj = {
                "type": e.as2_type,
                "id": e.guid,
                "name": e.title,
                "published": rfc3339(e.published),
                "updated": rfc3339(e.updated),
                "url": e.link,
                "mesh:channel": e.channel,
            }
            if e.author:
                obj["actor"] = {"type": "Person", "name": e.author}
            if e.recipients:
                obj["to"] = [{"type": "Person", "name": n} for n in e.recipients]
            if e.summary:
                obj["summary"] = _summary_html(e.summary)
            if e.content_html is not None:
                obj["content"] = e.content_html
                obj["mediaType"] = "text/html"
            if e.attachments:
                obj["attachment"] = [
                    {"type": "Document", "name": x["name"], "mediaType": x["type"],
                     **({"url": x["url"]} if x["url"] else {}), **({"mesh:size": x["size"]} if x["size"] is not None else {})}
                    for x in e.attachments
                ]
            ordered.append(obj)
        doc = {
            "@context": AS2_CONTEXT,
            "type": "OrderedCollectionPage",
            "id": self.feed["feed_url"],
            "name": self.feed["title"],
            "summary": _summary_html(self.feed["description"]),
            "url": self.feed["link"],
            "partOf": self.feed["first_url"] or self.feed["feed_url"],
            "updated": rfc3339(self.feed["updated"]),
            "orderedItems": ordered,
        }
        if self.feed.get("next_url"):
            doc["next"] = self.feed["next_url"]
        return doc

    def write(self, outfile, encoding):
        outfile.write(_json(self.document()))


GENERATORS = {"rss": RssFeedGenerator, "atom": AtomFeedGenerator, "json": JsonFeedGenerator, "as2": As2FeedGenerator}


# --- the views -------------------------------------------------------------------------------------


@dataclass
class FeedState:
    """Everything a feed page is rendered from, known before any activity is loaded. What a 304
    does not need (the HTML page's path) is worked out only when the page is rendered."""

    scope: str  # what the ETag and cache key are about (a token hash, or a lifestream)
    workspace: Workspace
    tier: str
    title: str
    description: str
    page: Callable[[], str]  # the HTML page's path, for item links and the home link
    feed_path: str  # this format's path, without ?before
    feed_id: str
    base: str
    before: Cursor | None
    head: Head
    floor: dt.datetime  # Last-Modified when there is nothing newer
    token: FeedToken | None = None
    public: bool = False  # the lifestream: names no one (see feed_entry)

    @cached_property
    def page_path(self) -> str:
        return self.page()

    @property
    def home_url(self) -> str:  # the HTML page (absolute)
        return self.base + self.page_path

    def url(self, cursor: Cursor | None = None) -> str:
        return self.base + self.feed_path + (f"?before={cursor.encode()}" if cursor else "")

    @property
    def etag(self) -> str:
        material = json.dumps(
            [RENDER_VERSION, settings.DATABASES["default"].get("NAME", ""), self.scope, self.tier, self.base,
             self.feed_path, self.title, self.before.encode() if self.before else ""],
            separators=(",", ":"),
        )
        return hashlib.sha256(material.encode() + b"\0" + self.head.fingerprint()).hexdigest()[:40]

    @property
    def last_modified(self) -> dt.datetime:
        return self.head.last_modified(self.floor)


def _base_url(request: HttpRequest) -> str:
    return (getattr(settings, "MESH_PUBLIC_URL", "") or request.build_absolute_uri("/")).rstrip("/")


def _before(request: HttpRequest) -> Cursor | None:
    text = request.GET.get("before")
    if text is None:
        return None
    if not text:
        raise BadCursor("empty cursor")
    return Cursor.decode(text)


def _not_modified(request: HttpRequest, etag: str, last_modified: dt.datetime) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present; If-Modified-Since otherwise.
    ``etag`` is quoted. Read from META: ``request.headers`` builds a dict of every header."""
    inm = request.META.get("HTTP_IF_NONE_MATCH")
    if inm is not None:
        if inm.strip() == "*":
            return True
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return etag in tags
    ims = request.META.get("HTTP_IF_MODIFIED_SINCE")
    if ims:
        since = parse_http_date_safe(ims)
        return since is not None and int(last_modified.timestamp()) <= since
    return False


class _Cache:
    """Rendered bodies in Redis, keyed by ETag. Optional: any Redis trouble is a cache miss."""

    _client = None
    _url = None

    @classmethod
    def client(cls):
        url = getattr(settings, "REDIS_URL", "") or ""
        if not url or not getattr(settings, "MESH_FEED_CACHE", True):
            return None
        if cls._client is None or cls._url != url:
            import redis

            cls._client = redis.Redis.from_url(url, socket_timeout=0.05, socket_connect_timeout=0.05)
            cls._url = url
        return cls._client

    @classmethod
    def get(cls, key: str) -> bytes | None:
        try:
            client = cls.client()
            return client.get(key) if client is not None else None
        except Exception:  # a cache must never break a feed
            log.warning("feed cache read failed", exc_info=True)
            return None

    @classmethod
    def set(cls, key: str, body: bytes) -> None:
        try:
            client = cls.client()
            if client is not None:
                client.set(key, body, ex=CACHE_TTL_SECONDS)
        except Exception:
            log.warning("feed cache write failed", exc_info=True)


class TimelineFeed(Feed):
    """One page of a feed in one format. Subclasses say how ``get_object`` finds the page."""

    fmt = "rss"

    def __init__(self, fmt: str):
        self.fmt = fmt
        self.feed_type = GENERATORS[fmt]

    def __call__(self, request, *args, **kwargs):
        try:
            state = self.get_object(request, *args, **kwargs)
        except BadCursor as exc:
            return HttpResponseBadRequest(f"bad ?before= cursor: {exc}", content_type="text/plain")
        except ObjectDoesNotExist:
            raise Http404("no such feed") from None
        # The same for every format: the ETag and Last-Modified from the head, then a 304, the
        # cached body, or a render. Nothing here loads an activity or asks Redis before the 304.
        etag, last_modified = state.etag, state.last_modified
        headers = {"ETag": quote_etag(etag), "Last-Modified": http_date(last_modified.timestamp()),
                   "Cache-Control": "private"}
        if _not_modified(request, headers["ETag"], last_modified):
            response = HttpResponse(status=304)
        else:
            key = f"mesh:feed:{etag}"
            body = _Cache.get(key)
            if body is None:
                body = self.get_feed(state, request).writeString("utf-8").encode()
                _Cache.set(key, body)
            response = HttpResponse(body, content_type=CONTENT_TYPES[self.fmt])
        for name, value in headers.items():
            response.headers[name] = value
        return response

    # -- Feed API (the page is described by a FeedState) --

    def title(self, obj: FeedState) -> str:
        return feed_text(obj.title)

    def link(self, obj: FeedState) -> str:
        return obj.home_url

    def feed_url(self, obj: FeedState) -> str:
        return obj.url(obj.before)

    def description(self, obj: FeedState) -> str:
        return feed_text(obj.description)

    def author_name(self, obj: FeedState) -> str:
        return feed_text(obj.workspace.name or obj.workspace.slug)

    def feed_guid(self, obj: FeedState) -> str:
        return obj.feed_id

    def feed_extra_kwargs(self, obj: FeedState) -> dict:
        workspace = obj.workspace
        refs = dict(
            Activity.objects.filter(pk__in=[pk for pk, _ in obj.head.tombstones]).values_list("pk", "dedup_key")
        )
        tombstones = [
            (feed_guid(Activity(workspace=workspace, dedup_key=refs[pk]), public=obj.public), when)
            for pk, when in obj.head.tombstones if pk in refs
        ]
        return {
            "tombstones": tombstones,
            "updated": obj.last_modified,
            "next_url": obj.url(obj.head.next_cursor) if obj.head.next_cursor else None,
            "first_url": obj.url(None),
        }

    def get_feed(self, obj: FeedState, request) -> feedgenerator.SyndicationFeed:
        """What ``Feed.get_feed`` does, without its per-attribute introspection (700 dynamic
        lookups for a 50-item page, a few milliseconds) and with absolute URLs made up front."""
        feed = self.feed_type(
            title=self.title(obj), link=self.link(obj), description=self.description(obj),
            language=settings.LANGUAGE_CODE, feed_url=self.feed_url(obj), author_name=self.author_name(obj),
            feed_guid=self.feed_guid(obj), **self.feed_extra_kwargs(obj),
        )
        for item in self.items(obj):
            feed.add_item(
                title=self.item_title(item), link=item.link, description=self.item_description(item),
                unique_id=item.guid, unique_id_is_permalink=False, enclosures=self.item_enclosures(item),
                pubdate=item.published, updateddate=item.updated, author_name=item.author,
                categories=[item.channel], **self.item_extra_kwargs(item),
            )
        return feed

    def items(self, obj: FeedState) -> list[FeedEntry]:
        ids = obj.head.ids
        by_id = feed_activities(ids=ids, tier=obj.tier)
        entries = []
        for pk in ids:
            a = by_id.get(pk)
            if a is None or a.erased_at is not None:  # erased between the head and now
                continue
            a.workspace = obj.workspace
            link = obj.base + obj.page_path + f"?before={Cursor(a.occurred_at, a.pk + 1).encode()}#a{a.pk}"
            entries.append(feed_entry(a, tier=obj.tier, link=link, public=obj.public))
        return entries

    def item_title(self, item: FeedEntry) -> str:
        # Plain text with no markup in it (feed_text), escaped once by the serializer: RSS
        # readers that render titles as HTML and those that show them as text agree.
        return item.title

    def item_description(self, item: FeedEntry) -> str | None:
        if self.fmt == "atom":
            return _summary_html(item.summary) if item.summary else None
        if item.content_html is not None:
            return item.content_html
        return _summary_html(item.summary) if item.summary else None

    def item_link(self, item: FeedEntry) -> str:
        return item.link

    def item_guid(self, item: FeedEntry) -> str:
        return item.guid

    item_guid_is_permalink = False

    def item_pubdate(self, item: FeedEntry) -> dt.datetime:
        return item.published

    def item_updateddate(self, item: FeedEntry) -> dt.datetime:
        return item.updated

    def item_author_name(self, item: FeedEntry) -> str | None:
        return item.author

    def item_categories(self, item: FeedEntry) -> list[str]:
        return [item.channel]

    def item_enclosures(self, item: FeedEntry) -> list:
        with_url = [x for x in item.attachments if x["url"]]
        if self.fmt == "rss":
            with_url = with_url[:1]  # RSS allows one enclosure per item
        return [feedgenerator.Enclosure(x["url"], str(x["size"] or 0), x["type"]) for x in with_url]

    def item_extra_kwargs(self, item: FeedEntry) -> dict:
        return {"entry": item}


@cache  # the text is fixed; building it costs more than the poll's Python
def _poll_sql() -> str:
    """A poll of a first page in one round trip and one row: the token (``token_select_sql``'s
    columns) and the head of the timeline it names, as ``_first_page_sql`` reads it, aggregated
    into two arrays of integers (``Head``'s rows and tombstones, times in microseconds), so that
    the driver parses one row of plain values and no timestamp. No row: no live token."""
    te, a = TimelineEntry._meta.db_table, Activity._meta.db_table
    token_select = token_select_sql().replace("SELECT t.id,", "SELECT CASE WHEN t.device_id IS NULL THEN 'c' ELSE 'd' END "
                                        "AS kind, coalesce(t.device_id, t.contact_id) AS owner, t.id,", 1)
    return f"""
        WITH tok AS MATERIALIZED ({token_select}),
        dead AS MATERIALIZED (
            SELECT id, erased_at FROM {a} WHERE erased_at IS NOT NULL AND erased_at >= {_TOMBSTONE_CUTOFF_SQL}
        )
        SELECT id, workspace_id, contact_id, device_id, tier, token_hash, token_prefix, created_at, last_used_at,
               slug, name, w_created, c_name, merged_into_id, c_workspace_id, is_self, d_name, d_workspace_id,
               (SELECT array_agg(ARRAY[{_us_sql("p.occurred_at")}, p.activity_id, {_us_sql("p.updated_at")}]
                                 ORDER BY p.occurred_at DESC, p.activity_id DESC)
                FROM (SELECT te.occurred_at, te.activity_id, a.updated_at
                      FROM {te} te JOIN {a} a ON a.id = te.activity_id
                      WHERE te.kind = tok.kind AND te.owner_id = tok.owner AND a.erased_at IS NULL
                      ORDER BY te.occurred_at DESC, te.activity_id DESC LIMIT $2) p),
               (SELECT array_agg(ARRAY[q.id, {_us_sql("q.erased_at")}] ORDER BY q.erased_at DESC, q.id DESC)
                FROM (SELECT dead.id, dead.erased_at
                      FROM dead JOIN {te} te ON te.activity_id = dead.id AND te.kind = tok.kind AND te.owner_id = tok.owner
                      ORDER BY dead.erased_at DESC, dead.id DESC LIMIT $3) q)
        FROM tok
    """


def _poll(token: str, *, limit: int = PAGE_SIZE) -> tuple[FeedOwner | None, Head | None] | None:
    """Resolve a token and read its first page's head in one prepared statement. None where
    prepared statements are off; (None, None) for a token that opens nothing; the head is None
    when the token's contact was merged (its root's timeline is read separately)."""
    if not token_well_formed(token):
        return None, None
    rows = prepared_fetch("mesh_feed_poll_v3", _poll_sql(), [token_hash(token), limit + 1, TOMBSTONE_LIMIT])
    if rows is None:
        return None
    if not rows:
        return None, None
    *values, items, dead = rows[0]
    owner = owner_from_token(token_from_values(values))
    if owner is None:
        return None, None
    if owner.contact is not None and owner.contact.pk != owner.token.contact_id:
        return owner, None  # merged: the head above is of the merged-away contact's (empty) timeline
    return owner, Head.from_rows([tuple(r) for r in items or ()], [tuple(r) for r in dead or ()], limit=limit)


class TokenFeed(TimelineFeed):
    """``/feeds/<token>.<fmt>``: a contact's (with everything merged into it) or a device's."""

    def get_object(self, request, token: str, **kwargs) -> FeedState:
        polled = _poll(token) if "before" not in request.GET else None
        owner, head = polled if polled is not None else (feed_token_resolve(token), None)
        if owner is None:
            raise FeedToken.DoesNotExist
        before = _before(request)  # after the token: a bad token is a 404 whatever the cursor
        feed_token_touch(token=owner.token)
        if head is None:
            head = timeline_feed_head(kind=owner.kind, owner_id=owner.owner_id, before=before)
        ws = owner.workspace
        if owner.contact is not None:
            who = owner.contact.name or f"Contact {owner.contact.pk}"
            page = partial(reverse, "contact-detail", args=[owner.contact.pk])
            feed_id = f"tag:mesh,{ws.created_at:%Y}:{ws.slug}/feeds/contact/{owner.contact.pk}"
            title = f"{who} — {ws.name or ws.slug}"
        else:
            who = owner.device.name
            page = partial(reverse, "device-detail", args=[owner.device.pk])
            feed_id = f"tag:mesh,{ws.created_at:%Y}:{ws.slug}/feeds/device/{owner.device.pk}"
            title = f"{who} (device) — {ws.name or ws.slug}"
        return FeedState(
            scope=f"token:{owner.token.token_hash}:{owner.kind}{owner.owner_id}",
            workspace=ws, tier=owner.tier, title=title,
            description=f"Activity with {who} in Mesh ({owner.tier} feed).", page=page,
            feed_path=reverse("feed-token", kwargs={"token": token, "fmt": self.fmt}),
            feed_id=feed_id, base=_base_url(request), before=before, head=head, floor=owner.token.created_at,
            token=owner.token,
        )


class LifestreamFeed(TimelineFeed):
    """``/@<workspace>/feed.<fmt>``: the workspace's public items, shown in full (they are public)."""

    def get_object(self, request, workspace: str, **kwargs) -> FeedState:
        ws = Workspace.objects.get(slug=workspace)
        before = _before(request)
        head = lifestream_feed_head(workspace=ws, before=before)
        base = _base_url(request)

        def page() -> str:
            try:
                return reverse("lifestream", kwargs={"workspace": ws.slug})
            except NoReverseMatch:
                return f"/@{ws.slug}/"

        return FeedState(
            scope=f"lifestream:{ws.pk}", workspace=ws, tier=FeedToken.Tier.FULL,
            title=f"{ws.name or ws.slug} — lifestream", description=f"Public activity of {ws.name or ws.slug}.",
            page=page,
            feed_path=reverse("lifestream-feed", kwargs={"workspace": ws.slug, "fmt": self.fmt}),
            feed_id=f"tag:mesh,{ws.created_at:%Y}:{ws.slug}/lifestream", base=base, before=before, head=head,
            floor=ws.created_at, public=True,
        )


_TOKEN_FEEDS = {fmt: TokenFeed(fmt) for fmt in GENERATORS}
_LIFESTREAM_FEEDS = {fmt: LifestreamFeed(fmt) for fmt in GENERATORS}


@require_safe
@feed_throttle
def token_feed(request: HttpRequest, token: str, fmt: str) -> HttpResponse:
    return _TOKEN_FEEDS[fmt](request, token=token)


@require_safe
def lifestream_feed(request: HttpRequest, workspace: str, fmt: str) -> HttpResponse:
    return _LIFESTREAM_FEEDS[fmt](request, workspace=workspace)


# --- pages: feed tokens on a contact, and the minimal lifestream page ----------------------------


@login_required
def contact_feed_tokens(request: HttpRequest, contact_id: int) -> HttpResponse:
    """The contact's feed tokens: list them, create, rotate or revoke. A new token is shown
    once, on the page that answers the POST that made it."""
    contact = get_object_or_404(
        Contact.objects.select_related("workspace"), pk=contact_id, workspace__memberships__user=request.user
    )
    root = contact.root()
    new_token = ""
    message = ""
    if request.method == "POST":
        action = request.POST.get("action", "")
        tier = request.POST.get("tier") or None
        try:
            if action == "create":
                _row, new_token = feed_token_create(
                    workspace=contact.workspace, contact=root, tier=tier or FeedToken.Tier.METADATA
                )
            elif action == "rotate":
                _row, new_token = feed_token_rotate(workspace=contact.workspace, contact=root, tier=tier)
            elif action == "revoke":
                n = feed_token_revoke(workspace=contact.workspace, contact=root)
                message = f"{n} token{'s' if n != 1 else ''} revoked."
            else:
                return HttpResponseBadRequest("unknown action")
        except FeedTokenError as exc:
            return HttpResponseBadRequest(str(exc))
    elif request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    return render(request, "feeds/contact_feed_tokens.html", {
        "workspace": contact.workspace, "contact": root, "tokens": feed_tokens_for(contact=root),
        "tiers": FeedToken.Tier.choices, "new_token": new_token,
        "new_urls": feed_urls(new_token, base=_base_url(request)) if new_token else {}, "message": message,
    })
