"""Keep in touch on the web: the "going cold" page and its feed tokens, the feed itself
(``/feeds/cold/<token>.rss|.json``), a contact's cadence form, and the strength card of the
contact page (``contact_rank_context``)."""

from __future__ import annotations

import hashlib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import get_conditional_response
from django.utils.http import quote_etag
from django.views.decorators.http import require_POST, require_safe

from ..cold_feed import (
    CONTENT_TYPES,
    FEED_LIMIT,
    cold_feed_render,
    cold_feed_token_create,
    cold_feed_token_revoke,
    cold_feed_tokens,
    cold_feed_urls,
    cold_feed_workspace,
)
from ..models import Contact, ContactStrength, Membership, Workspace
from ..presenters import render_cached
from ..ranking import (
    TIER_NAMES,
    WEIGHTS,
    RankError,
    StrengthParts,
    contact_cadence_set,
    parse_days,
    strength_factors,
    strength_parts,
    strength_score,
    strengths_current,
    tier_cadence_set,
    tier_of,
    utc_today,
)
from ..selectors.ranking import contact_cadence, going_cold, strength_explained, tier_cadences
from ..throttle import feed_throttle
from .common import member_workspace

PAGE_LIMIT = 50  # the most urgent; the page says how many more there are
NEW_TOKEN_KEY = "mesh_new_cold_token"


@login_required
def cold_list(request: HttpRequest) -> HttpResponse:
    """Contacts past their cadence, most urgent first; POST makes or revokes the feed token."""
    workspace = member_workspace(request)
    if request.method == "POST" and workspace is not None:
        # POST-redirect-GET, the new token waiting in the session (never in a URL) until the
        # page shows it once, as the contact feed tokens page does (docs/design.md).
        if request.POST.get("action") == "revoke":
            n = cold_feed_token_revoke(workspace=workspace)
            messages.success(request, f"Revoked {n} feed token{'s' if n != 1 else ''}.")
        else:
            _row, request.session[NEW_TOKEN_KEY] = cold_feed_token_create(workspace=workspace)
        return redirect("cold-list", permanent=False)
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    token = request.session.pop(NEW_TOKEN_KEY, None)
    new_urls = cold_feed_urls(token, base=request.build_absolute_uri("/")) if token else None
    entries, cadences = [], {}
    if workspace is not None:
        strengths_current(workspace=workspace)
        cadences = tier_cadences(workspace=workspace)
        entries = going_cold(workspace=workspace, now=timezone.now(), limit=PAGE_LIMIT, cadences=cadences)
    return render(request, "streams/cold.html", {
        "workspace": workspace, "entries": entries, "rows": _cold_rows(entries), "new_urls": new_urls,
        "more": entries.total - len(entries) if entries else 0,
        "tokens": cold_feed_tokens(workspace=workspace) if workspace is not None else [],
        "tier_cadences": [(tier, cadences.get(tier)) for tier in TIER_NAMES] if workspace is not None else [],
        "is_owner": workspace is not None and _is_owner(request, workspace),
    })


class _ColdRow:
    """An entry and its rendered row (ColdEntry is frozen: the fragment cannot go on it)."""

    __slots__ = ("e", "fragment")

    def __init__(self, entry):
        self.e, self.fragment = entry, ""


def _cold_rows(entries: list) -> list[_ColdRow]:
    """The rows from the fragment cache, as the contact list's are: the template per row was
    most of the page's CPU. The key is everything a row shows, the dates in the reader's zone."""
    rows = [_ColdRow(e) for e in entries]
    zone = timezone.get_current_timezone_name()
    render_cached(rows, template="streams/_cold_row.html", kind="cold",
                  key_parts=lambda r: (r.e.contact_id, r.e.name, r.e.state, r.e.tier, r.e.strength, r.e.explained,
                                       r.e.last_touch_at.isoformat(), r.e.due_at.isoformat(), r.e.days_since,
                                       r.e.every_days, r.e.at_most_days, r.e.own_cadence, zone),
                  context=lambda r: {"e": r.e})
    return rows


def _is_owner(request: HttpRequest, workspace: Workspace) -> bool:
    return Membership.objects.filter(workspace=workspace, user=request.user, role=Membership.Role.OWNER).exists()


