"""Server-rendered pages. Every page is scoped to the workspaces the user belongs to: anything
else is a 404, never a 403 (no hint that it exists).

Views only read (through selectors) and prepare plain display values; templates auto-escape
everything that came from a source. Nothing here marks user content as safe.
"""

from __future__ import annotations

import datetime as dt
import re

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render

from .models import Activity, Contact, Device, Source
from .selectors import (
    BadCursor,
    Cursor,
    contact_identities,
    contacts_list,
    timeline_for_contact,
    timeline_for_device,
    workspaces_for_user,
)
from .services import source_health

PAGE_SIZE = getattr(settings, "MESH_PAGE_SIZE", 50)


def _workspace(request: HttpRequest):
    workspaces = list(workspaces_for_user(user=request.user))
    wanted = request.GET.get("ws") or request.session.get("mesh_workspace")
    for ws in workspaces:
        if ws.slug == wanted:
            request.session["mesh_workspace"] = ws.slug
            return ws, workspaces
    return (workspaces[0] if workspaces else None), workspaces


# --- contact list ------------------------------------------------------------------------------

# A query made only of phone-number characters ("(415) 555-0100", "+1 415-555-0100") is
# searched without its formatting, so that it matches the stored E.164 value.
PHONE_QUERY_RE = re.compile(r"^\+?[\d\s().-]+$")


def _search_term(q: str) -> str:
    q = q.strip()[:200]
    if PHONE_QUERY_RE.match(q) and sum(ch.isdigit() for ch in q) >= 3:
        return re.sub(r"[\s().-]", "", q)
    return q


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


@login_required
def contact_list(request: HttpRequest) -> HttpResponse:
    workspace, _ = _workspace(request)
    q = request.GET.get("q", "").strip()
    before_text = request.GET.get("before", "")
    try:
        before = _contact_cursor_decode(before_text) if before_text else None
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    contacts: list[Contact] = []
    next_cursor = ""
    if workspace is not None:
        qs = contacts_list(workspace=workspace, search=_search_term(q))
        if before is not None:
            qs = _contacts_after(qs, before)
        rows = list(qs[: PAGE_SIZE + 1])
        contacts = rows[:PAGE_SIZE]
        if len(rows) > PAGE_SIZE:
            next_cursor = _contact_cursor_encode(contacts[-1])
        for c in contacts:
            c.identity_list = sorted(c.identities.all(), key=lambda i: (i.kind, i.value))
            c.channel_list = sorted((c.channel_counts or {}).items())
    return render(request, "streams/contact_list.html", {
        "workspace": workspace, "contacts": contacts, "q": q, "next": next_cursor,
        "paged": bool(before_text),
    })


# --- timelines ---------------------------------------------------------------------------------

# Extra fields that are shown elsewhere, or are bookkeeping, not something to read.
HIDDEN_EXTRA = {"type", "title", "text", "summary", "thread", "direction", "invalid_participants", "lat", "lon"}


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


def _plain(value) -> str:
    """A JSON value as short readable text (still escaped by the template)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    if value is None:
        return "—"
    return str(value)


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


def _decorate(activities: list[Activity]) -> list[Activity]:
    """Attach display values to each activity of a page (no queries: the selector attached
    each activity's participants as ``persons``)."""
    for a in activities:
        a.extra_items = _extra_items(a.extra) if a.channel == "device" else []
        a.event_type = (a.extra or {}).get("type", a.verb) if isinstance(a.extra, dict) else a.verb
        a.link = _http_url(a.url)
        a.body = a.text
        a.attachment_list = [
            {"name": _plain(att.get("name") or att.get("filename") or "attachment"),
             "type": _plain(att.get("mediaType") or att.get("content_type") or ""),
             "size": _size(att.get("size"))}
            for att in (a.attachments or []) if isinstance(att, dict)
        ]
        a.people = [
            {"role": p.role, "name": p.name, "label": p.label,
             "contact_id": None if p.is_self else p.contact_id, "is_self": p.is_self}
            for p in a.persons
        ]
    return activities


def _cursor(request: HttpRequest) -> Cursor | None:
    return Cursor.decode(request.GET.get("before"))


@login_required
def contact_detail(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_object_or_404(
        Contact.objects.select_related("workspace", "merged_into"),
        pk=contact_id, workspace__memberships__user=request.user,
    )
    try:
        before = _cursor(request)
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    page = None if contact.merged_into_id else timeline_for_contact(contact=contact, before=before, limit=PAGE_SIZE)
    survivor = contact.root() if contact.merged_into_id else None
    return render(request, "streams/contact_detail.html", {
        "workspace": contact.workspace, "contact": contact, "identities": contact_identities(contact=contact),
        "channel_counts": sorted((contact.channel_counts or {}).items()),
        "merged_children": list(contact.merged_children.order_by("pk")),
        "survivor": survivor,
        "page": page, "activities": _decorate(page.activities) if page else [],
        "next": page.next_cursor.encode() if page and page.next_cursor else "",
        "paged": before is not None,
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
        items.append({"key": key.replace("_", " "), "value": text[:300], "at": when})
    return items


@login_required
def device_list(request: HttpRequest) -> HttpResponse:
    workspace, _ = _workspace(request)
    devices: list[Device] = []
    if workspace is not None:
        devices = list(Device.objects.filter(workspace=workspace).order_by("name", "pk"))
        for d in devices:
            d.state_items = _state_items(d.state)
    return render(request, "streams/device_list.html", {"workspace": workspace, "devices": devices})


@login_required
def device_detail(request: HttpRequest, device_id: int) -> HttpResponse:
    device = get_object_or_404(
        Device.objects.select_related("workspace"), pk=device_id, workspace__memberships__user=request.user
    )
    try:
        before = _cursor(request)
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    page = timeline_for_device(device=device, before=before, limit=PAGE_SIZE)
    return render(request, "streams/device_detail.html", {
        "workspace": device.workspace, "device": device, "page": page,
        "activities": _decorate(page.activities), "state_items": _state_items(device.state),
        "next": page.next_cursor.encode() if page.next_cursor else "",
        "paged": before is not None,
    })


# --- sources -----------------------------------------------------------------------------------


@login_required
def source_list(request: HttpRequest) -> HttpResponse:
    workspace, _ = _workspace(request)
    sources = []
    if workspace is not None:
        for s in Source.objects.filter(workspace=workspace).order_by("name"):
            sources.append({
                "source": s,
                "health": source_health(source=s),
                "runs": list(s.runs.order_by("-started_at", "-pk")[:5]),
                "failures": list(s.failures.filter(resolved_at=None).order_by("-last_seen_at")[:20]),
            })
    return render(request, "streams/source_list.html", {"workspace": workspace, "sources": sources})
