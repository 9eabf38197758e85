"""Server-rendered pages. Every page is scoped to the workspaces the user belongs to: anything
else is a 404, never a 403 (no hint that it exists). The lifestream is the one public page,
and it shows only items marked public.

Views read through selectors, write through services, and prepare plain display values;
templates auto-escape everything that came from a source. Nothing here marks user content as
safe, except the heat strip's SVG, which is built with ``format_html`` from numbers and dates.
Email HTML is never put into a page: it is served as its own document (sanitized again, with
its own strict CSP) into a sandboxed iframe.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db.models import Count, F, Q, Sum
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_POST, require_safe
from django.views.decorators.vary import vary_on_headers

from connectors.base import ConfigError, registry
from connectors.text import MAX_JSON_DEPTH

from .contacts import contact_merge_preview, contact_rename, contact_unmerge_preview
from .heatmap import heat_svg, heat_weeks
from .mail_html import message_csp, message_document
from .models import Activity, Contact, Device, Source, TimelineEntry, Workspace
from .search import (
    highlight_terms,
    search_backlog,
    search_terms,
    timeline_search_page,
    workspace_search_page,
)
from .selectors import (
    NO_PENDING,
    BadCursor,
    Cursor,
    activities_by_ids,
    contact_identities,
    contacts_list,
    inbound_pending,
    timeline_for_contact,
    timeline_for_device,
    workspaces_for_user,
)
from .services import ServiceError, contact_merge, contact_unmerge, source_create
from .sources import (
    connector_fields,
    source_config_fields,
    source_disable,
    source_edit,
    source_enable,
    source_failures_dismiss,
    source_is_file_import,
    source_remove,
    sources_overview,
)

PAGE_SIZE = getattr(settings, "MESH_PAGE_SIZE", 50)
CHANNELS = ("email", "sms", "twitter", "device")
DIRECTIONS = (("in", "incoming"), ("out", "outgoing"), ("none", "no direction"))
LIVE_MAX = 50  # more new items than this in one poll: the page says "reload" instead
ONLINE_SECONDS = 15 * 60


def _workspace(request: HttpRequest):
    workspaces = list(workspaces_for_user(user=request.user))
    wanted = request.GET.get("ws") or request.session.get("mesh_workspace")
    for ws in workspaces:
        if ws.slug == wanted:
            request.session["mesh_workspace"] = ws.slug
            return ws, workspaces
    return (workspaces[0] if workspaces else None), workspaces


def _member_contact(request: HttpRequest, contact_id: int) -> Contact:
    return get_object_or_404(
        Contact.objects.select_related("workspace", "merged_into"),
        pk=contact_id, workspace__memberships__user=request.user,
    )


# --- contact list ------------------------------------------------------------------------------

def _contact_cursor_encode(contact: Contact) -> str:
    when = contact.last_activity_at
    stamp = when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ") if when else "none"
    return f"{stamp}_{contact.pk}"


def _contact_cursor_decode(text: str) -> tuple[dt.datetime | None, int]:
    """(last_activity_at, id) of the last contact shown; raises BadCursor."""
    stamp, _, pk = text.partition("_")
    try:
        pk_value = int(pk)
        if stamp == "none":
            return None, pk_value
        return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.UTC), pk_value
    except (ValueError, TypeError):
        raise BadCursor(f"bad cursor {text[:40]!r}") from None


def _contacts_after(qs, before: tuple[dt.datetime | None, int]):
    """Keyset filter for the order (last_activity_at DESC NULLS LAST, id DESC)."""
    when, pk = before
    if when is None:
        return qs.filter(last_activity_at=None, pk__lt=pk)
    return qs.filter(
        Q(last_activity_at__lt=when) | Q(last_activity_at=when, pk__lt=pk) | Q(last_activity_at=None)
    )


def _query(params: dict) -> str:
    """``?a=1&b=2`` for the non-empty params, "" when there are none."""
    kept = {k: v for k, v in params.items() if v}
    return f"?{urlencode(kept)}" if kept else ""


@login_required
def contact_list(request: HttpRequest) -> HttpResponse:
    workspace, _ = _workspace(request)
    q = request.GET.get("q", "").strip()
    channel = request.GET.get("channel", "")
    if channel not in CHANNELS:
        channel = ""
    before_text = request.GET.get("before", "")
    try:
        before = _contact_cursor_decode(before_text) if before_text else None
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    contacts: list[Contact] = []
    next_url = ""
    if workspace is not None:
        qs = contacts_list(workspace=workspace, search=q, channel=channel)
        if before is not None:
            qs = _contacts_after(qs, before)
        rows = list(qs[: PAGE_SIZE + 1])
        contacts = rows[:PAGE_SIZE]
        if len(rows) > PAGE_SIZE:
            next_url = _query({"q": q, "channel": channel, "before": _contact_cursor_encode(contacts[-1])})
        for c in contacts:
            c.identity_list = sorted(c.identities.all(), key=lambda i: (i.kind, i.value))
            c.channel_list = sorted((c.channel_counts or {}).items())
    return render(request, "streams/contact_list.html", {
        "workspace": workspace, "contacts": contacts, "q": q, "channel": channel, "channels": CHANNELS,
        "next_url": next_url, "first_url": reverse("contact-list") + _query({"q": q, "channel": channel}),
        "paged": bool(before_text),
    })


# --- activities: display values ------------------------------------------------------------------

# Extra fields that are shown elsewhere, or are bookkeeping, not something to read.
HIDDEN_EXTRA = {"type", "title", "text", "summary", "thread", "direction", "invalid_participants", "lat", "lon"}
DELIVERY_LABELS = {
    "queued": "queued", "accepted": "queued", "scheduled": "scheduled", "sending": "sending", "sent": "sent",
    "delivered": "delivered", "read": "read", "undelivered": "not delivered", "failed": "failed",
    "receiving": "receiving", "received": "received",
}
DELIVERY_BAD = {"undelivered", "failed"}


def _duration(seconds) -> str:
    try:
        total = int(float(seconds))
    except (TypeError, ValueError):
        return str(seconds)
    hours, rest = divmod(abs(total), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


# A stored value is shown as at most this much text: ``extra`` and device state hold whatever a
# source sent, and an item stored before the doors bounded it must still render.
PLAIN_CHARS = 300


def _plain(value, *, limit: int = PLAIN_CHARS) -> str:
    """A JSON value as short readable text (still escaped by the template): at most ``limit``
    characters, nesting deeper than ``MAX_JSON_DEPTH`` shown as "…". The walk stops as soon as
    the text is long enough, so a huge or deeply nested value costs no more than a small one."""
    parts: list[str] = []
    room = limit + 1  # one more than shown, to know whether to end with "…"

    def add(text: str) -> None:
        nonlocal room
        parts.append(text[:room])
        room -= len(parts[-1])

    def walk(item, depth: int) -> None:
        if isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                add("…")
                return
            pairs = item.items() if isinstance(item, dict) else ((None, v) for v in item)
            for i, (key, child) in enumerate(pairs):
                if room <= 0:
                    return
                if i:
                    add(", ")
                if key is not None:
                    add(f"{key}: ")
                walk(child, depth + 1)
        elif isinstance(item, bool):
            add("yes" if item else "no")
        elif item is None:
            add("—")
        else:
            add(str(item))

    walk(value, 0)
    text = "".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _map_url(lat, lon) -> str:
    """A link (never an embedded map: that would be a request to a third party on page load)."""
    la, lo = _number(lat), _number(lon)
    if la is None or lo is None or not (-90 <= la <= 90 and -180 <= lo <= 180):
        return ""
    return f"https://www.openstreetmap.org/?mlat={la:.5f}&mlon={lo:.5f}#map=16/{la:.5f}/{lo:.5f}"


def _extra_items(extra: dict) -> list[tuple[str, str]]:
    extra = extra if isinstance(extra, dict) else {}
    items: list[tuple[str, str]] = []
    if "lat" in extra and "lon" in extra:
        items.append(("location", f"{_plain(extra['lat'])}, {_plain(extra['lon'])}"))
    for key, value in extra.items():
        if key in HIDDEN_EXTRA:
            continue
        if key in ("duration", "duration_seconds"):
            text = _duration(value)
        elif key == "battery" and isinstance(value, int | float) and not isinstance(value, bool):
            text = f"{value:g}%"
        else:
            text = _plain(value)
        items.append((key.replace("_", " "), text[:300]))
    return items


def _http_url(url: str) -> str:
    """Only http(s) links are rendered as links: no javascript: or data: from a source."""
    url = (url or "").strip()
    return url if url.lower().startswith(("http://", "https://")) else ""


def _size(n) -> str:
    try:
        n = int(n)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _decorate(activities: list[Activity]) -> list[Activity]:
    """Attach display values to each activity of a page (no queries: the selector attached
    each activity's participants as ``persons``)."""
    for a in activities:
        extra = a.extra if isinstance(a.extra, dict) else {}
        a.extra_items = _extra_items(extra) if a.channel == "device" else []
        # Stored extra is whatever a source sent: only a string is a type or a snippet.
        etype = extra.get("type") if a.channel == "device" else None
        a.event_type = etype if isinstance(etype, str) else a.verb
        a.map_url = _map_url(extra.get("lat"), extra.get("lon")) if a.channel == "device" else ""
        a.link = _http_url(a.url)
        a.body = a.text
        snippet = extra.get("snippet") if a.channel == "email" else None
        a.snippet = snippet if isinstance(snippet, str) else ""
        a.has_html = bool((a.html or "").strip())
        a.remote_images = _int(extra.get("remote_images_blocked"))
        a.tracking_pixels = _int(extra.get("tracking_pixels"))
        delivery = extra.get("delivery") if isinstance(extra.get("delivery"), dict) else {}
        state = str(delivery.get("state") or "")
        a.delivery = {
            "state": state, "label": DELIVERY_LABELS.get(state, state.replace("_", " ")),
            "bad": state in DELIVERY_BAD, "error_code": _plain(delivery.get("error_code") or ""),
        } if state and not (a.direction == "in" and state in ("received", "receiving")) else None
        a.is_dm = a.channel == "twitter" and a.verb in ("message", "dm", "direct_message")
        a.attachment_list = [
            {"name": _plain(att.get("name") or att.get("filename") or "attachment"),
             "type": _plain(att.get("mediaType") or att.get("content_type") or att.get("type") or ""),
             "size": _size(att.get("size")), "inline": bool(att.get("content_id"))}
            for att in (a.attachments or []) if isinstance(att, dict)
        ]
        a.people = [
            {"role": p.role, "name": p.name, "label": p.label,
             "contact_id": None if p.is_self else p.contact_id, "is_self": p.is_self}
            for p in a.persons
        ]
    return activities


# Rendered activities are cached: the same items are shown again and again (every visit, every
# "older" click), and rendering 50 of them with Django templates costs more than reading them.
# The key holds everything the fragment depends on, so an entry is never stale: the activity's
# updated_at (bumped by delivery-state changes and reprocessing), its participants' contacts
# (merges), its device's name, and how the page shows it.
FRAGMENT_VERSION = "web-1"
FRAGMENT_SECONDS = 24 * 3600


def render_activities(activities: list[Activity], *, contact: Contact | None = None, hide_device: bool = False,
                      highlight: list[str] | None = None, live: bool = False, show_date: bool = False) -> None:
    """Set ``a.fragment`` (the rendered ``_activity.html``) on each activity."""
    if not activities:
        return
    tpl = get_template("streams/_activity.html")
    page_key = (contact.pk if contact else None, hide_device, tuple(highlight or ()), live, show_date)
    keys = {}
    for a in activities:
        parts = (a.pk, a.updated_at.isoformat(), a.device.name if a.device else "",
                 tuple((p.role, p.contact_id, p.display) for p in a.persons), page_key)
        keys[a.pk] = f"mesh:frag:{FRAGMENT_VERSION}:{a.pk}:" + hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()
    cached = cache.get_many(list(keys.values()))
    fresh = {}
    for a in activities:
        html = cached.get(keys[a.pk])
        if html is None:
            html = tpl.render({"a": a, "contact": contact, "hide_device": hide_device, "highlight": highlight or [],
                               "live": live, "show_date": show_date})
            fresh[keys[a.pk]] = html
        a.fragment = mark_safe(html)  # our own template's output: every value in it was escaped
    if fresh:
        cache.set_many(fresh, FRAGMENT_SECONDS)


@dataclass
class Block:
    """What the timeline shows as one piece: a single activity, an email thread, or an SMS
    conversation (a run of texts on one day). Items are oldest first, to read top to bottom."""

    kind: str  # "single", "thread", "sms"
    items: list[Activity] = field(default_factory=list)

    @property
    def newest(self) -> Activity:
        return self.items[-1]

    @property
    def day(self) -> dt.date:
        return self.newest.occurred_at.astimezone(dt.UTC).date()

    @property
    def subject(self) -> str:
        return next((a.subject for a in self.items if a.subject), "")


def _thread_of(a: Activity) -> str:
    extra = a.extra if isinstance(a.extra, dict) else {}
    return a.thread_key or str(extra.get("thread") or "")


def timeline_blocks(activities: list[Activity]) -> list[Block]:
    """Group a newest-first page: every message of an email thread on the page joins the
    thread's newest one; consecutive texts of one day read as one conversation."""
    blocks: list[Block] = []
    threads: dict[str, Block] = {}
    for a in activities:
        if a.channel == "email" and _thread_of(a):
            key = _thread_of(a)
            block = threads.get(key)
            if block is None:
                block = threads[key] = Block("thread")
                blocks.append(block)
            block.items.insert(0, a)
            continue
        if a.channel == "sms" or (a.channel == "device" and str(a.event_type).startswith("sms.")):
            last = blocks[-1] if blocks else None
            if (last is not None and last.kind == "sms"
                    and last.items[0].occurred_at.astimezone(dt.UTC).date() == a.occurred_at.astimezone(dt.UTC).date()):
                last.items.insert(0, a)
                continue
            blocks.append(Block("sms", [a]))
            continue
        blocks.append(Block("single", [a]))
    return blocks


def _cursor(request: HttpRequest) -> Cursor | None:
    return Cursor.decode(request.GET.get("before"))


def _day(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text.strip()), dt.time(), tzinfo=dt.UTC)
    except ValueError:
        return None


