"""The contact pages: the list, a contact's timeline (with its live poll and an email's body),
and what a person does to a contact: rename, merge, split off, reply by SMS."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_POST, require_safe
from django.views.decorators.vary import vary_on_headers

from .. import selectors
from ..conf import conf
from ..contact_list import render_contact_rows
from ..contact_page import (
    contact_identities,
    member_contact,
    merged_children,
    sending_source_exists,
)
from ..contacts import contact_merge_preview, contact_rename, contact_unmerge_preview
from ..forms import CHANNELS, DIRECTIONS
from ..heatmap import heat_svg, heat_weeks
from ..linking import merge_suggestion_accept
from ..message_frame import message_csp, message_document
from ..messaging import MessageSendError, message_send, sending_connectors
from ..models import Activity, Contact, Workspace
from ..page_cache import TimelineItems
from ..presenters import decorate_activities, render_activities, timeline_blocks
from ..ranking import strengths_current
from ..selectors import BadCursor, ContactCursor, Cursor
from ..selectors.contacts import ContactRow, contact_rows
from ..selectors.linking import merge_suggestion_get
from ..selectors.ranking import StrengthCursor, contacts_by_strength
from ..services import ServiceError, contact_merge, contact_unmerge
from .common import (
    MORE_HEADER,
    member_workspace,
    pager,
    query_string,
    timeline,
    timeline_more,
    timeline_request,
    wants_more,
)
from .ranking import contact_rank_context

LIVE_MAX = 50  # more new items than this in one poll: the page says "reload" instead
EPOCH_CURSOR = Cursor(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), 0)


def _member_contact(request: HttpRequest, contact_id: int) -> Contact:
    # Membership checked on every request; one raw statement (the ORM's join took ~2 ms to build).
    return member_contact(contact_id, request.user.pk)


# --- contact list ------------------------------------------------------------------------------

@login_required
def contact_list(request: HttpRequest) -> HttpResponse:
    workspace = member_workspace(request)
    q = request.GET.get("q", "").strip()
    channel = request.GET.get("channel", "")
    if channel not in CHANNELS:
        channel = ""
    sort = "strength" if request.GET.get("sort") == "strength" else ""
    cursor_type = StrengthCursor if sort else ContactCursor
    try:
        before = cursor_type.decode(request.GET.get("before"))
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    contacts: list[ContactRow] = []
    next_url = ""
    if workspace is not None:
        size = conf.PAGE_SIZE
        if sort:
            strengths_current(workspace=workspace)
            listed = contacts_by_strength(workspace=workspace, search=q, channel=channel, before=before)
        else:
            listed = selectors.contacts_list(workspace=workspace, search=q, channel=channel, before=before)
        rows = contact_rows(listed, limit=size + 1, by_strength=bool(sort))
        contacts = rows[:size]
        if len(rows) > size:
            next_url = query_string({"q": q, "channel": channel, "sort": sort,
                                     "before": cursor_type.after(contacts[-1]).encode()})
        render_contact_rows(contacts, region=workspace.region, by_strength=bool(sort))
    return render(request, "streams/contact_list.html", {
        "workspace": workspace, "contacts": contacts, "q": q, "channel": channel, "channels": CHANNELS,
        "next_url": next_url, "sort": sort,
        "first_url": reverse("contact-list") + query_string({"q": q, "channel": channel, "sort": sort}),
        "paged": before is not None,
    })


# --- a contact's timeline ------------------------------------------------------------------------


def _head_cursor(activities: list[Activity]) -> str:
    if not activities:
        return EPOCH_CURSOR.encode()
    newest = max(activities, key=lambda a: (a.occurred_at, a.pk))
    return Cursor(newest.occurred_at, newest.pk).encode()


def _sms_state(workspace: Workspace, identities) -> dict:
    phones = [i for i in identities if i.kind == "phone" and i.value.startswith("+") and not i.is_self]
    if not phones:
        return {"possible": False}
    has_source = sending_source_exists(workspace.pk, sending_connectors())
    return {"possible": True, "to": phones[0].value, "source": has_source}


@login_required
@require_safe
@vary_on_headers(MORE_HEADER)
def contact_detail(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = _member_contact(request, contact_id)
    try:
        filters, before = timeline_request(request)
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    highlight = selectors.highlight_terms(filters.q)
    # A contact merged into another has no timeline of its own: the page points to the survivor.
    survivor = contact.root() if contact.merged_into_id else None
    page = None if survivor else timeline("c", contact.pk, filters, before)
    activities = decorate_activities(page.activities, region=contact.workspace.region) if page else []
    more = page is not None and wants_more(request, before)
    blocks = timeline_blocks(activities)
    items = TimelineItems(blocks, filters=filters, paged=before is not None)
    # The whole timeline from the cache needs no activity's own fragment ("older" does).
    render_activities(activities, contact=contact, highlight=highlight, ready=None if more else items.ready)
    if more:
        return timeline_more(request, blocks=blocks, filters=filters, page=page)
    identities = contact_identities(contact)
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
        "merged_children": merged_children(contact),
        "survivor": survivor, "heat": heat, "filters": filters,
        "page": page, "activities": activities, "blocks": blocks,
        "timeline_items": items.render() if page else None,
        "highlight": highlight,
        **pager(filters, page, before),
        # Live updates only where new items would appear: the unfiltered first page.
        "live_url": reverse("contact-since", args=[contact.pk]) if page and before is None and not filters.active else "",
        "live_after": _head_cursor(activities),
        "live_poll_ms": conf.LIVE_POLL_MS,
        "sms": _sms_state(contact.workspace, identities) if not survivor else {"possible": False},
        **(contact_rank_context(contact) if not survivor else {}),
    })


@login_required
@require_safe
def contact_since(request: HttpRequest, contact_id: int) -> HttpResponse:
    """New items at the top of a contact's timeline since ``after`` (the newest item the page
    shows), as rendered HTML for mesh.js to insert. One range scan on the timeline index."""
    contact = _member_contact(request, contact_id)
    try:
        after = Cursor.decode(request.GET.get("after")) or EPOCH_CURSOR
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    if contact.merged_into_id:
        return JsonResponse({"count": 0, "after": after.encode(), "html": "", "reload": True})
    new = selectors.timeline_since(kind="c", owner_id=contact.pk, after=after, limit=LIVE_MAX + 1)
    if len(new) > LIVE_MAX:
        return JsonResponse({"count": len(new), "after": after.encode(), "html": "", "reload": True})
    by_id = selectors.activities_by_ids(ids=[c.activity_id for c in new])
    activities = decorate_activities([by_id[c.activity_id] for c in reversed(new) if c.activity_id in by_id],
                                     region=contact.workspace.region)
    render_activities(activities, contact=contact, live=True)
    html = "".join(a.fragment for a in activities)
    new_after = (new[-1] if new else after).encode()
    response = JsonResponse({"count": len(activities), "after": new_after, "html": html, "reload": False})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_safe
@xframe_options_sameorigin
def activity_body(request: HttpRequest, activity_id: int) -> HttpResponse:
    """An email's HTML as its own document, for a sandboxed iframe on the contact page. Remote
    images only with ``?images=1`` (the user asked)."""
    activity = get_object_or_404(
        Activity.objects.filter(selectors.visible_q(), workspace__memberships__user=request.user),
        pk=activity_id,
    )
    remote = request.GET.get("images") == "1"
    doc = message_document(subject=activity.subject, html=activity.html, text=activity.text,
                           connector=activity.connector, raw=activity.raw if remote else None, remote_images=remote)
    response = HttpResponse(doc, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = message_csp(remote_images=remote)
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, max-age=300"
    response["X-Content-Type-Options"] = "nosniff"
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
    """Pick another contact, see what would move, choose which of the two stays (``into``),
    then merge. Coming from a suggestion (``suggestion``), the merge accepts it."""
    contact = _member_contact(request, contact_id)
    workspace = contact.workspace
    data = request.POST if request.method == "POST" else request.GET
    other_id = data.get("other")
    other = None
    if other_id:
        try:
            other = Contact.objects.get(pk=int(other_id), workspace=workspace)
        except (ValueError, Contact.DoesNotExist):
            raise Http404("no such contact") from None
    suggestion = merge_suggestion_get(workspace=workspace, pk=data.get("suggestion")) if data.get("suggestion") else None
    # The survivor: this contact unless the other one was chosen.
    target, merged = (other, contact) if other is not None and data.get("into") == str(other.pk) else (contact, other)
    if request.method == "POST":
        if other is None:
            return HttpResponseBadRequest("choose a contact to merge")
        try:
            if suggestion is not None and {suggestion.contact_a_id, suggestion.contact_b_id} == {contact.pk, other.pk}:
                merge_suggestion_accept(workspace=workspace, suggestion=suggestion, into=target)
            else:
                contact_merge(workspace=workspace, target=target, other=merged)
        except ServiceError as exc:
            messages.error(request, f"Not merged: {exc}.")
            return redirect("contact-detail", contact.pk)
        messages.success(request, f"Merged “{merged}” into “{target}”; its page lists the merge, to undo it.")
        return redirect("contact-detail", target.pk)
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    preview = error = None
    if other is not None:
        try:
            preview = contact_merge_preview(workspace=workspace, target=target, other=merged)
        except ServiceError as exc:
            error = str(exc)
    q = request.GET.get("q", "").strip()[:200]
    candidates = []
    if q and preview is None:
        candidates = [c for c in selectors.contacts_list(workspace=workspace, search=q)[:20] if c.pk != contact.pk]
    return render(request, "streams/contact_merge.html", {
        "workspace": workspace, "contact": contact, "other": other, "preview": preview, "error": error,
        "q": q, "candidates": candidates, "suggestion": suggestion,
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
