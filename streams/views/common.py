"""What several pages share: the workspace a page shows, paging links, and a timeline page
read with the filters the page was asked for."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .. import selectors
from ..conf import conf
from ..forms import TimelineFilterForm, TimelineFilters
from ..models import Contact, Device, Workspace
from ..selectors import Cursor, Page

# mesh.js asks for an "older" page with this header and appends what it gets below what is
# shown; without script the same link loads the whole page.
MORE_HEADER = "X-Mesh-More"


def member_workspace(request: HttpRequest) -> Workspace | None:
    """The workspace the page shows: the one asked for (``?ws=``, then remembered in the
    session) among the user's, else their first one; None when they have none."""
    workspaces = list(selectors.workspaces_for_user(user=request.user))
    request.mesh_workspaces = workspaces  # the navigation's list too (context_processors.workspaces)
    wanted = request.GET.get("ws") or request.session.get("mesh_workspace")
    for ws in workspaces:
        if ws.slug == wanted:
            request.session["mesh_workspace"] = ws.slug
            return ws
    return workspaces[0] if workspaces else None


def query_string(params: dict) -> str:
    """``?a=1&b=2`` for the non-empty params, "" when there are none."""
    kept = {k: v for k, v in params.items() if v}
    return f"?{urlencode(kept)}" if kept else ""


def page_cursor(request: HttpRequest) -> Cursor | None:
    """The ``before`` of an "older" link; raises BadCursor."""
    return Cursor.decode(request.GET.get("before"))


def timeline_request(request: HttpRequest) -> tuple[TimelineFilters, Cursor | None]:
    """What a timeline or search page was asked for: its filters and the cursor of an "older"
    link (raises BadCursor for one we did not make)."""
    return TimelineFilterForm.from_query(request.GET), page_cursor(request)


def timeline(kind: str, owner_id: int, filters: TimelineFilters, before: Cursor | None) -> Page:
    """One page of a contact's (``kind`` "c") or device's ("d") timeline, searched when the
    filters hold words."""
    if filters.q:
        return selectors.timeline_search_page(kind=kind, owner_id=owner_id, q=filters.q, before=before,
                                              limit=conf.PAGE_SIZE, **filters.selector_kwargs())
    if kind == "c":
        return selectors.timeline_for_contact(contact=Contact(pk=owner_id), before=before, limit=conf.PAGE_SIZE,
                                              **filters.selector_kwargs())
    return selectors.timeline_for_device(device=Device(pk=owner_id), before=before, limit=conf.PAGE_SIZE,
                                         **filters.selector_kwargs())


def older_url(filters: TimelineFilters, page: Page | None) -> str:
    """The "Older" link of a page: its filters and the cursor after its last item ("" at the end)."""
    if page is None or page.next_cursor is None:
        return ""
    return query_string({**filters.params(), "before": page.next_cursor.encode()})


def pager(filters: TimelineFilters, page: Page | None, before: Cursor | None) -> dict:
    """The context of a timeline's pager: the "Older" and "Newest" links."""
    return {"older_url": older_url(filters, page), "newest_url": query_string(filters.params()) or "?",
            "paged": before is not None}


def wants_more(request: HttpRequest, before: Cursor | None) -> bool:
    return before is not None and request.headers.get(MORE_HEADER) == "1"


def timeline_more(request: HttpRequest, *, blocks, filters: TimelineFilters, page: Page) -> HttpResponse:
    """Just the items and the next "older" link: no header, identities or heat strip to build
    (an older page is the timeline's own range scan plus rendering, whatever the depth)."""
    return render(request, "streams/_timeline_more.html", {
        "blocks": blocks, "filters": filters, "older_url": older_url(filters, page), "paged": True,
    })
