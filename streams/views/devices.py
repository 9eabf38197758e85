"""The device pages: every device with its presence, battery and place, and one device's
timeline of events."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST, require_safe
from django.views.decorators.vary import vary_on_headers

from .. import selectors
from ..heatmap import heat_svg, heat_weeks
from ..models import Device
from ..places import device_places_panel, device_places_public_set
from ..presenters import (
    decorate_activities,
    device_state_items,
    device_status,
    render_activities,
    timeline_blocks,
)
from ..selectors import NO_PENDING, BadCursor
from .common import (
    MORE_HEADER,
    member_workspace,
    pager,
    timeline,
    timeline_more,
    timeline_request,
    wants_more,
)


@login_required
def device_list(request: HttpRequest) -> HttpResponse:
    workspace = member_workspace(request)
    devices: list[Device] = []
    if workspace is not None:
        devices = list(Device.objects.filter(workspace=workspace).order_by("name", "pk"))
        pending = selectors.inbound_pending(workspace=workspace)
        for d in devices:
            d.pending = pending.get(f"device:{d.pk}", NO_PENDING)
            d.state_items = device_state_items(d.state)
            d.status = device_status(d)
    return render(request, "streams/device_list.html", {"workspace": workspace, "devices": devices})


@login_required
@require_safe
@vary_on_headers(MORE_HEADER)
def device_detail(request: HttpRequest, device_id: int) -> HttpResponse:
    device = get_object_or_404(
        Device.objects.select_related("workspace"), pk=device_id, workspace__memberships__user=request.user
    )
    try:
        filters, before = timeline_request(request)
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    highlight = selectors.highlight_terms(filters.q)
    page = timeline("d", device.pk, filters, before)
    activities = decorate_activities(page.activities, region=device.workspace.region)
    render_activities(activities, hide_device=True, highlight=highlight)
    # A device's events are not threads or conversations (its texts are with many people);
    # runs of one kind of event fold.
    blocks = timeline_blocks(activities, conversations=False)
    if wants_more(request, before):
        return timeline_more(request, blocks=blocks, filters=filters, page=page)
    weeks = heat_weeks(kind="d", owner_id=device.pk, summary=(
        device.activity_count, device.last_event_at.isoformat() if device.last_event_at else ""))
    scope = f"device:{device.pk}"
    return render(request, "streams/device_detail.html", {
        "workspace": device.workspace, "device": device, "page": page, "filters": filters,
        "activities": activities, "blocks": blocks,
        "state_items": device_state_items(device.state), "status": device_status(device),
        "pending": selectors.inbound_pending(workspace=device.workspace, scope=scope).get(scope, NO_PENDING),
        "heat": heat_svg(weeks, link="?"), "highlight": highlight,
        "places": device_places_panel(device=device),
        **pager(filters, page, before),
    })


@login_required
@require_POST
def device_places_public_view(request: HttpRequest, device_id: int) -> HttpResponse:
    """Whether the device's places may reach the public lifestream (coarsened)."""
    device = get_object_or_404(Device, pk=device_id, workspace__memberships__user=request.user)
    device_places_public_set(device=device, public=request.POST.get("public") == "1")
    return redirect("device-detail", device.pk)
