"""Full-text search across the workspace's timelines."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_safe

from .. import selectors
from ..conf import conf
from ..forms import CHANNELS, DIRECTIONS
from ..presenters import decorate_activities, render_activities
from ..selectors import BadCursor
from .common import member_workspace, pager, timeline_request


@login_required
@require_safe
def search(request: HttpRequest) -> HttpResponse:
    workspace = member_workspace(request)
    try:
        filters, before = timeline_request(request)
    except BadCursor as exc:
        return HttpResponseBadRequest(str(exc))
    highlight = selectors.highlight_terms(filters.q)
    page = None
    if workspace is not None and filters.q:
        page = selectors.workspace_search_page(workspace=workspace, q=filters.q, before=before,
                                               limit=conf.PAGE_SIZE, **filters.selector_kwargs())
    activities = decorate_activities(page.activities, region=workspace.region) if page else []
    render_activities(activities, highlight=highlight)
    return render(request, "streams/search.html", {
        "workspace": workspace, "filters": filters, "activities": activities, "channels": CHANNELS,
        "directions": DIRECTIONS, "highlight": highlight,
        **pager(filters, page, before),
        "backlog": selectors.search_backlog() if page is not None else 0,
    })
