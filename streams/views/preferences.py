"""A person's display settings: the time zone their pages show times in, and (for a
workspace's owners) the workspace's own, which members without one and the public lifestream
use. mesh.js posts the browser's zone here once, for people who have none yet."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from ..models import Membership, UserPreference
from ..timezones import (
    BadTimeZone,
    default_zone,
    forget_session_zones,
    user_time_zone_set,
    workspace_time_zone_set,
    workspace_zone,
    zone_names,
)
from .common import member_workspace


@login_required
def time_zone_settings(request: HttpRequest) -> HttpResponse:
    workspace = member_workspace(request)
    is_owner = workspace is not None and Membership.objects.filter(
        workspace=workspace, user=request.user, role=Membership.Role.OWNER).exists()
    if request.method == "POST":
        scope = request.POST.get("scope", "user")
        zone = request.POST.get("time_zone", "")
        try:
            if scope == "browser":
                # The browser's guess, sent once by mesh.js: it never replaces a choice.
                if user_time_zone_set(user=request.user, zone=zone, only_if_unset=True):
                    forget_session_zones(request)
                return HttpResponse(status=204)
            if scope == "workspace":
                if not is_owner:
                    return HttpResponse("Only the workspace's owners set its time zone.\n", status=403,
                                        content_type="text/plain; charset=utf-8")
                workspace_time_zone_set(workspace=workspace, zone=zone)
                forget_session_zones(request)
                messages.success(request, f"{workspace.name or workspace.slug} now shows times in {workspace_zone(workspace)}.")
            else:
                user_time_zone_set(user=request.user, zone=zone)
                forget_session_zones(request)
                messages.success(request, f"Your pages now show times in {zone}.")
        except BadTimeZone as exc:
            if scope == "browser":
                return HttpResponse(f"{exc}\n", status=400, content_type="text/plain; charset=utf-8")
            messages.error(request, f"Not changed: {exc}.")
        return redirect("time-zone")
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    own = UserPreference.objects.filter(user=request.user).values_list("time_zone", flat=True).first() or ""
    return render(request, "streams/time_zone.html", {
        "workspace": workspace, "is_owner": is_owner, "zones": zone_names(), "own_zone": own,
        "workspace_zone": workspace.time_zone if workspace else "", "default_zone": default_zone(),
    })