@dataclass
class Filters:
    channel: str = ""
    direction: str = ""
    since: str = ""
    until: str = ""
    q: str = ""
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_request(cls, request: HttpRequest) -> Filters:
        f = cls()
        get = request.GET
        channel = get.get("channel", "").strip()
        f.channel = channel if re.fullmatch(r"[a-z0-9_-]{1,16}", channel) else ""
        direction = get.get("direction", "")
        f.direction = direction if direction in {d for d, _ in DIRECTIONS} else ""
        for name in ("since", "until"):
            value = get.get(name, "").strip()
            if value and _day(value) is None:
                f.errors.append(f"{name}: not a date (YYYY-MM-DD)")
                value = ""
            setattr(f, name, value)
        f.q = search_terms(get.get("q", ""))
        return f

    @property
    def active(self) -> bool:
        return bool(self.channel or self.direction or self.since or self.until or self.q)

    def params(self) -> dict[str, str]:
        return {"channel": self.channel, "direction": self.direction, "since": self.since,
                "until": self.until, "q": self.q}

    def selector_kwargs(self) -> dict:
        until = _day(self.until) if self.until else None
        return {
            "channel": self.channel or None, "direction": self.direction or None,
            "since": _day(self.since) if self.since else None,
            # "until" is inclusive on the page: the whole day counts.
            "until": until + dt.timedelta(days=1) if until else None,
        }


