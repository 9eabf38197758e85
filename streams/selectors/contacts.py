"""Reads about contacts: the list and its search, a contact's identities and merge tree, the
workspaces a user belongs to, and what pushed items are waiting."""

from __future__ import annotations

import re

from django.db.models import Count, F, Min, Q, QuerySet

from ..identity import InvalidIdentity, normalize_email, normalize_phone
from ..models import Contact, Identity, InboundItem, Workspace


def contact_subtree_ids(contact: Contact) -> list[int]:
    """The contact and every contact merged into it, at any depth (the merge tree below it)."""
    ids = [contact.pk]
    frontier = [contact.pk]
    while frontier:
        frontier = list(Contact.objects.filter(merged_into__in=frontier).values_list("pk", flat=True))
        ids.extend(frontier)
    return ids


def workspaces_for_user(*, user) -> QuerySet[Workspace]:
    if not user.is_authenticated:
        return Workspace.objects.none()
    return Workspace.objects.filter(memberships__user=user).order_by("slug")


# A query made only of phone-number characters ("(415) 555-0100", "+1 415-555-0100").
PHONE_QUERY_RE = re.compile(r"^\+?[\d\s().-]+$")


def contact_search_term(*, workspace: Workspace, q: str) -> str:
    """What a contact search looks for, written as identities are stored: a phone number in
    E.164 through the workspace's region (else without its formatting), an email address
    casefolded. Anything else (a name, an ``@handle``) is searched as typed."""
    q = q.strip()[:200]
    if PHONE_QUERY_RE.match(q) and sum(ch.isdigit() for ch in q) >= 3:
        try:
            return normalize_phone(q, workspace.region)
        except InvalidIdentity:
            return re.sub(r"[\s().-]", "", q)
    if "@" in q[1:]:
        try:
            return normalize_email(q)
        except InvalidIdentity:
            return q.casefold()
    return q


def contacts_list(
    *, workspace: Workspace, search: str = "", channel: str = "", include_self: bool = False
) -> QuerySet[Contact]:
    """Top-level contacts, most recently active first; ``search`` as typed by a person (see
    contact_search_term)."""
    qs = Contact.objects.filter(workspace=workspace, merged_into=None)
    if not include_self:
        qs = qs.filter(is_self=False)
    search = contact_search_term(workspace=workspace, q=search) if search else ""
    if search:
        qs = qs.filter(
            Q(name__icontains=search)
            | Q(pk__in=Identity.objects.filter(workspace=workspace).filter(
                Q(value__icontains=search.strip().lower()) | Q(display__icontains=search)
            ).values("contact"))
        )
    if channel:
        qs = qs.filter(channel_counts__has_key=channel)
    return qs.order_by(F("last_activity_at").desc(nulls_last=True), "-pk").prefetch_related("identities")


def contact_identities(*, contact: Contact) -> list[Identity]:
    return list(Identity.objects.filter(contact=contact).order_by("kind", "value"))


def inbound_pending(*, workspace: Workspace, scope: str | None = None) -> dict[str, dict]:
    """Pushed items stored but not yet ingested, per scope (``device:<id>``, ``source:<id>``):
    ``{"count", "oldest_at"}``. Items wait here for a task; one waiting long lost its task
    (the workers' sweep re-sends it, see streams.tasks.inbound_sweep_stranded)."""
    qs = InboundItem.objects.filter(workspace=workspace, state=InboundItem.State.PENDING)
    if scope is not None:
        qs = qs.filter(scope=scope)
    rows = qs.values("scope").annotate(count=Count("pk"), oldest_at=Min("received_at")).order_by()
    return {r["scope"]: {"count": r["count"], "oldest_at": r["oldest_at"]} for r in rows}


NO_PENDING = {"count": 0, "oldest_at": None}
