"""Merge suggestions: pairs of contacts that may be one person, each with the evidence that says
so, and what a person does with them (accept: the merge; reject: remembered).

Evidence, weakest kind first (``KINDS``; each reason carries its weight and a sentence):

- ``initials``: "A. Souza" and "Ana Souza", "Ana S." and "Ana Souza";
- ``same_name``: the same name on both, after normalization (accents, case, punctuation, word
  order, "Souza, Ana"); stronger across channels (an email and a phone) than within one;
- ``x_profile``: an X account's @handle is the local part of the other's email address (what
  the X data Mesh keeps has: user id, @handle, profile name; profile names count as names);
- ``thread``: one email thread in which both wrote, never in the same message: one person
  writing from two addresses;
- ``signature``: a mail from one names the other's address or phone number in its signature;
- ``address_book``: the phone's address book (an SMS backup's contact names) gives both
  numbers one name, or gives a number the name the other goes by on another channel.

Names that many contacts share count for less (half above two contacts, nothing above eight);
a name made from an address counts for nothing. Only the strongest name-based reason of a pair
counts, since they are one clue told several ways. The score combines the rest as independent
clues: ``1 - Π(1 - weight)``. A pair is suggested from ``SUGGEST_AT``.

Computed by ``merge_suggestions_refresh(workspace=…)``, a pass over the whole workspace
(``mesh_contacts suggestions --refresh``, the suggestions page's "Look again", and daily the
beat's ``streams.tasks.merge_suggestions_refresh``), not after each ingest batch: the evidence
is pairwise across the workspace, and ingest stays what it was.
A rejected pair is never suggested again unless evidence of a stronger kind than any it had
when rejected appears; it follows its contacts through later merges. Nothing is merged without
a person unless the workspace sets ``auto_merge_score`` (None by default: never).
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations

import phonenumbers
from django.db import transaction
from django.utils import timezone

from .identity import InvalidIdentity, normalize_email, normalize_phone
from .models import Contact, MergeSuggestion, Workspace
from .selectors.linking import (
    LinkContact,
    LinkIdentity,
    link_contacts,
    link_identities,
    mail_sent_texts,
    mail_thread_participants,
    merge_suggestions_stored,
    x_profile_names,
)
from .services import ServiceError, contact_merge


@dataclass(frozen=True, slots=True)
class Kind:
    rank: int
    weight: float
    label: str


KINDS = {
    "initials": Kind(1, 0.3, "initials match"),
    "same_name": Kind(2, 0.6, "same name"),
    "x_profile": Kind(3, 0.5, "X profile"),
    "thread": Kind(4, 0.55, "one thread, two identities"),
    "signature": Kind(5, 0.8, "email signature"),
    "address_book": Kind(6, 0.9, "address book"),
}
NAME_KINDS = ("initials", "same_name", "address_book")
SUGGEST_AT = 0.5
SAME_CHANNEL_NAME = 0.4  # same_name between contacts seen on the same channels only
ADDRESS_BOOK_NAME = 0.7  # the address book's name for a number, the other's name elsewhere
COMMON_NAME = 2  # more contacts than this sharing a name halve its weight ...
TOO_COMMON = 8  # ... and more than this make it no evidence at all
ROLE_LOCALS = frozenset({"info", "admin", "contact", "hello", "support", "sales", "office", "team", "mail",
                         "noreply", "no-reply", "help", "billing", "jobs", "press", "news", "service"})
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
SIGNATURE_LINES = 6  # without a "-- " line, a signature is taken as the last lines of the text


@dataclass(slots=True)
class Reason:
    kind: str
    weight: float
    text: str

    def as_json(self) -> dict:
        return {"kind": self.kind, "label": KINDS[self.kind].label, "weight": round(self.weight, 3), "text": self.text}


@dataclass(slots=True)
class Scored:
    score: float
    reasons: list[Reason]
    strength: int


# --- names -------------------------------------------------------------------------------------


def name_tokens(name: str) -> list[str]:
    """A name's words, as compared: accents and case dropped, "Souza, Ana" read as "Ana Souza",
    bracketed notes ("Ana (work)") and punctuation ignored."""
    text = "".join(ch for ch in unicodedata.normalize("NFKD", name or "") if not unicodedata.combining(ch))
    text = re.sub(r"\(.*?\)|\[.*?\]", " ", text.casefold())
    if text.count(",") == 1:
        last, first = text.split(",")
        text = f"{first} {last}"
    return re.findall(r"[^\W\d_]+", text)


def name_keys(name: str) -> tuple[tuple[str, ...] | None, set[tuple[str, ...]]]:
    """(the full-name key, or None; the initials keys). A full name (two words or more, none a
    lone initial) has as full key its words in sorted order and as initials keys itself with
    each word in turn cut to its initial; a name with initials ("A. Souza") has only itself."""
    tokens = name_tokens(name)
    if len(tokens) < 2 or all(len(t) == 1 for t in tokens):
        return None, set()
    if any(len(t) == 1 for t in tokens):
        return None, {tuple(tokens)}
    cut = {tuple(t[0] if j == i else t for j, t in enumerate(tokens)) for i in range(len(tokens))}
    return tuple(sorted(tokens)), cut


def _looks_like_address(name: str, values: set[str]) -> bool:
    return not name or "@" in name or name.casefold() in values or bool(re.fullmatch(r"[+\d\s().-]+", name))


@dataclass(slots=True)
class _Names:
    """The names a contact goes by, with where each came from."""

    by_contact: dict[int, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, contact_id: int, name: str, source: str, addresses: set[str]) -> None:
        name = " ".join((name or "").split())
        if source != "address" and not _looks_like_address(name, addresses):
            self.by_contact[contact_id].append((name, source))


# --- the evidence --------------------------------------------------------------------------------


class _Evidence:
    def __init__(self, contacts: dict[int, LinkContact], identities: list[LinkIdentity]):
        self.contacts = contacts
        self.pairs: dict[tuple[int, int], dict[str, Reason]] = defaultdict(dict)
        self.by_key = {(i.kind, i.value): i for i in identities}
        self.by_id = {i.pk: i for i in identities}
        self.kinds: dict[int, set[str]] = defaultdict(set)
        for i in identities:
            self.kinds[i.contact_id].add(i.kind)

    def add(self, a: int, b: int, kind: str, weight: float, text: str) -> None:
        if a == b or a not in self.contacts or b not in self.contacts:
            return
        pair = (a, b) if a < b else (b, a)
        known = self.pairs[pair].get(kind)
        if known is None or weight > known.weight:
            self.pairs[pair][kind] = Reason(kind, weight, text)

    def name(self, contact_id: int) -> str:
        return self.contacts[contact_id].name or f"contact {contact_id}"

    def scored(self) -> dict[tuple[int, int], Scored]:
        out = {}
        for pair, reasons in self.pairs.items():
            named = [r for k, r in reasons.items() if k in NAME_KINDS]
            kept = [r for k, r in reasons.items() if k not in NAME_KINDS]
            if named:
                kept.append(max(named, key=lambda r: (r.weight, KINDS[r.kind].rank)))
            miss = 1.0
            for r in kept:
                miss *= 1.0 - r.weight
            kept.sort(key=lambda r: (-r.weight, -KINDS[r.kind].rank))
            out[pair] = Scored(round(1.0 - miss, 4), kept, max(KINDS[r.kind].rank for r in kept))
        return out


def _name_evidence(ev: _Evidence, identities: list[LinkIdentity], x_names: dict[str, str]) -> None:
    addresses: dict[int, set[str]] = defaultdict(set)
    for i in identities:
        addresses[i.contact_id].add(i.value.casefold())
    names = _Names()
    for c in ev.contacts.values():
        names.add(c.pk, c.name, c.name_source, addresses[c.pk])
    for i in identities:
        if i.display:
            names.add(i.contact_id, i.display, i.display_source or "email", addresses[i.contact_id])
        if i.kind == "x" and i.value in x_names:
            names.add(i.contact_id, x_names[i.value], "x", addresses[i.contact_id])
    full: dict[tuple, dict[int, tuple[str, str]]] = defaultdict(dict)
    short: dict[tuple, dict[int, str]] = defaultdict(dict)
    cut: dict[tuple, dict[int, str]] = defaultdict(dict)
    for contact_id, known in names.by_contact.items():
        for name, source in known:
            key, initials = name_keys(name)
            if key is not None:
                here = full[key].get(contact_id)
                if here is None or source == "address_book":
                    full[key][contact_id] = (name, source)
                for k in initials:
                    cut[k].setdefault(contact_id, name)
            else:
                for k in initials:
                    short[k].setdefault(contact_id, name)
    for members in full.values():
        if len(members) > TOO_COMMON:
            continue
        damp = 0.5 if len(members) > COMMON_NAME else 1.0
        for (a, (name_a, src_a)), (b, (name_b, src_b)) in combinations(sorted(members.items()), 2):
            book = [s == "address_book" for s in (src_a, src_b)]
            cross = ev.kinds[a] != ev.kinds[b]
            if all(book):
                ev.add(a, b, "address_book", KINDS["address_book"].weight * damp,
                       f"Your address book names both “{name_a}”.")
            elif any(book) and cross:
                ev.add(a, b, "address_book", ADDRESS_BOOK_NAME * damp,
                       f"Your address book's “{name_a if book[0] else name_b}” is the name "
                       f"“{name_b if book[0] else name_a}” goes by elsewhere.")
            weight = (KINDS["same_name"].weight if cross else SAME_CHANNEL_NAME) * damp
            shared = f" ({len(members)} contacts share it)" if len(members) > COMMON_NAME else ""
            ev.add(a, b, "same_name", weight,
                   f"Both are named “{name_a}”{' on different channels' if cross else ''}{shared}."
                   if name_a == name_b else f"“{name_a}” and “{name_b}” are the same name{shared}.")
    for key, members in short.items():
        fulls = cut.get(key, {})
        if not fulls or len(fulls) + len(members) > TOO_COMMON:
            continue
        for a, name_a in members.items():
            for b, name_b in fulls.items():
                ev.add(a, b, "initials", KINDS["initials"].weight, f"“{name_a}” fits “{name_b}”.")


def signature_block(text: str) -> str:
    """The part of a mail's text a signature is in: after a "-- " line, else its last lines."""
    lines = (text or "").splitlines()
    for i, line in enumerate(lines):
        if line.rstrip() == "--":
            return "\n".join(lines[i + 1:])
    return "\n".join([line for line in lines if line.strip()][-SIGNATURE_LINES:])


