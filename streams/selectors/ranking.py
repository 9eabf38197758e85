"""Reads of relationship strength and keep in touch: a contact's stored strength in words, the
contact list by strength, cadences, and the "going cold" list. The score's formula and what
counts are in ``streams.ranking``; read paths call ``ranking.strengths_current`` first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import F, Q, QuerySet

from ..models import (
    Contact,
    ContactStrength,
    Identity,
    KeepInTouch,
    KeepInTouchDefault,
    Workspace,
)
from ..ranking import (
    DEFAULT_CADENCES,
    FAINT,
    StrengthParts,
)
from .contacts import contact_search_term
from .timelines import BadCursor


def stored_parts(row: ContactStrength) -> StrengthParts:
    return StrengthParts(
        row.conversations, row.last_30, row.last_90, row.last_365, row.in_90, row.out_90, row.in_365, row.out_365,
        tuple(row.channels_90 or ()), row.channels_365, row.first_touch_at, row.last_touch_at,
    )


def strength_explained(row: ContactStrength | None) -> str:
    """The score in words, as the contact page and the going-cold list say it: "strong: 12
    conversations in 90 days, both ways, on 3 channels"."""
    if row is None:
        return "no conversations that count yet"
    return _explained(row.tier, row.last_90, row.in_90, row.out_90, row.channels_90, row.conversations)


def _explained(tier: str, last_90: int, in_90: int, out_90: int, channels_90: list, conversations: int) -> str:
    if not last_90:
        return f"{tier}: no conversations in 90 days ({conversations} before)"
    ways = "both ways" if in_90 and out_90 else ("only from them" if in_90 else "only from you")
    channels = len(channels_90 or ())
    noun = "conversation" if last_90 == 1 else "conversations"
    return f"{tier}: {last_90} {noun} in 90 days, {ways}, on {channels} channel{'s' if channels != 1 else ''}"


def contact_strength(*, contact: Contact) -> ContactStrength | None:
    return ContactStrength.objects.filter(contact_id=contact.pk).first()


# --- the contact list by strength -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StrengthCursor:
    """Keyset position in the list by strength: the (score, id) of the last contact shown; a
    contact without a strength row lists last, as score -1."""

    score: int
    contact_id: int

    @classmethod
    def after(cls, contact: Contact) -> StrengthCursor:
        return cls(contact_score(contact), contact.pk)

    def encode(self) -> str:
        return f"s{self.score}_{self.contact_id}"

    @classmethod
    def decode(cls, text: str | None) -> StrengthCursor | None:
        if not text:
            return None
        score, _, pk = text.removeprefix("s").partition("_")
        try:
            return cls(int(score), int(pk))
        except ValueError:
            raise BadCursor(f"bad cursor {text[:40]!r}") from None


def contact_score(contact: Contact) -> int:
    """The score of a contact from ``contacts_by_strength`` (-1: no strength row)."""
    score = getattr(contact, "rank_score", None)
    return -1 if score is None else score


def contacts_by_strength(
    *, workspace: Workspace, search: str = "", channel: str = "", before: StrengthCursor | None = None,
) -> QuerySet[Contact]:
    """Top-level contacts, strongest first (those without a score last, newest id first),
    searched and filtered as ``contacts_list``."""
    qs = Contact.objects.filter(workspace=workspace, merged_into=None, is_self=False)
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
    qs = qs.annotate(rank_score=F("strength__score"))
    if before is not None:
        if before.score < 0:
            qs = qs.filter(rank_score=None, pk__lt=before.contact_id)
        else:
            qs = qs.filter(Q(rank_score__lt=before.score) | Q(rank_score=before.score, pk__lt=before.contact_id)
                           | Q(rank_score=None))
    return (qs.select_related("strength").order_by(F("rank_score").desc(nulls_last=True), "-pk")
            .prefetch_related("identities"))


# --- keep in touch -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cadence:
    every_days: int
    at_most_days: int
    own: bool  # set on the contact (else the workspace's default for its tier)


def tier_cadences(*, workspace: Workspace) -> dict[str, tuple[int, int] | None]:
    """The workspace's cadence per tier: its own rows over DEFAULT_CADENCES."""
    cadences = dict(DEFAULT_CADENCES)
    for row in KeepInTouchDefault.objects.filter(workspace=workspace):
        cadences[row.tier] = (row.every_days, row.at_most_days) if row.every_days else None
    return cadences