@login_required
@require_POST
def tier_cadences_view(request: HttpRequest) -> HttpResponse:
    """The workspace's default cadence per strength tier, all tiers in one form (owners only):
    blank 'every' = no reminders for the tier, blank 'at most' = three times the interval. All
    or nothing: one tier refused saves none."""
    workspace = member_workspace(request)
    if workspace is None or not _is_owner(request, workspace):
        return HttpResponse("Only the workspace's owners set its default cadences.\n", status=403,
                            content_type="text/plain; charset=utf-8")
    try:
        with transaction.atomic():
            for tier in TIER_NAMES:
                every, most = (request.POST.get(f"{tier}-{field}", "").strip() for field in ("every", "at_most"))
                if most and not every:
                    raise RankError(f"{tier}: 'at most' without an interval")
                try:
                    tier_cadence_set(workspace=workspace, tier=tier, every_days=parse_days(every) if every else None,
                                     at_most_days=parse_days(most) if most else None)
                except RankError as exc:
                    raise RankError(f"{tier}: {exc}") from None
        messages.success(request, "Default cadences saved.")
    except RankError as exc:
        messages.error(request, f"Default cadences not saved: {exc}.")
    return redirect("cold-list")


@require_safe
@feed_throttle
def cold_feed(request: HttpRequest, token: str, fmt: str) -> HttpResponse:
    """The going-cold list as a feed; an unknown, revoked or malformed token is 404 alike.
    The ETag is the body's hash: the list moves with the clock, not with a row to date it by,
    so a poll is ranked and rendered, and a reader that has it gets a 304 without the body."""
    workspace = cold_feed_workspace(token)
    if workspace is None or fmt not in CONTENT_TYPES:
        raise Http404("no such feed")
    strengths_current(workspace=workspace)
    now = timezone.now()
    entries = going_cold(workspace=workspace, now=now, limit=FEED_LIMIT)
    body = cold_feed_render(workspace=workspace, entries=entries, fmt=fmt, base_url=request.build_absolute_uri("/"),
                            now=now).encode()
    etag = quote_etag(hashlib.sha256(body).hexdigest()[:32])
    response = get_conditional_response(request, etag=etag) or HttpResponse(body, content_type=CONTENT_TYPES[fmt])
    response["ETag"] = etag
    response["Cache-Control"] = "private, max-age=300"
    return response


@login_required
@require_POST
def contact_cadence_view(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_object_or_404(Contact.objects.select_related("workspace"), pk=contact_id,
                                workspace__memberships__user=request.user)
    try:
        if request.POST.get("action") == "clear":
            contact_cadence_set(workspace=contact.workspace, contact=contact, every_days=None)
            messages.success(request, "Cadence removed: the tier's default applies.")
        else:
            every = parse_days(request.POST.get("every", ""))
            most = request.POST.get("at_most", "").strip()
            contact_cadence_set(workspace=contact.workspace, contact=contact, every_days=every,
                                at_most_days=parse_days(most) if most else None)
            messages.success(request, "Cadence saved.")
    except RankError as exc:
        messages.error(request, f"Cadence not saved: {exc}.")
    return redirect("contact-detail", contact.pk)


def contact_rank_context(contact: Contact) -> dict:
    """The contact page's strength card: the score, its parts in words, the factors, and the
    cadence. The kept score (the beat brings it up to date within a minute of new items) is
    one row; computing it from the conversation-days is what a contact without one gets, since
    for a contact of 100,000 items that aggregate costs ~80 ms a page. No write on GET."""
    today = utc_today()
    try:
        row = contact.strength  # read with the contact (the contact page's select_related)
    except ContactStrength.DoesNotExist:
        row = None
    if row is not None:
        parts = StrengthParts(**{f: getattr(row, f) for f in StrengthParts.__dataclass_fields__})
    elif (parts := strength_parts(today=today, contact_ids=[contact.pk]).get(contact.pk)) is not None:
        score = strength_score(parts, today=today)
        row = ContactStrength(contact_id=contact.pk, score=score, tier=tier_of(score), computed_on=today,
                              **{f: getattr(parts, f) for f in StrengthParts.__dataclass_fields__})
    factors = []
    if parts is not None:
        factors = [(name, round(100 * value), round(100 * WEIGHTS[name]))
                   for name, value in strength_factors(parts, today=today).items()]
    return {
        "strength": row, "strength_text": strength_explained(row), "strength_factors": factors,
        "cadence": contact_cadence(contact=contact, tier=row.tier if row else None),
    }
