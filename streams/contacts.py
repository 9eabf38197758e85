"""Contact actions the web pages offer besides merge/unmerge themselves (which live in
``streams.services``): renaming, and the previews that show what a merge or an unmerge would
move before anyone commits to it."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction

from .identity import merge_name
from .models import Contact, Identity, TimelineEntry, Workspace
from .selectors import contact_subtree_ids
from .services import ServiceError, contact_merge_check

MAX_NAME = 300


def _clean_name(name: str) -> str:
    # Control characters (and the bidi overrides among the format characters) have no place in
    # a name someone types here; they would only serve to disguise it.
    text = "".join(ch for ch in str(name or "") if ch.isprintable() or ch == " ")
    return " ".join(text.split())[:MAX_NAME]


@transaction.atomic
def contact_rename(*, workspace: Workspace, contact: Contact, name: str) -> Contact:
    if contact.workspace_id != workspace.pk:
        raise ServiceError("contact is not in this workspace")
    clean = _clean_name(name)
    if not clean:
        raise ServiceError("the name is empty")
    Contact.objects.filter(pk=contact.pk).update(name=clean, name_source="hand")
    contact.name, contact.name_source = clean, "hand"
    return contact


@dataclass
class MergePreview:
    target: Contact
    other: Contact
    identities: list[Identity]  # what moves from other to target
    children: list[Contact]  # contacts already merged into other, which come along
    other_count: int
    shared: int  # activities already on both timelines (counted once after the merge)
    channel_counts: dict[str, int] = field(default_factory=dict)
    shared_threads: int = 0  # conversations both contacts appear in
    name: str = ""  # the name the merge leaves (identity.merge_name)
    name_source: str = ""

    @property
    def name_from(self) -> str:
        """Whose name wins: "survivor" (``target``) or "merged" (``other``)."""
        return "survivor" if self.name == self.target.name else "merged"

    @property
    def total_after(self) -> int:
        return self.target.activity_count + self.other_count - self.shared


def contact_merge_preview(*, workspace: Workspace, target: Contact, other: Contact) -> MergePreview:
    """What ``contact_merge(target, other)`` would do, without doing it. Raises ServiceError
    for a merge that service would refuse."""
    contact_merge_check(workspace=workspace, target=target, other=other)
    target_ids = TimelineEntry.objects.filter(kind="c", owner_id=target.pk).values("activity_id")
    shared = TimelineEntry.objects.filter(kind="c", owner_id=other.pk, activity_id__in=target_ids).count()
    name, name_source = merge_name(survivor=target, other=other)
    return MergePreview(
        target=target,
        other=other,
        identities=list(Identity.objects.filter(contact=other).order_by("kind", "value")),
        children=list(Contact.objects.filter(merged_into=other).order_by("pk")),
        other_count=other.activity_count,
        shared=shared,
        channel_counts=dict(sorted((other.channel_counts or {}).items())),
        shared_threads=_shared_threads(target, other),
        name=name, name_source=name_source,
    )


def _shared_threads(target: Contact, other: Contact) -> int:
    def threads(contact: Contact):
        return (TimelineEntry.objects.filter(kind="c", owner_id=contact.pk).exclude(activity__thread_key="")
                .values_list("activity__thread_key", flat=True).distinct())

    return len(set(threads(target)) & set(threads(other)))


@dataclass
class UnmergePart:
    contact: Contact
    identities: list[Identity]
    name_back: str = ""  # the name the contact it leaves gets back (the merge took this one's)


def contact_unmerge_preview(*, workspace: Workspace, contact: Contact) -> tuple[Contact, list[UnmergePart]]:
    """What ``contact_unmerge(contact)`` would split off: (the contact that stays on top, the
    contacts that become separate again, each with the identities that go back to it)."""
    if contact.workspace_id != workspace.pk:
        raise ServiceError("contact is not in this workspace")
    if contact.merged_into_id:
        root, detach = contact.root(), [contact]
    else:
        root, detach = contact, list(Contact.objects.filter(merged_into=contact).order_by("pk"))
        if not detach:
            raise ServiceError(f"contact {contact.pk} has nothing merged into it")
    parts = [
        UnmergePart(c, list(Identity.objects.filter(home_contact__in=contact_subtree_ids(c)).order_by("kind", "value")),
                    _name_back(c))
        for c in detach
    ]
    return root, parts


def _name_back(child: Contact) -> str:
    undo = child.merge_undo or {}
    if undo and child.merged_into_id and child.merged_into.name == undo.get("took"):
        return undo.get("name", "")
    return ""
