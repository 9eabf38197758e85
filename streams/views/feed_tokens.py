"""A contact's feed tokens page: list them, create one (with a label and a tier), rotate, revoke
one (after a confirmation) or all.

POST-redirect-GET: every POST is answered with a redirect back to the page, so a reload repeats
nothing. A new token waits in the session for the page after the redirect, which shows it once;
it never goes into a URL (URLs end up in logs and browser history)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from ..conf import conf
from ..feed_tokens import (
    FeedTokenError,
    feed_token_create,
    feed_token_revoke,
    feed_token_rotate,
    feed_tokens_for,
    feed_urls,
)
from ..models import Contact, FeedToken

NEW_TOKEN_KEY = "mesh_new_feed_token"


@login_required
def contact_feed_tokens(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_object_or_404(
        Contact.objects.select_related("workspace"), pk=contact_id, workspace__memberships__user=request.user
    )
    root = contact.root()
    if request.method == "POST":
        return _act(request, contact, root)
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "POST"])
    new = request.session.get(NEW_TOKEN_KEY)
    new_token = ""
    if isinstance(new, dict) and new.get("contact") == root.pk:
        new_token = str(new.get("token") or "")
        del request.session[NEW_TOKEN_KEY]
    tokens = feed_tokens_for(contact=root)
    base = (conf.PUBLIC_URL or request.build_absolute_uri("/")).rstrip("/")
    response = render(request, "feeds/contact_feed_tokens.html", {
        "workspace": contact.workspace, "contact": root, "tokens": tokens, "tiers": FeedToken.Tier.choices,
        # The tier last chosen (the newest token's), so that "Rotate" right after "Create" keeps it.
        "tier": tokens[0].tier if tokens else FeedToken.Tier.METADATA,
        "new_token": new_token, "new_urls": feed_urls(new_token, base=base) if new_token else {},
    })
    response["Cache-Control"] = "no-store"  # the page may hold a token shown only once
    return response


def _act(request: HttpRequest, contact: Contact, root: Contact) -> HttpResponse:
    action = request.POST.get("action", "")
    tier = request.POST.get("tier") or None
    label = request.POST.get("label", "")
    token = ""
    try:
        if action == "create":
            _row, token = feed_token_create(workspace=contact.workspace, contact=root,
                                            tier=tier or FeedToken.Tier.METADATA, label=label)
        elif action == "rotate":
            _row, token = feed_token_rotate(workspace=contact.workspace, contact=root, tier=tier,
                                            label=label or None)
        elif action == "revoke":
            one = request.POST.get("token", "")
            if one and not one.isdigit():
                return HttpResponseBadRequest("token must be a token's id")
            n = feed_token_revoke(workspace=contact.workspace, contact=root, token_id=int(one) if one else None)
            if one and not n:
                messages.info(request, "That token was already revoked.")
            else:
                messages.success(request, f"{n} token{'s' if n != 1 else ''} revoked.")
        else:
            return HttpResponseBadRequest("unknown action")
    except FeedTokenError as exc:
        messages.error(request, str(exc))
    if token:
        request.session[NEW_TOKEN_KEY] = {"contact": root.pk, "token": token}
    response = redirect(reverse("contact-feed-tokens", args=[contact.pk]))
    response.status_code = 303  # See Other: the page, fetched with GET
    return response