def addresses_in(text: str, region: str) -> set[tuple[str, str]]:
    """The email addresses and phone numbers a piece of text names, as identities."""
    found = set()
    for match in EMAIL_RE.findall(text):
        try:
            found.add(("email", normalize_email(match.strip("."))))
        except InvalidIdentity:
            pass
    if sum(ch.isdigit() for ch in text) >= 7:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            try:
                found.add(("phone", normalize_phone(match.raw_string, region)))
            except InvalidIdentity:
                pass
    return found


def _signature_evidence(ev: _Evidence, workspace: Workspace) -> None:
    region = workspace.region
    for _activity_id, sender_id, text in mail_sent_texts(workspace=workspace):
        sender = ev.by_id.get(sender_id)
        if sender is None or not text:
            continue
        for key in addresses_in(signature_block(text), region):
            named = ev.by_key.get(key)
            if named is not None and named.contact_id != sender.contact_id:
                ev.add(sender.contact_id, named.contact_id, "signature", KINDS["signature"].weight,
                       f"Mail from {sender.value} signs with {key[1]}, which is {ev.name(named.contact_id)}'s.")


def _thread_evidence(ev: _Evidence, workspace: Workspace) -> None:
    def settle(thread: str, per_activity: dict[int, set[int]]) -> None:
        people = set().union(*per_activity.values()) if per_activity else set()
        if len(people) != 2 or any(len(p) > 1 for p in per_activity.values()):
            return
        a, b = sorted(people)
        ev.add(a, b, "thread", KINDS["thread"].weight,
               f"{ev.name(a)} and {ev.name(b)} each wrote in one email thread, never in the same message.")

    current, per_activity = None, defaultdict(set)
    for thread, activity_id, identity_id in mail_thread_participants(workspace=workspace):
        if thread != current:
            if current is not None:
                settle(current, per_activity)
            current, per_activity = thread, defaultdict(set)
        ident = ev.by_id.get(identity_id)
        if ident is not None:
            per_activity[activity_id].add(ident.contact_id)
    if current is not None:
        settle(current, per_activity)


