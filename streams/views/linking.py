"""The merge suggestions page: contacts that may be one person, each pair with the reasons.
Accepting leads to the merge preview (where the survivor is chosen); rejecting is remembered."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from ..linking import SUGGEST_AT, merge_suggestion_reject, merge_suggestions_refresh
from ..selectors.linking import merge_suggestion_get, merge_suggestions_open
from ..services import ServiceError
from .common import member_workspace, query_string

PAGE = 100


@login_required
@require_safe
def suggestion_list(request: HttpRequest) -> HttpResponse:
    workspace = member_workspace(request)
    suggestions = merge_suggestions_open(workspace=workspace, limit=PAGE) if workspace else []
    for s in suggestions:
        s.pair = (s.contact_a, s.contact_b)
        s.review_url = reverse("contact-merge", args=[s.contact_a_id]) + query_string(
            {"other": s.contact_b_id, "suggestion": s.pk})
    return render(request, "streams/suggestions.html", {
        "workspace": workspace, "suggestions": suggestions, "threshold": SUGGEST_AT, "page_size": PAGE,
    })


@login_required
@require_POST
def suggestions_refresh_view(request: HttpRequest) -> HttpResponse:
    workspace = member_workspace(request)
    if workspace is None:
        raise Http404("no workspace")
    done = merge_suggestions_refresh(workspace=workspace)
    plural = "" if done.suggested == 1 else "s"
    messages.success(request, f"{done.suggested} suggestion{plural} open ({done.new} new).")
    return redirect("suggestion-list")


@login_required
@require_POST
def suggestion_reject_view(request: HttpRequest, suggestion_id: int) -> HttpResponse:
    workspace = member_workspace(request)
    suggestion = merge_suggestion_get(workspace=workspace, pk=suggestion_id) if workspace else None
    if suggestion is None:
        raise Http404("no such suggestion")
    try:
        merge_suggestion_reject(workspace=workspace, suggestion=suggestion)
        messages.success(request, f"“{suggestion.contact_a}” and “{suggestion.contact_b}” stay apart; "
                                  "they are not suggested again unless stronger evidence turns up.")
    except ServiceError as exc:
        messages.error(request, f"Not rejected: {exc}.")
    return redirect("suggestion-list")