def _timeline(kind: str, owner_id: int, filters: Filters, before: Cursor | None):
    if filters.q:
        return timeline_search_page(kind=kind, owner_id=owner_id, q=filters.q, before=before, limit=PAGE_SIZE,
                                    **filters.selector_kwargs())
    if kind == "c":
        return timeline_for_contact(contact=Contact(pk=owner_id), before=before, limit=PAGE_SIZE,
                                    **filters.selector_kwargs())
    return timeline_for_device(device=Device(pk=owner_id), before=before, limit=PAGE_SIZE,
                               **filters.selector_kwargs())


def _head_cursor(activities: list[Activity]) -> str:
    if not activities:
        return Cursor(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), 0).encode()
    newest = max(activities, key=lambda a: (a.occurred_at, a.pk))
    return Cursor(newest.occurred_at, newest.pk).encode()


def _sms_state(workspace: Workspace, identities) -> dict:
    phones = [i for i in identities if i.kind == "phone" and i.value.startswith("+") and not i.is_self]
    if not phones:
        return {"possible": False}
    has_source = Source.objects.filter(workspace=workspace, connector="twilio_sms").exists()
    return {"possible": True, "to": phones[0].value, "source": has_source}


MORE_HEADER = "X-Mesh-More"


def _older_url(filters: Filters, page) -> str:
    """The "Older" link of a page: its filters and the cursor after its last item ("" at the end)."""
    if page is None or page.next_cursor is None:
        return ""
    return _query({**filters.params(), "before": page.next_cursor.encode()})