def _local(value: str) -> str:
    return re.sub(r"[._-]", "", value.casefold())


def _x_profile_evidence(ev: _Evidence, identities: list[LinkIdentity]) -> None:
    locals_: dict[str, set[int]] = defaultdict(set)
    mails: dict[tuple[str, int], str] = {}
    for i in identities:
        if i.kind == "email":
            local = i.value.split("@", 1)[0]
            if local not in ROLE_LOCALS and len(_local(local)) >= 5:
                locals_[_local(local)].add(i.contact_id)
                mails[(_local(local), i.contact_id)] = i.value
    for i in identities:
        handle = i.display.lstrip("@") if i.kind == "x" and i.display.startswith("@") else ""
        owners = locals_.get(_local(handle), set()) if handle else set()
        if 0 < len(owners) <= 2:
            for other in owners:
                ev.add(i.contact_id, other, "x_profile", KINDS["x_profile"].weight,
                       f"The X account {i.display} has the name of the address {mails[(_local(handle), other)]}.")


def merge_suggestions_score(*, workspace: Workspace) -> dict[tuple[int, int], Scored]:
    """Every pair of top-level contacts with any evidence, scored (nothing is written)."""
    contacts, roots = link_contacts(workspace=workspace)
    identities = link_identities(workspace=workspace, roots=roots)
    ev = _Evidence(contacts, identities)
    _name_evidence(ev, identities, x_profile_names(workspace=workspace))
    _signature_evidence(ev, workspace)
    _thread_evidence(ev, workspace)
    _x_profile_evidence(ev, identities)
    return ev.scored()


