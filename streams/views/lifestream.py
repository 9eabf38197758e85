"""A workspace's public page, ``/@<workspace>/``: its public items, newest first, grouped by
day, runs of similar items aggregated. No login; never a private item, and under the feeds'
rule (docs/feeds.md) no one named: text only where the owner wrote it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from .. import selectors
from ..models import Workspace
from ..presenters import lifestream_decorate, lifestream_entries
from ..selectors import BadCursor, Cursor
from .common import page_cursor, query_string

LIFESTREAM_PAGE = 100


@require_safe
def lifestream(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = get_object_or_404(Workspace, slug=workspace)
    try:
        before = page_cursor(request)
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    qs = selectors.lifestream_activities(workspace=ws)
    if before is not None:
        qs = qs.filter(selectors.keyset_before("occurred_at", "pk", before))
    rows = list(qs.order_by("-occurred_at", "-id").values_list("occurred_at", "id")[: LIFESTREAM_PAGE + 1])
    more = len(rows) > LIFESTREAM_PAGE
    rows = rows[:LIFESTREAM_PAGE]
    by_id = selectors.activities_by_ids(ids=[pk for _, pk in rows])
    # Only the public rows fetched above are shown; the visibility check is repeated here so
    # that a row made private between the two queries is not shown either.
    activities = lifestream_decorate([by_id[pk] for _, pk in rows if pk in by_id and by_id[pk].visibility == "public"])
    feeds = {fmt: reverse("lifestream-feed", kwargs={"workspace": ws.slug, "fmt": fmt}) for fmt in ("rss", "atom", "json")}
    return render(request, "streams/lifestream.html", {
        "ws": ws, "entries": lifestream_entries(activities), "feeds": feeds,
        "older_url": query_string({"before": Cursor(*rows[-1]).encode()}) if more and rows else "",
        "paged": before is not None,
    })