def contact_cadence(*, contact: Contact, tier: str | None = None,
                    cadences: dict[str, tuple[int, int] | None] | None = None) -> Cadence | None:
    own = KeepInTouch.objects.filter(contact_id=contact.pk).first()
    if own is not None:
        return Cadence(own.every_days, own.at_most_days, True)
    cadences = cadences if cadences is not None else tier_cadences(workspace=contact.workspace)
    pair = cadences.get(tier or FAINT)
    return Cadence(pair[0], pair[1], False) if pair else None


@dataclass(frozen=True, slots=True)
class ColdEntry:
    """A contact past its cadence: ``due_at`` = last touch + the ideal interval, ``cold_at`` =
    last touch + the longest; ``urgency`` orders the list (see going_cold)."""

    contact_id: int
    name: str
    strength: int
    tier: str
    last_touch_at: dt.datetime
    due_at: dt.datetime
    cold_at: dt.datetime
    every_days: int
    at_most_days: int
    own_cadence: bool
    urgency: float
    state: str  # "due": past the ideal date; "cold": past the longest interval too
    explained: str

    def as_json(self) -> dict:
        return {
            "id": self.contact_id, "name": self.name, "strength": self.strength, "tier": self.tier,
            "last_touch_at": self.last_touch_at, "due_at": self.due_at, "cold_at": self.cold_at,
            "state": self.state, "cadence": {"every_days": self.every_days, "at_most_days": self.at_most_days,
                                             "own": self.own_cadence},
        }


def going_cold(*, workspace: Workspace, now: dt.datetime, limit: int | None = None) -> list[ColdEntry]:
    """Contacts past their cadence (their own, else their tier's), most urgent first: urgency =
    days past the ideal date / the ideal interval * (1 + strength / 100), so being twice as
    late counts more than being somewhat stronger. Ties: stronger first, then lower id."""
    cadences = tier_cadences(workspace=workspace)
    own = dict(KeepInTouch.objects.filter(contact__workspace=workspace, contact__merged_into=None)
               .values_list("contact_id", "every_days"))
    own_most = dict(KeepInTouch.objects.filter(contact_id__in=list(own)).values_list("contact_id", "at_most_days"))
    tiers_with = [t for t, pair in cadences.items() if pair]
    shortest = min([pair[0] for pair in cadences.values() if pair] + list(own.values()), default=None)
    if shortest is None:
        return []
    rows = (
        ContactStrength.objects.filter(workspace=workspace, contact__merged_into=None, contact__is_self=False,
                                       last_touch_at__lt=now - dt.timedelta(days=shortest))
        .filter(Q(tier__in=tiers_with) | Q(contact_id__in=list(own)))
        .values_list("contact_id", "contact__name", "score", "tier", "last_touch_at", "last_90", "in_90", "out_90",
                     "channels_90", "conversations")
    )
    candidates = []
    for contact_id, name, score, tier, last_touch, *explain in rows:
        if contact_id in own:
            every, most, is_own = own[contact_id], own_most[contact_id], True
        elif cadences.get(tier):
            (every, most), is_own = cadences[tier], False
        else:
            continue
        due = last_touch + dt.timedelta(days=every)
        if due < now:
            urgency = (now - due) / dt.timedelta(days=every) * (1 + score / 100)
            candidates.append((-urgency, -score, contact_id, name, tier, last_touch, due, every, most, is_own, explain))
    candidates.sort(key=lambda c: c[:3])
    # Only what is shown is dressed up (thousands may be overdue in a workspace nobody tends).
    entries = [
        ColdEntry(contact_id, name or f"Contact {contact_id}", -neg_score, tier, last_touch, due,
                  last_touch + dt.timedelta(days=most), every, most, is_own, -neg_urgency,
                  "cold" if now > last_touch + dt.timedelta(days=most) else "due", _explained(tier, *explain))
        for neg_urgency, neg_score, contact_id, name, tier, last_touch, due, every, most, is_own, explain
        in (candidates[:limit] if limit else candidates)
    ]
    return entries