# --- what is stored -------------------------------------------------------------------------------


@dataclass(slots=True)
class RefreshResult:
    suggested: int = 0
    new: int = 0
    reopened: int = 0
    closed: int = 0
    auto_merged: int = 0
    pairs: list[tuple[int, int]] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"suggested": self.suggested, "new": self.new, "reopened": self.reopened, "closed": self.closed,
                "auto_merged": self.auto_merged}


def _rejected(stored: Iterable[MergeSuggestion], roots: dict[int, int]) -> dict[tuple[int, int], int]:
    """Rejected pairs as they stand now (each contact as its top-level one), with the strongest
    kind of evidence they had when rejected."""
    out: dict[tuple[int, int], int] = {}
    for s in stored:
        if s.state != MergeSuggestion.State.REJECTED:
            continue
        a, b = roots.get(s.contact_a_id), roots.get(s.contact_b_id)
        if a is None or b is None or a == b:
            continue
        pair = (a, b) if a < b else (b, a)
        out[pair] = max(out.get(pair, 0), s.strength)
    return out


def merge_suggestions_refresh(*, workspace: Workspace, threshold: float = SUGGEST_AT) -> RefreshResult:
    """Score every pair again and store what reaches ``threshold``: new pairs open, open ones
    updated, open ones with no evidence left closed (deleted), rejected ones left alone unless
    evidence of a stronger kind appeared (then open again). Merges automatically only what
    reaches the workspace's ``auto_merge_score``, when it has one."""
    scored = merge_suggestions_score(workspace=workspace)
    _contacts, roots = link_contacts(workspace=workspace)
    result = RefreshResult()
    now = timezone.now()
    with transaction.atomic():
        # One refresh at a time per workspace: two at once would both create the same new pairs.
        Workspace.objects.select_for_update().filter(pk=workspace.pk).first()
        stored = merge_suggestions_stored(workspace=workspace)
        rejected = _rejected(stored, roots)
        by_pair = {(s.contact_a_id, s.contact_b_id): s for s in stored}
        keep: set[int] = set()
        for pair, found in sorted(scored.items(), key=lambda kv: -kv[1].score):
            if found.score < threshold or found.strength <= rejected.get(pair, -1):
                continue
            row = by_pair.get(pair)
            fields = {"score": found.score, "reasons": [r.as_json() for r in found.reasons],
                      "strength": found.strength, "updated_at": now}
            if row is None:
                row = MergeSuggestion.objects.create(workspace=workspace, contact_a_id=pair[0], contact_b_id=pair[1],
                                                     created_at=now, **fields)
                result.new += 1
            else:
                if row.state != MergeSuggestion.State.OPEN:
                    fields.update(state=MergeSuggestion.State.OPEN, decided_at=None, auto=False)
                    result.reopened += 1
                MergeSuggestion.objects.filter(pk=row.pk).update(**fields)
            keep.add(row.pk)
            result.pairs.append(pair)
        stale = [s.pk for s in stored if s.state == MergeSuggestion.State.OPEN and s.pk not in keep]
        result.closed = MergeSuggestion.objects.filter(pk__in=stale).delete()[0] if stale else 0
    result.suggested = len(keep)
    if workspace.auto_merge_score is not None:
        result.auto_merged = _auto_merge(workspace, [p for p in result.pairs
                                                     if scored[p].score >= workspace.auto_merge_score])
    return result


