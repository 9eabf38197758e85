"""Outbound feeds, the views: one relationship's timeline (a contact's or a device's, behind a
token) or a workspace's public lifestream, in the formats of ``formats``.

What feed readers rely on, around the document:

- The head (``heads``) decides the strong ``ETag`` and ``Last-Modified``, so
  ``If-None-Match``/``If-Modified-Since`` answer 304 without loading a single activity: a poll
  costs the token lookup and the head, which on persistent connections are one prepared
  statement, planned once, returning one row of integers (``_poll_sql``). The same for every
  format, and the same before a body is served from the cache.
- Rendered bodies are cached in Redis (when ``REDIS_URL`` is set) under the ETag, which is a
  hash of everything the body depends on; so a cached body is never stale and needs no
  invalidation.
- Paging is RFC 5005 style: ``?before=<cursor>``; token feeds are throttled (``feed_throttle``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property, partial

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
)
from django.urls import NoReverseMatch, reverse
from django.utils import feedgenerator
from django.utils.http import http_date, parse_http_date_safe, quote_etag
from django.views.decorators.http import require_safe

from ..conf import conf
from ..crypto import token_hash
from ..feed_tokens import (
    FeedOwner,
    feed_token_resolve,
    feed_token_touch,
    owner_from_token,
    token_from_values,
    token_select_sql,
    token_well_formed,
)
from ..models import Activity, FeedToken, Workspace
from ..rawdb import prepared_fetch
from ..selectors.timelines import BadCursor, Cursor, activities_for_tier, timeline_scan_sql
from ..throttle import feed_throttle
from .entries import FeedEntry, feed_entry, feed_guid, feed_text, summary_html
from .formats import CONTENT_TYPES, GENERATORS
from .heads import (
    PAGE_SIZE,
    TOMBSTONE_LIMIT,
    Head,
    lifestream_feed_head,
    recent_erased_sql,
    timeline_feed_head,
    timeline_tombstones_sql,
    us_sql,
)

log = logging.getLogger(__name__)

# Bump when the rendering changes, so that cached bodies and ETags of the old one are not used.
RENDER_VERSION = "feeds-2"
CACHE_TTL_SECONDS = 24 * 3600


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
    return (conf.PUBLIC_URL or request.build_absolute_uri("/")).rstrip("/")


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
        if not url or not conf.FEED_CACHE:
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


class TimelineFeed:
    """One page of a feed in one format; subclasses say how ``get_object`` finds the page.

    Not a ``django.contrib.syndication`` ``Feed``: its ``get_feed`` resolves every hook by
    introspection (700 dynamic lookups for a 50-item page, a few milliseconds) and has no
    place for the conditional GET and the cache. This writes the same ``feedgenerator``
    documents from `FeedEntry` items, with the 304 and the cache around them."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self.feed_type = GENERATORS[fmt]

    def get_object(self, request: HttpRequest, **kwargs) -> FeedState:
        raise NotImplementedError

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

    def get_feed(self, obj: FeedState, request: HttpRequest) -> feedgenerator.SyndicationFeed:
        """The page as a feed document, with absolute URLs made up front."""
        workspace = obj.workspace
        refs = dict(
            Activity.objects.filter(pk__in=[pk for pk, _ in obj.head.tombstones]).values_list("pk", "dedup_key")
        )
        tombstones = [
            (feed_guid(Activity(workspace=workspace, dedup_key=refs[pk]), public=obj.public), when)
            for pk, when in obj.head.tombstones if pk in refs
        ]
        feed = self.feed_type(
            title=feed_text(obj.title), link=obj.home_url, description=feed_text(obj.description),
            language=settings.LANGUAGE_CODE, feed_url=obj.url(obj.before),
            author_name=feed_text(workspace.name or workspace.slug), feed_guid=obj.feed_id,
            tombstones=tombstones, updated=obj.last_modified,
            next_url=obj.url(obj.head.next_cursor) if obj.head.next_cursor else None, first_url=obj.url(None),
        )
        for item in self.items(obj):
            feed.add_item(
                # Titles are plain text with no markup in them (feed_text), escaped once by the
                # serializer: RSS readers that render titles as HTML and those that show text agree.
                title=item.title, link=item.link, description=self._description(item),
                unique_id=item.guid, unique_id_is_permalink=False, enclosures=self._enclosures(item),
                pubdate=item.published, updateddate=item.updated, author_name=item.author,
                categories=[item.channel], entry=item,
            )
        return feed

    def items(self, obj: FeedState) -> list[FeedEntry]:
        ids = obj.head.ids
        by_id = activities_for_tier(ids=ids, tier=obj.tier)  # an item erased since the head is left out
        entries = []
        for pk in ids:
            a = by_id.get(pk)
            if a is None:
                continue
            a.workspace = obj.workspace
            link = obj.base + obj.page_path + f"?before={Cursor(a.occurred_at, a.pk + 1).encode()}#a{a.pk}"
            entries.append(feed_entry(a, tier=obj.tier, link=link, public=obj.public))
        return entries

    def _description(self, item: FeedEntry) -> str | None:
        if self.fmt == "atom":  # Atom carries the content in its own element (AtomFeedGenerator)
            return summary_html(item.summary) if item.summary else None
        if item.content_html is not None:
            return item.content_html
        return summary_html(item.summary) if item.summary else None

    def _enclosures(self, item: FeedEntry) -> list[feedgenerator.Enclosure]:
        with_url = [x for x in item.attachments if x["url"]]
        if self.fmt == "rss":
            with_url = with_url[:1]  # RSS allows one enclosure per item
        return [feedgenerator.Enclosure(x["url"], str(x["size"] or 0), x["type"]) for x in with_url]


