"""Reads for merge suggestions (``streams.linking``): who the workspace's contacts are, their
identities, and the evidence stored items hold — the text of mail people sent, who wrote in
which email thread, the profile names X items carry — and the stored suggestions themselves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import QuerySet

from ..models import Contact, Identity, MergeSuggestion, Participant, Workspace


@dataclass(frozen=True, slots=True)
class LinkContact:
    pk: int
    name: str
    name_source: str


@dataclass(frozen=True, slots=True)
class LinkIdentity:
    pk: int
    kind: str
    value: str
    display: str
    display_source: str
    contact_id: int  # the top-level contact it lives on


def link_contacts(*, workspace: Workspace) -> tuple[dict[int, LinkContact], dict[int, int]]:
    """(top-level contacts other than the owner by id, every contact's id → its top-level
    contact's id). The owner's contact maps to nothing: it is never suggested."""
    parent: dict[int, int | None] = {}
    top: dict[int, LinkContact] = {}
    rows = Contact.objects.filter(workspace=workspace).values_list("pk", "merged_into_id", "is_self", "name", "name_source")
    for pk, merged_into, is_self, name, source in rows.iterator(chunk_size=5000):
        parent[pk] = merged_into
        if merged_into is None and not is_self:
            top[pk] = LinkContact(pk, name, source)
    roots: dict[int, int] = {}
    for pk in parent:
        node, seen = pk, 0
        while parent.get(node) is not None and seen < 64:  # 64: a merge tree is never that deep
            node, seen = parent[node], seen + 1
        if node in top:
            roots[pk] = node
    return top, roots


def link_identities(*, workspace: Workspace, roots: dict[int, int]) -> list[LinkIdentity]:
    """The identities that live on a suggestible contact."""
    rows = (Identity.objects.filter(workspace=workspace, is_self=False, contact__isnull=False)
            .values_list("pk", "kind", "value", "display", "display_source", "contact_id"))
    return [LinkIdentity(pk, kind, value, display, source, roots[contact])
            for pk, kind, value, display, source, contact in rows.iterator(chunk_size=5000) if contact in roots]


def _mail_participants(workspace: Workspace) -> QuerySet[Participant]:
    # Automated mail (newsletters, notifications) signs with a company's numbers, not a person's.
    return Participant.objects.filter(
        activity__workspace=workspace, activity__channel="email", activity__automated=False,
        activity__erased_at__isnull=True,
    )


def mail_sent_texts(*, workspace: Workspace) -> Iterator[tuple[int, int, str]]:
    """(activity id, sender identity id, text) of every mail a contact sent."""
    rows = _mail_participants(workspace).filter(role=Participant.Role.FROM, identity__is_self=False)
    yield from rows.values_list("activity_id", "identity_id", "activity__text").iterator(chunk_size=2000)


def mail_thread_participants(*, workspace: Workspace) -> Iterator[tuple[str, int, int]]:
    """(thread key, activity id, identity id) of every participant of threaded mail, by thread."""
    rows = _mail_participants(workspace).exclude(activity__thread_key="").filter(identity__is_self=False)
    yield from (rows.values_list("activity__thread_key", "activity_id", "identity_id")
                .order_by("activity__thread_key").iterator(chunk_size=5000))


def x_profile_names(*, workspace: Workspace) -> dict[str, str]:
    """X user id → the profile name (not the @handle) the X API's items carry for it."""
    names: dict[str, str] = {}
    rows = workspace.activities.filter(channel="twitter", raw__has_key="users").values_list("raw__users", flat=True)
    for users in rows.iterator(chunk_size=2000):
        for user_id, user in (users or {}).items() if isinstance(users, dict) else ():
            if isinstance(user, dict) and isinstance(user.get("name"), str) and user["name"].strip():
                names[str(user_id)] = user["name"].strip()[:300]
    return names


def merge_suggestions_stored(*, workspace: Workspace) -> list[MergeSuggestion]:
    return list(MergeSuggestion.objects.filter(workspace=workspace))


def merge_suggestions_open(*, workspace: Workspace, limit: int | None = None) -> list[MergeSuggestion]:
    """Open suggestions, the best evidence first, with both contacts and their identities."""
    qs = (MergeSuggestion.objects.filter(workspace=workspace, state=MergeSuggestion.State.OPEN,
                                         contact_a__merged_into=None, contact_b__merged_into=None)
          .select_related("contact_a", "contact_b").order_by("-score", "pk"))
    rows = list(qs[:limit] if limit else qs)
    ids = {c for s in rows for c in (s.contact_a_id, s.contact_b_id)}
    by_contact: dict[int, list[Identity]] = {}
    for ident in Identity.objects.filter(contact_id__in=ids).order_by("kind", "value"):
        by_contact.setdefault(ident.contact_id, []).append(ident)
    for s in rows:
        s.contact_a.identity_list = by_contact.get(s.contact_a_id, [])
        s.contact_b.identity_list = by_contact.get(s.contact_b_id, [])
    return rows


def merge_suggestion_get(*, workspace: Workspace, pk) -> MergeSuggestion | None:
    try:
        return MergeSuggestion.objects.select_related("contact_a", "contact_b").get(workspace=workspace, pk=int(pk))
    except (ValueError, TypeError, MergeSuggestion.DoesNotExist):
        return None