def _wants_more(request: HttpRequest, before: Cursor | None) -> bool:
    """mesh.js asks for an "older" page with this header and appends what it gets below what
    is shown; without script the same link loads the whole page."""
    return before is not None and request.headers.get(MORE_HEADER) == "1"


def timeline_more(request: HttpRequest, *, blocks, filters: Filters, older_url: str) -> HttpResponse:
    """Just the items and the next "older" link: no header, identities or heat strip to build
    (an older page is the timeline's own range scan plus rendering, whatever the depth)."""
    return render(request, "streams/_timeline_more.html", {
        "blocks": blocks, "filters": filters, "older_url": older_url, "paged": True,
    })


@login_required
@require_safe
@vary_on_headers(MORE_HEADER)
def contact_detail(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _member_contact(request, contact_id)
    try:
        before = _cursor(request)
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    filters = Filters.from_request(request)
    survivor = contact.root() if contact.merged_into_id else None
    if _wants_more(request, before) and not survivor:
        page = _timeline("c", contact.pk, filters, before)
        activities = _decorate(page.activities)
        render_activities(activities, contact=contact, highlight=highlight_terms(filters.q))
        return timeline_more(
            request, blocks=timeline_blocks(activities), filters=filters,
            older_url=_older_url(filters, page))
    page = None if survivor else _timeline("c", contact.pk, filters, before)
    activities = _decorate(page.activities) if page else []
    render_activities(activities, contact=contact, highlight=highlight_terms(filters.q))
    identities = contact_identities(contact=contact)
    heat = ""
    if not survivor:
        weeks = heat_weeks(kind="c", owner_id=contact.pk, summary=(
            contact.activity_count, contact.last_activity_at.isoformat() if contact.last_activity_at else ""))
        heat = heat_svg(weeks, link="?")
    channels = sorted((contact.channel_counts or {}).items())
    return render(request, "streams/contact_detail.html", {
        "workspace": contact.workspace, "contact": contact, "identities": identities,
        "channel_counts": channels, "filter_channels": sorted({c for c, _ in channels} | {filters.channel} - {""}),
        "directions": DIRECTIONS,
        "merged_children": list(contact.merged_children.order_by("pk")),
        "survivor": survivor, "heat": heat, "filters": filters,
        "page": page, "activities": activities, "blocks": timeline_blocks(activities),
        "highlight": highlight_terms(filters.q),
        "older_url": _older_url(filters, page),
        "newest_url": _query(filters.params()) or "?",
        "paged": before is not None,
        # Live updates only where new items would appear: the unfiltered first page.
        "live_url": reverse("contact-since", args=[contact.pk]) if page and before is None and not filters.active else "",
        "live_after": _head_cursor(activities),
        "live_poll_ms": getattr(settings, "MESH_LIVE_POLL_MS", 10_000),
        "sms": _sms_state(contact.workspace, identities) if not survivor else {"possible": False},
    })


@login_required
@require_safe
def contact_since(request: HttpRequest, contact_id: int) -> HttpResponse:
    """New items at the top of a contact's timeline since ``after`` (the newest item the page
    shows), as rendered HTML for mesh.js to insert. One range scan on the timeline index."""
    contact = _member_contact(request, contact_id)
    try:
        after = Cursor.decode(request.GET.get("after")) or Cursor(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), 0)
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    if contact.merged_into_id:
        return JsonResponse({"count": 0, "after": after.encode(), "html": "", "reload": True})
    rows = list(
        TimelineEntry.objects.filter(kind="c", owner_id=contact.pk, activity__erased_at=None)
        .filter(TupleGreaterThan(Tuple(F("occurred_at"), F("activity_id")), (after.occurred_at, after.activity_id)))
        .order_by("occurred_at", "activity_id")
        .values_list("occurred_at", "activity_id")[: LIVE_MAX + 1]
    )
    if len(rows) > LIVE_MAX:
        return JsonResponse({"count": len(rows), "after": after.encode(), "html": "", "reload": True})
    by_id = activities_by_ids(ids=[pk for _, pk in rows])
    activities = _decorate([by_id[pk] for _, pk in reversed(rows) if pk in by_id])
    render_activities(activities, contact=contact, live=True)
    html = "".join(a.fragment for a in activities)
    new_after = Cursor(*rows[-1]).encode() if rows else after.encode()
    response = JsonResponse({"count": len(activities), "after": new_after, "html": html, "reload": False})
    response["Cache-Control"] = "no-store"
    return response


# --- contact actions ---------------------------------------------------------------------------