def _auto_merge(workspace: Workspace, pairs: list[tuple[int, int]]) -> int:
    merged = 0
    for a, b in pairs:
        suggestion = MergeSuggestion.objects.filter(workspace=workspace, contact_a_id=a, contact_b_id=b,
                                                    state=MergeSuggestion.State.OPEN).first()
        if suggestion is None:
            continue
        try:
            merge_suggestion_accept(workspace=workspace, suggestion=suggestion, auto=True)
            merged += 1
        except ServiceError:
            continue  # one of the two went into an earlier merge of this pass
    return merged


def merge_survivor(a: Contact, b: Contact) -> Contact:
    """The contact a merge keeps when nobody chose: the one with more activity, else the older."""
    return min((a, b), key=lambda c: (-c.activity_count, c.created_at, c.pk))


@transaction.atomic
def merge_suggestion_accept(
    *, workspace: Workspace, suggestion: MergeSuggestion, into: Contact | None = None, auto: bool = False,
) -> Contact:
    """Merge the suggested pair (into ``into`` when given, else ``merge_survivor``) and mark the
    suggestion accepted. Returns the surviving contact."""
    suggestion = MergeSuggestion.objects.select_for_update().get(pk=suggestion.pk, workspace=workspace)
    if suggestion.state == MergeSuggestion.State.ACCEPTED:
        raise ServiceError(f"suggestion {suggestion.pk} was accepted already")
    a, b = suggestion.contact_a, suggestion.contact_b
    if a.merged_into_id or b.merged_into_id:
        raise ServiceError("one of these contacts has been merged into another since")
    if into is not None and into.pk not in (a.pk, b.pk):
        raise ServiceError(f"contact {into.pk} is not one of this suggestion's two")
    target = into or merge_survivor(a, b)
    other = b if target.pk == a.pk else a
    survivor = contact_merge(workspace=workspace, target=target, other=other)
    MergeSuggestion.objects.filter(pk=suggestion.pk).update(
        state=MergeSuggestion.State.ACCEPTED, auto=auto, decided_at=timezone.now())
    return survivor


def merge_suggestion_reject(*, workspace: Workspace, suggestion: MergeSuggestion) -> MergeSuggestion:
    """Remember that these two are not one person (see the module's docstring for when the pair
    comes back)."""
    if suggestion.workspace_id != workspace.pk:
        raise ServiceError("suggestion is not in this workspace")
    if suggestion.state == MergeSuggestion.State.ACCEPTED:
        raise ServiceError(f"suggestion {suggestion.pk} was accepted: undo the merge instead")
    suggestion.state, suggestion.decided_at = MergeSuggestion.State.REJECTED, timezone.now()
    suggestion.save(update_fields=["state", "decided_at"])
    return suggestion
