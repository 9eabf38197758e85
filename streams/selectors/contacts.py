"""Reads about contacts: the list and its search, a contact's identities and merge tree, the
workspaces a user belongs to, and what pushed items are waiting."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import NamedTuple

from django.db.models import Count, F, Min, Q, QuerySet

from ..identity import InvalidIdentity, normalize_email, normalize_phone
from ..models import Contact, Identity, InboundItem, Workspace
from .timelines import BadCursor


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


@dataclass(frozen=True, slots=True)
class ContactCursor:
    """Keyset position in the contact list: the (last_activity_at, id) of the last contact
    shown (``None``: a contact with no activity, listed last)."""

    last_activity_at: dt.datetime | None
    contact_id: int

    @classmethod
    def after(cls, contact: Contact) -> ContactCursor:
        return cls(contact.last_activity_at, contact.pk)

    def encode(self) -> str:
        when = self.last_activity_at
        stamp = when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ") if when else "none"
        return f"{stamp}_{self.contact_id}"

    @classmethod
    def decode(cls, text: str | None) -> ContactCursor | None:
        if not text:
            return None
        stamp, _, pk = text.partition("_")
        try:
            when = None if stamp == "none" else dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.UTC)
            return cls(when, int(pk))
        except (ValueError, TypeError):
            raise BadCursor(f"bad cursor {text[:40]!r}") from None

    def q(self) -> Q:
        """The contacts after this one in the order (last_activity_at DESC NULLS LAST, id DESC)."""
        when, pk = self.last_activity_at, self.contact_id
        if when is None:
            return Q(last_activity_at=None, pk__lt=pk)
        return Q(last_activity_at__lt=when) | Q(last_activity_at=when, pk__lt=pk) | Q(last_activity_at=None)


def contacts_matching(
    *, workspace: Workspace, search: str = "", channel: str = "", include_self: bool = False,
) -> QuerySet[Contact]:
    """Top-level contacts, unordered: ``search`` as typed by a person (see
    contact_search_term) in a name or an identity, ``channel`` one they have items on."""
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
    return qs


def contacts_list(
    *, workspace: Workspace, search: str = "", channel: str = "", include_self: bool = False,
    before: ContactCursor | None = None,
) -> QuerySet[Contact]:
    """``contacts_matching``, most recently active first (after ``before`` when given)."""
    qs = contacts_matching(workspace=workspace, search=search, channel=channel, include_self=include_self)
    if before is not None:
        qs = qs.filter(before.q())
    return qs.order_by(F("last_activity_at").desc(nulls_last=True), "-pk").prefetch_related("identities")


class ContactRow:
    """A contact as the list shows it: the values of one row and its identities, no model
    instances (building ~250 a page, with their related objects, was most of the list's CPU).
    ``tier``/``rank_score``: its strength, read only for the list by strength (None: no score)."""

    __slots__ = ("pk", "name", "last_activity_at", "channel_counts", "tier", "rank_score", "identities",
                 "identity_list", "channel_list", "last_seen", "fragment")

    def __init__(self, pk, name, last_activity_at, channel_counts, tier=None, rank_score=None):
        self.pk, self.name, self.last_activity_at, self.channel_counts = pk, name, last_activity_at, channel_counts
        self.tier, self.rank_score, self.identities = tier, rank_score, []

    def __str__(self) -> str:
        return self.name or f"Contact {self.pk}"


class IdentityRow(NamedTuple):
    """What a list row shows of an identity (streams.people reads these attributes)."""

    kind: str
    value: str
    display: str
    avatar_url: str


def contact_rows(listed, *, limit: int, by_strength: bool = False) -> list[ContactRow]:
    """The first ``limit`` contacts of ``listed`` (``contacts_list``, or
    ``selectors.ranking.contacts_by_strength``: both slice and take ``values_list``) with their
    identities: one statement for the rows (per part of the list) and one for the identities."""
    fields = ("pk", "name", "last_activity_at", "channel_counts") + (
        ("strength__tier", "rank_score") if by_strength else ())
    rows = [ContactRow(*values) for values in listed.prefetch_related(None).values_list(*fields)[:limit]]
    by_id = {row.pk: row for row in rows}
    if by_id:
        for contact_id, *identity in Identity.objects.filter(contact_id__in=by_id).values_list(
                "contact_id", "kind", "value", "display", "avatar_url"):
            by_id[contact_id].identities.append(IdentityRow(*identity))
    return rows


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
