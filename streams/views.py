"""Server-rendered pages. Every page is scoped to the workspaces the user belongs to: anything
else is a 404, never a 403 (no hint that it exists)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render

from .models import Contact, Device, Source
from .selectors import BadCursor, Cursor, contact_identities, contacts_list, timeline_for_contact, timeline_for_device, workspaces_for_user
from .services import source_health


def _workspace(request: HttpRequest):
    workspaces = list(workspaces_for_user(user=request.user))
    wanted = request.GET.get("ws") or request.session.get("mesh_workspace")
    for ws in workspaces:
        if ws.slug == wanted:
            request.session["mesh_workspace"] = ws.slug
            return ws, workspaces
    return (workspaces[0] if workspaces else None), workspaces


@login_required
def contact_list(request: HttpRequest) -> HttpResponse:
    workspace, _ = _workspace(request)
    contacts = []
    if workspace is not None:
        contacts = contacts_list(workspace=workspace, search=request.GET.get("q", "").strip())[:200]
    return render(request, "streams/contact_list.html", {"workspace": workspace, "contacts": contacts,
                                                         "q": request.GET.get("q", "")})


@login_required
def contact_detail(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_object_or_404(
        Contact.objects.select_related("workspace", "merged_into"),
        pk=contact_id, workspace__memberships__user=request.user,
    )
    try:
        before = Cursor.decode(request.GET.get("before"))
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    page = None if contact.merged_into_id else timeline_for_contact(contact=contact, before=before)
    return render(request, "streams/contact_detail.html", {
        "workspace": contact.workspace, "contact": contact, "identities": contact_identities(contact=contact),
        "page": page, "next": page.next_cursor.encode() if page and page.next_cursor else "",
    })


@login_required
def device_detail(request: HttpRequest, device_id: int) -> HttpResponse:
    device = get_object_or_404(
        Device.objects.select_related("workspace"), pk=device_id, workspace__memberships__user=request.user
    )
    try:
        before = Cursor.decode(request.GET.get("before"))
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    page = timeline_for_device(device=device, before=before)
    return render(request, "streams/device_detail.html", {
        "workspace": device.workspace, "device": device, "page": page,
        "next": page.next_cursor.encode() if page.next_cursor else "",
    })


@login_required
def source_list(request: HttpRequest) -> HttpResponse:
    workspace, _ = _workspace(request)
    sources = []
    if workspace is not None:
        for s in Source.objects.filter(workspace=workspace).order_by("name"):
            sources.append({"source": s, "health": source_health(source=s),
                            "failures": list(s.failures.filter(resolved_at=None).order_by("-last_seen_at")[:20])})
    return render(request, "streams/source_list.html", {"workspace": workspace, "sources": sources})
