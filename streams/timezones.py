"""The zone a page shows times in: the person's own (chosen on ``/settings/time-zone/``, or
sent once by their browser), else their workspace's, else ``TIME_ZONE``. Times are stored and
exported in UTC; only what a page shows changes. The public lifestream shows its workspace's.

A person's zone and their workspaces' are read once per session (one query, kept in it), so a
page costs no query for them; a change made on the settings page is read again at once.
"""

from __future__ import annotations

import functools
import zoneinfo

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from .models import UserPreference, Workspace

SESSION_KEY = "mesh_time_zone"


class BadTimeZone(ValueError):
    """Not a zone name of the IANA database (``Europe/Paris``)."""


@functools.cache
def zone_names() -> tuple[str, ...]:
    """Every IANA zone name, sorted (the settings page's choices)."""
    return tuple(sorted(zoneinfo.available_timezones()))


def check_zone(name: str) -> str:
    """``name`` if it is a zone Mesh can show times in, else BadTimeZone with a plain message."""
    name = (name or "").strip()
    if name not in zone_names():
        raise BadTimeZone(f"{name[:64]!r} is not a time zone name such as Europe/Paris or America/Los_Angeles")
    return name


def default_zone() -> str:
    return settings.TIME_ZONE or "UTC"


def workspace_zone(workspace: Workspace) -> str:
    return workspace.time_zone or default_zone()


def user_time_zone_set(*, user, zone: str, only_if_unset: bool = False) -> bool:
    """Store a person's zone (``only_if_unset``: the browser's guess never replaces a choice).
    Returns whether it changed."""
    zone = check_zone(zone)
    pref, _ = UserPreference.objects.get_or_create(user=user)
    if pref.time_zone == zone or (only_if_unset and pref.time_zone):
        return False
    pref.time_zone = zone
    pref.save(update_fields=["time_zone"])
    return True


def workspace_time_zone_set(*, workspace: Workspace, zone: str) -> None:
    """A workspace's zone ("" goes back to TIME_ZONE)."""
    workspace.time_zone = check_zone(zone) if zone else ""
    workspace.save(update_fields=["time_zone"])


def forget_session_zones(request: HttpRequest) -> None:
    """After a change: the next page reads the zones again (and keeps them)."""
    request.session.pop(SESSION_KEY, None)


def _session_zones(request: HttpRequest) -> dict:
    """The person's own zone and their workspaces' zones, read in one query the first time in
    a session and kept in it: later pages cost no query for their zone."""
    zones = request.session.get(SESSION_KEY)
    if not isinstance(zones, dict):
        # The membership join brings the person's own zone along (None: no preference row).
        rows = list(Workspace.objects.filter(memberships__user=request.user).order_by("slug")
                    .values_list("slug", "time_zone", "memberships__user__mesh_preference__time_zone"))
        if rows:
            own = rows[0][2] or ""
        else:  # in no workspace: their own zone still counts
            own = UserPreference.objects.filter(user=request.user).values_list("time_zone", flat=True).first() or ""
        zones = {"own": own, "workspaces": [[slug, zone] for slug, zone, _ in rows]}
        request.session[SESSION_KEY] = zones
    return zones


def _zone_for(request: HttpRequest) -> tuple[str, bool]:
    """(zone, whether the person has none of their own yet)."""
    zones = _session_zones(request)
    if zones["own"]:
        return zones["own"], False
    # The workspace the person looks at, as streams.views.common.member_workspace picks it.
    workspaces = zones["workspaces"]
    wanted = request.GET.get("ws") or request.session.get("mesh_workspace")
    zone = next((z for slug, z in workspaces if slug == wanted), workspaces[0][1] if workspaces else "")
    return zone or default_zone(), True


class TimeZoneMiddleware:
    """Activates the signed-in person's zone for the request (after the session and
    authentication middleware). ``request.mesh_zone_unset`` tells the page to ask the browser."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        request.mesh_zone_unset = False
        # Feeds, webhooks and the device API carry no session cookie: reading request.user
        # would load the (empty) session and mark the response Vary: Cookie, for nothing.
        if settings.SESSION_COOKIE_NAME not in request.COOKIES:
            return self.get_response(request)
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        zone, request.mesh_zone_unset = _zone_for(request)
        try:
            timezone.activate(zoneinfo.ZoneInfo(zone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.deactivate()  # a zone removed from the system's database since it was chosen
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


def time_zone(request: HttpRequest) -> dict:
    """Context processor: the zone the page's times are in, named on every page."""
    now = timezone.localtime()
    return {"time_zone": {
        "name": timezone.get_current_timezone_name(), "abbr": now.tzname() or "",
        "unset": getattr(request, "mesh_zone_unset", False),
    }}