@login_required
@require_POST
def contact_rename_view(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _member_contact(request, contact_id)
    try:
        contact_rename(workspace=contact.workspace, contact=contact, name=request.POST.get("name", ""))
        messages.success(request, "Name saved.")
    except ServiceError as exc:
        messages.error(request, f"Not renamed: {exc}.")
    return redirect("contact-detail", contact.pk)


@login_required
def contact_merge_view(request: HttpRequest, contact_id: int) -> HttpResponse:
    """Pick another contact, see what would move, then merge it into this one."""
    contact = _member_contact(request, contact_id)
    workspace = contact.workspace
    other_id = request.POST.get("other") or request.GET.get("other")
    other = None
    if other_id:
        try:
            other = Contact.objects.get(pk=int(other_id), workspace=workspace)
        except (ValueError, Contact.DoesNotExist):
            raise Http404("no such contact") from None
    if request.method == "POST":
        if other is None:
            return HttpResponseBadRequest("choose a contact to merge")
        try:
            contact_merge(workspace=workspace, target=contact, other=other)
        except ServiceError as exc:
            messages.error(request, f"Not merged: {exc}.")
            return redirect("contact-detail", contact.pk)
        messages.success(request, f"Merged “{other}” into “{contact}”. Undo it with “Split off”.")
        return redirect("contact-detail", contact.pk)
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    preview = error = None
    if other is not None:
        try:
            preview = contact_merge_preview(workspace=workspace, target=contact, other=other)
        except ServiceError as exc:
            error = str(exc)
    q = request.GET.get("q", "").strip()[:200]
    candidates = []
    if q and preview is None:
        candidates = [c for c in contacts_list(workspace=workspace, search=q)[:20] if c.pk != contact.pk]
    return render(request, "streams/contact_merge.html", {
        "workspace": workspace, "contact": contact, "other": other, "preview": preview, "error": error,
        "q": q, "candidates": candidates,
    })


@login_required
def contact_unmerge_view(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _member_contact(request, contact_id)
    workspace = contact.workspace
    try:
        root, parts = contact_unmerge_preview(workspace=workspace, contact=contact)
    except ServiceError as exc:
        messages.error(request, f"Nothing to split: {exc}.")
        return redirect("contact-detail", contact.pk)
    if request.method == "POST":
        try:
            result = contact_unmerge(workspace=workspace, contact=contact)
        except ServiceError as exc:
            messages.error(request, f"Not split: {exc}.")
            return redirect("contact-detail", contact.pk)
        names = ", ".join(f"“{c}”" for c in result[1:])
        messages.success(request, f"Split {names} off “{result[0]}”.")
        return redirect("contact-detail", result[0].pk if contact.pk == result[0].pk else contact.pk)
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    return render(request, "streams/contact_unmerge.html", {
        "workspace": workspace, "contact": contact, "root": root, "parts": parts,
    })


@login_required
@require_POST
def contact_sms_view(request: HttpRequest, contact_id: int) -> HttpResponse:
    """Reply by SMS through the workspace's source that can send (streams.messaging.message_send)."""
    from .messaging import MessageSendError, message_send

    contact = _member_contact(request, contact_id)
    root = contact.root()
    try:
        activity = message_send(workspace=contact.workspace, contact=root, body=request.POST.get("body", ""))
    except MessageSendError as exc:
        messages.error(request, f"Not sent: {exc}")
        return redirect("contact-detail", root.pk)
    state = ((activity.extra or {}).get("delivery") or {}).get("state", "queued")
    messages.success(request, f"Text sent ({state}).")
    return redirect(reverse("contact-detail", args=[root.pk]) + f"#a{activity.pk}")


# --- email body --------------------------------------------------------------------------------


@login_required
@require_safe
@xframe_options_sameorigin
def activity_body(request: HttpRequest, activity_id: int) -> HttpResponse:
    """An email's HTML as its own document, for a sandboxed iframe on the contact page. Remote
    images only with ``?images=1`` (the user asked)."""
    activity = get_object_or_404(
        Activity.objects.filter(workspace__memberships__user=request.user, erased_at=None),
        pk=activity_id,
    )
    remote = request.GET.get("images") == "1"
    doc = message_document(subject=activity.subject, html=activity.html, text=activity.text,
                           raw=activity.raw if remote else None, remote_images=remote)
    response = HttpResponse(doc, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = message_csp(remote_images=remote)
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, max-age=300"
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- full-text search across the workspace -------------------------------------------------------


@login_required
@require_safe
def search(request: HttpRequest) -> HttpResponse:
    workspace, _ = _workspace(request)
    filters = Filters.from_request(request)
    try:
        before = _cursor(request)
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    page = None
    if workspace is not None and filters.q:
        page = workspace_search_page(workspace=workspace, q=filters.q, before=before, limit=PAGE_SIZE,
                                     **filters.selector_kwargs())
    activities = _decorate(page.activities) if page else []
    render_activities(activities, highlight=highlight_terms(filters.q))
    return render(request, "streams/search.html", {
        "workspace": workspace, "filters": filters, "activities": activities, "channels": CHANNELS,
        "directions": DIRECTIONS, "highlight": highlight_terms(filters.q),
        "older_url": _older_url(filters, page),
        "newest_url": _query(filters.params()) or "?", "paged": before is not None,
        "backlog": search_backlog() if page is not None else 0,
    })


# --- devices -----------------------------------------------------------------------------------


def _state_items(state: dict) -> list[dict]:
    items = []
    for key, entry in sorted((state or {}).items()):
        if isinstance(entry, dict) and "value" in entry:
            value, at = entry.get("value"), entry.get("at")
        else:
            value, at = entry, None
        if key == "battery" and isinstance(value, int | float) and not isinstance(value, bool):
            text = f"{value:g}%"
        else:
            text = _plain(value)
        when = None
        if isinstance(at, str):
            try:
                when = dt.datetime.fromisoformat(at)
            except ValueError:
                when = None
        items.append({"key": key.replace("_", " "), "value": text[:300], "at": when, "raw": value})
    return items


def _device_status(device: Device, now: dt.datetime | None = None) -> dict:
    """Presence, battery and last location, from the device's state and last contact."""
    from django.utils import timezone

    now = now or timezone.now()
    state = {i["key"]: i for i in _state_items(device.state)}
    seen = device.last_seen_at or device.last_event_at
    if device.is_revoked:
        presence = "revoked"
    elif seen and (now - seen).total_seconds() <= ONLINE_SECONDS:
        presence = "online"
    elif seen:
        presence = "away"
    else:
        presence = "never seen"
    battery = state.get("battery")
    level = _number(battery["raw"]) if battery else None
    location = None
    if "lat" in state and "lon" in state:
        location = {
            "lat": state["lat"]["value"], "lon": state["lon"]["value"],
            "place": state["place"]["value"] if "place" in state else "",
            "at": state["lat"]["at"], "map_url": _map_url(state["lat"]["raw"], state["lon"]["raw"]),
        }
    return {
        "presence": presence, "seen": seen,
        "reported_presence": state["presence"]["value"] if "presence" in state else "",
        "battery": battery, "battery_level": max(0, min(100, level)) if level is not None else None,
        "charging": state["charging"]["raw"] is True if "charging" in state else None,
        "location": location,
    }


@login_required
def device_list(request: HttpRequest) -> HttpResponse:
    workspace, _ = _workspace(request)
    devices: list[Device] = []
    if workspace is not None:
        devices = list(Device.objects.filter(workspace=workspace).order_by("name", "pk"))
        pending = inbound_pending(workspace=workspace)
        for d in devices:
            d.pending = pending.get(f"device:{d.pk}", NO_PENDING)
            d.state_items = _state_items(d.state)
            d.status = _device_status(d)
    return render(request, "streams/device_list.html", {"workspace": workspace, "devices": devices})


@login_required
@require_safe
@vary_on_headers(MORE_HEADER)
def device_detail(request: HttpRequest, device_id: int) -> HttpResponse:
    device = get_object_or_404(
        Device.objects.select_related("workspace"), pk=device_id, workspace__memberships__user=request.user
    )
    try:
        before = _cursor(request)
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    filters = Filters.from_request(request)
    page = _timeline("d", device.pk, filters, before)
    activities = _decorate(page.activities)
    render_activities(activities, hide_device=True, highlight=highlight_terms(filters.q))
    if _wants_more(request, before):
        return timeline_more(
            request, blocks=[Block("single", [a]) for a in activities], filters=filters,
            older_url=_older_url(filters, page))
    weeks = heat_weeks(kind="d", owner_id=device.pk, summary=(
        device.activity_count, device.last_event_at.isoformat() if device.last_event_at else ""))
    return render(request, "streams/device_detail.html", {
        "workspace": device.workspace, "device": device, "page": page, "filters": filters,
        "activities": activities, "blocks": [Block("single", [a]) for a in activities],
        "state_items": _state_items(device.state), "status": _device_status(device),
        "pending": inbound_pending(workspace=device.workspace, scope=f"device:{device.pk}").get(
            f"device:{device.pk}", NO_PENDING),
        "heat": heat_svg(weeks, link="?"), "highlight": highlight_terms(filters.q),
        "older_url": _older_url(filters, page),
        "newest_url": _query(filters.params()) or "?",
        "paged": before is not None,
    })


# --- sources -----------------------------------------------------------------------------------


def _lag_words(seconds: int | None) -> str:
    """A lag as people say it: "40 seconds", "5 hours", "3 days"."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{max(seconds, 0)} second{'' if seconds == 1 else 's'}"
    now = timezone.now()
    return timesince(now - dt.timedelta(seconds=seconds), now, depth=1)


@login_required
@require_safe
def source_list(request: HttpRequest) -> HttpResponse:
    workspace, _ = _workspace(request)
    sources, summary = [], None
    if workspace is not None:
        rows, summary = sources_overview(workspace=workspace)
        for row in rows:
            s = row["source"]
            sources.append({
                **row,
                "lag": _lag_words(row["health"]["lag_seconds"]),
                "file_import": source_is_file_import(source=s),
                "runs": list(s.runs.order_by("-started_at", "-pk")[:5]),
                "failures": list(s.failures.filter(resolved_at=None).order_by("-last_seen_at")[:20]),
                # Summed over runs: counting a source's activities would scan an index of
                # possibly millions of rows on every visit of this page.
                "counts": s.runs.aggregate(new=Sum("new"), failed=Sum("failed"), runs=Count("pk")),
            })
    return render(request, "streams/source_list.html", {"workspace": workspace, "sources": sources,
                                                        "summary": summary})


def _member_source(request: HttpRequest, source_id: int) -> Source:
    return get_object_or_404(Source.objects.select_related("workspace"), pk=source_id,
                             workspace__memberships__user=request.user)


def _source_anchor(source_id: int) -> str:
    return reverse("source-list") + f"#source-{source_id}"


def _posted_pairs(request: HttpRequest, prefix: str, names) -> dict[str, str]:
    return {n: request.POST.get(f"{prefix}{n}", "").strip() for n in names if f"{prefix}{n}" in request.POST}


def _posted_interval(request: HttpRequest) -> int | None:
    text = request.POST.get("interval_seconds", "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ServiceError(f"the interval is a number of seconds, not {text[:40]!r}") from None


def _connector_info(cls) -> dict | None:
    # Plain values: a template would call the class (it calls whatever is callable).
    if cls is None:
        return None
    return {"key": cls.key, "label": cls.label or cls.key, "pollable": cls.pollable, "importable": cls.importable}


@login_required
def source_add(request: HttpRequest) -> HttpResponse:
    """Add a source: choose a connector, then fill in its config and secrets."""
    workspace, _ = _workspace(request)
    if workspace is None:
        raise Http404("no workspace")
    key = request.POST.get("connector") or request.GET.get("connector", "")
    cls = registry.connectors.get(key)
    error = ""
    if request.method == "POST" and cls is not None:
        fields, secrets = connector_fields(cls=cls)
        config = {k: v for k, v in _posted_pairs(request, "config:", [f["name"] for f in fields]).items() if v}
        given = {k: v for k, v in _posted_pairs(request, "secret:", [x["name"] for x in secrets]).items() if v}
        try:
            source = source_create(workspace=workspace, connector=key, name=request.POST.get("name", "").strip(),
                                   config=config, secrets=given, interval_seconds=_posted_interval(request))
        except (ConfigError, ServiceError) as exc:
            error = str(exc)
        else:
            messages.success(request, f"Added “{source.name}”.")
            return redirect(_source_anchor(source.pk))
        fields, secrets = connector_fields(cls=cls, config=config)
    elif request.method not in ("GET", "HEAD", "POST"):
        return HttpResponse(status=405)
    elif cls is not None:
        fields, secrets = connector_fields(cls=cls)
    else:
        fields, secrets = [], []
    return render(request, "streams/source_form.html", {
        "workspace": workspace, "source": None, "connector": _connector_info(cls), "error": error, "fields": fields,
        "secrets": secrets, "name": request.POST.get("name", ""),
        "interval": request.POST.get("interval_seconds", ""),
        "connectors": [_connector_info(registry.connectors[k]) for k in registry.keys()],
    })


@login_required
def source_edit_view(request: HttpRequest, source_id: int) -> HttpResponse:
    """Edit a source's name, interval, config and secrets. Secrets are write-only: the form
    never shows them, and an empty field keeps the stored one."""
    source = _member_source(request, source_id)
    error = ""
    fields, secrets = source_config_fields(source=source)
    if request.method == "POST":
        config = _posted_pairs(request, "config:", [f["name"] for f in fields])
        given = {k: v for k, v in _posted_pairs(request, "secret:", [x["name"] for x in secrets]).items() if v}
        try:
            source_edit(source=source, config=config, secrets=given, name=request.POST.get("name"),
                        interval_seconds=_posted_interval(request))
        except ServiceError as exc:
            error = str(exc)
            for f in fields:  # show what was typed, so it can be corrected
                f["value"] = config.get(f["name"], f["value"])
        else:
            messages.success(request, f"Saved “{source.name}”.")
            return redirect(_source_anchor(source.pk))
    elif request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    return render(request, "streams/source_form.html", {
        "workspace": source.workspace, "source": source, "connector": _connector_info(registry.connectors.get(source.connector)),
        "error": error, "fields": fields, "secrets": secrets,
        "name": request.POST.get("name", source.name), "interval": request.POST.get("interval_seconds", source.interval_seconds),
    })


@login_required
@require_POST
def source_enabled_view(request: HttpRequest, source_id: int) -> HttpResponse:
    """Disable (``enabled=0``) or enable (``enabled=1``) a source."""
    source = _member_source(request, source_id)
    if request.POST.get("enabled") == "1":
        source_enable(source=source)
        messages.success(request, f"“{source.name}” is enabled.")
    else:
        source_disable(source=source)
        messages.success(request, f"“{source.name}” is disabled: it is not synced until enabled again.")
    return redirect(_source_anchor(source.pk))


@login_required
def source_remove_view(request: HttpRequest, source_id: int) -> HttpResponse:
    """Ask, then remove: the source's activities stay on their timelines."""
    source = _member_source(request, source_id)
    if request.method == "POST":
        try:
            kept = source_remove(source=source)
        except ServiceError as exc:
            messages.error(request, str(exc))
            return redirect(_source_anchor(source.pk))
        messages.success(request, f"Removed “{source.name}”; its {kept:,} activities stay on their timelines.")
        return redirect("source-list")
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    return render(request, "streams/source_remove.html", {
        "workspace": source.workspace, "source": source, "activities": source.activities.count(),
        "runs": source.runs.count(), "failures": source.failures.filter(resolved_at=None).count(),
    })


@login_required
@require_POST
def source_failures_dismiss_view(request: HttpRequest, source_id: int) -> HttpResponse:
    source = _member_source(request, source_id)
    n = source_failures_dismiss(source=source)
    messages.success(request, f"Dismissed {n} import failure{'' if n == 1 else 's'} of “{source.name}”.")
    return redirect(_source_anchor(source.pk))


@login_required
@require_POST
def source_sync_now(request: HttpRequest, source_id: int) -> HttpResponse:
    """Queue a sync of the source now (a Celery task; run in-process when there is no broker)."""
    from .tasks import sync_source

    source = get_object_or_404(Source, pk=source_id, workspace__memberships__user=request.user)
    if not source.enabled:
        messages.error(request, f"“{source.name}” is disabled.")
        return redirect(reverse("source-list") + f"#source-{source.pk}")
    if source_is_file_import(source=source):
        # A file is read by mesh_import, on the machine that has it; a sync here would read
        # nothing new and record a success for nothing.
        messages.error(request, f"“{source.name}” is a file import: read it again with "
                                f"`mesh_import {source.connector} FILE --source {source.pk}`.")
        return redirect(reverse("source-list") + f"#source-{source.pk}")
    try:
        result = sync_source.delay(source.pk, trigger="web")
    except Exception as exc:  # eager mode runs the sync here; a failure is recorded on the source
        messages.error(request, f"Sync of “{source.name}” failed: {type(exc).__name__}: {str(exc)[:200]}")
    else:
        outcome = getattr(result, "result", None) if getattr(result, "ready", lambda: False)() else None
        if isinstance(outcome, dict) and "run" in outcome:
            messages.success(request, f"Synced “{source.name}”: {outcome['new']} new, {outcome['duplicate']} "
                                      f"duplicate, {outcome['failed']} failed.")
        elif isinstance(outcome, dict) and outcome.get("error"):
            messages.error(request, f"Sync of “{source.name}” failed: {outcome['error']}")
        elif isinstance(outcome, dict) and outcome.get("skipped"):
            messages.info(request, f"“{source.name}”: {outcome['skipped']}.")
        else:
            messages.success(request, f"Sync of “{source.name}” queued.")
    return redirect(reverse("source-list") + f"#source-{source.pk}")


# --- lifestream --------------------------------------------------------------------------------

LIFESTREAM_PAGE = 100
AGGREGATE_MIN = 3  # a run of this many similar items becomes one line
RUN_NOUNS = {
    "location": "location updates", "battery": "battery reports", "presence": "presence updates",
    "network": "network changes", "step_count": "step counts", "steps": "step counts",
    "call.incoming": "incoming calls", "call.outgoing": "outgoing calls", "call.missed": "missed calls",
    "post": "posts", "ping": "pings",
}


@dataclass
class LifeEntry:
    items: list[Activity]
    noun: str = ""
    source_name: str = ""

    @property
    def first(self) -> Activity:
        return self.items[0]

    @property
    def oldest(self) -> Activity:
        return self.items[-1]

    @property
    def aggregated(self) -> bool:
        return len(self.items) > 1

    @property
    def day(self) -> dt.date:
        return _utc_day(self.first)


def _similar_key(a: Activity) -> tuple | None:
    """Items with the same key in a row are aggregated; None: always shown on its own."""
    if a.channel == "device":
        return ("device", a.device_id, a.event_type)
    if a.channel == "twitter" and a.verb == "post":
        return None  # posts are what people come to read
    return None


def _utc_day(a: Activity) -> dt.date:
    return a.occurred_at.astimezone(dt.UTC).date()


def lifestream_entries(activities: list[Activity]) -> list[LifeEntry]:
    entries: list[LifeEntry] = []
    run: list[Activity] = []

    def flush():
        if len(run) >= AGGREGATE_MIN:
            a = run[0]
            noun = RUN_NOUNS.get(a.event_type) or f"{str(a.event_type).replace('_', ' ')} events"
            entries.append(LifeEntry(list(run), noun=noun, source_name=a.device.name if a.device else ""))
        else:
            entries.extend(LifeEntry([x]) for x in run)
        run.clear()

    for a in activities:
        key = _similar_key(a)
        if run and (key is None or key != _similar_key(run[0]) or _utc_day(a) != _utc_day(run[0])):
            flush()
        if key is None:
            entries.append(LifeEntry([a]))
        else:
            run.append(a)
    flush()
    return entries


@require_safe
def lifestream(request: HttpRequest, workspace: str) -> HttpResponse:
    """A workspace's public page: only items marked public, newest first, grouped by day, runs
    of similar items aggregated. No login; never a private item."""
    ws = get_object_or_404(Workspace, slug=workspace)
    try:
        before = _cursor(request)
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    qs = Activity.objects.filter(workspace=ws, visibility="public", erased_at=None)
    if before is not None:
        qs = qs.filter(TupleLessThan(Tuple(F("occurred_at"), F("pk")), (before.occurred_at, before.activity_id)))
    rows = list(qs.order_by("-occurred_at", "-id").values_list("occurred_at", "id")[: LIFESTREAM_PAGE + 1])
    more = len(rows) > LIFESTREAM_PAGE
    rows = rows[:LIFESTREAM_PAGE]
    by_id = activities_by_ids(ids=[pk for _, pk in rows])
    # Only the public rows fetched above are shown; the visibility check is repeated here so
    # that a row made private between the two queries is not shown either.
    activities = _decorate([by_id[pk] for _, pk in rows if pk in by_id and by_id[pk].visibility == "public"])
    feeds = {fmt: reverse("lifestream-feed", kwargs={"workspace": ws.slug, "fmt": fmt}) for fmt in ("rss", "atom", "json")}
    return render(request, "streams/lifestream.html", {
        "ws": ws, "entries": lifestream_entries(activities), "feeds": feeds,
        "older_url": _query({"before": Cursor(*rows[-1]).encode()}) if more and rows else "",
        "paged": before is not None,
    })