@cache  # the text is fixed; building it costs more than the poll's Python
def _poll_sql() -> str:
    """A poll of a first page in one round trip and one row: the token (``token_select_sql``'s
    columns, after the timeline it names) and the head of that timeline, as
    ``heads.timeline_feed_head`` reads it, aggregated into two arrays of integers (``Head``'s
    rows and tombstones, times in microseconds), so that the driver parses one row of plain
    values and no timestamp. No row: no live token."""
    live = timeline_scan_sql(columns="te.occurred_at, te.activity_id, a.updated_at", kind="tok.kind",
                             owner="tok.owner", limit="$2")
    dead = timeline_tombstones_sql(columns="dead.id, dead.erased_at", kind="tok.kind", owner="tok.owner",
                                   limit="$3")
    return f"""
        WITH tok AS MATERIALIZED ({token_select_sql(owner_columns=True)}),
        dead AS MATERIALIZED ({recent_erased_sql()})
        SELECT tok.*,
               (SELECT array_agg(ARRAY[{us_sql("p.occurred_at")}, p.activity_id, {us_sql("p.updated_at")}]
                                 ORDER BY p.occurred_at DESC, p.activity_id DESC) FROM ({live}) p),
               (SELECT array_agg(ARRAY[q.id, {us_sql("q.erased_at")}] ORDER BY q.erased_at DESC, q.id DESC)
                FROM ({dead}) q)
        FROM tok
    """


def _poll(token: str, *, limit: int = PAGE_SIZE) -> tuple[FeedOwner | None, Head | None] | None:
    """Resolve a token and read its first page's head in one prepared statement. None where
    prepared statements are off; (None, None) for a token that opens nothing; the head is None
    when the token's contact was merged (its root's timeline is read separately)."""
    if not token_well_formed(token):
        return None, None
    rows = prepared_fetch("mesh_feed_poll_v4", _poll_sql(), [token_hash(token), limit + 1, TOMBSTONE_LIMIT])
    if rows is None:
        return None
    if not rows:
        return None, None
    _kind, _owner, *values, items, dead = rows[0]
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
