"""A workspace's public page, ``/@<workspace>/``: its public items, newest first, grouped by
day, runs of similar items aggregated. No login; never a private item, and under the feeds'
rule (docs/feeds.md) no one named: text only where the owner wrote it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from .. import selectors
from ..models import Workspace
from ..presenters import decorate_lifestream_activities, lifestream_entries
from ..selectors import BadCursor
from ..timezones import workspace_zone
from .common import page_cursor, query_string

LIFESTREAM_PAGE = 100


@require_safe
def lifestream(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = get_object_or_404(Workspace, slug=workspace)
    try:
        before = page_cursor(request)
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    page = selectors.lifestream_page(workspace=ws, before=before, limit=LIFESTREAM_PAGE)
    activities = decorate_lifestream_activities(page.activities)
    feeds = {fmt: reverse("lifestream-feed", kwargs={"workspace": ws.slug, "fmt": fmt}) for fmt in ("rss", "atom", "json")}
    # The public page is the workspace's: its days and times are in the workspace's zone,
    # whoever reads it.
    with timezone.override(workspace_zone(ws)):
        return render(request, "streams/lifestream.html", {
            "ws": ws, "entries": lifestream_entries(activities), "feeds": feeds,
            "older_url": query_string({"before": page.next_cursor.encode()}) if page.next_cursor else "",
            "paged": before is not None,
        })
