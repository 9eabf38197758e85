"""Reads of relationship strength and keep in touch: a contact's stored strength in words, the
contact list by strength, cadences, and the "going cold" list. The score's formula and what
counts are in ``streams.ranking``; read paths call ``ranking.strengths_current`` first.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from django.db import connection
from django.db.models import F, IntegerField, Q, QuerySet, Value

from ..models import (
    Contact,
    ContactStrength,
    KeepInTouch,
    KeepInTouchDefault,
    Workspace,
)
from ..ranking import (
    DEFAULT_CADENCES,
    FAINT,
)
from .contacts import contacts_matching
from .timelines import BadCursor


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
) -> StrengthList:
    """Top-level contacts, strongest first (those without a score last, newest id first),
    searched and filtered as ``contacts_list``; slice it as a queryset. Scored contacts are
    read in the order of the strength index (a join from the contact side sorted every contact
    of the workspace per page), then the unscored ones."""
    qs = contacts_matching(workspace=workspace, search=search, channel=channel)
    scored = qs.filter(strength__workspace=workspace).annotate(rank_score=F("strength__score"))
    unscored = qs.filter(strength__isnull=True).annotate(rank_score=Value(None, output_field=IntegerField()))
    if before is not None:
        if before.score < 0:
            scored, unscored = scored.none(), unscored.filter(pk__lt=before.contact_id)
        else:
            scored = scored.filter(Q(strength__score__lt=before.score)
                                   | Q(strength__score=before.score, pk__lt=before.contact_id))
    return StrengthList(
        scored.select_related("strength").order_by("-strength__score", "-pk").prefetch_related("identities"),
        # select_related: the LEFT JOIN of the filter already, and the template's c.strength a
        # cached None instead of one query per contact
        unscored.select_related("strength").order_by("-pk").prefetch_related("identities"),
    )


class StrengthList:
    """The scored contacts then the unscored ones, sliced and iterated as one list (and, as a
    queryset, taking ``prefetch_related`` and ``values_list``)."""

    def __init__(self, scored: QuerySet[Contact], unscored: QuerySet[Contact]):
        self.scored, self.unscored = scored, unscored

    def __getitem__(self, item: slice) -> list[Contact]:
        stop = item.stop
        rows = list(self.scored[:stop])
        if stop is None or len(rows) < stop:
            rows += list(self.unscored[: None if stop is None else stop - len(rows)])
        return rows[item.start or 0:]

    def __iter__(self):
        return iter(self[:])

    def prefetch_related(self, *lookups) -> StrengthList:
        return StrengthList(self.scored.prefetch_related(*lookups), self.unscored.prefetch_related(*lookups))

    def values_list(self, *fields) -> StrengthList:
        return StrengthList(self.scored.values_list(*fields), self.unscored.values_list(*fields))


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
    try:
        own = contact.keep_in_touch  # read with the contact where the page selected it related
    except KeepInTouch.DoesNotExist:
        own = None
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
    days_since: int  # whole days from the last touch to the list's ``now``

    def as_json(self) -> dict:
        return {
            "id": self.contact_id, "name": self.name, "strength": self.strength, "tier": self.tier,
            "last_touch_at": self.last_touch_at, "due_at": self.due_at, "cold_at": self.cold_at,
            "state": self.state, "cadence": {"every_days": self.every_days, "at_most_days": self.at_most_days,
                                             "own": self.own_cadence},
        }


class ColdList(list):
    """The entries shown, most urgent first; ``total``: how many are overdue in all."""

    total = 0


def going_cold(*, workspace: Workspace, now: dt.datetime, limit: int | None = None,
               cadences: dict[str, tuple[int, int] | None] | None = None) -> ColdList:
    """Contacts past their cadence (their own, else their tier's), most urgent first: urgency =
    days past the ideal date / the ideal interval * (1 + strength / 100), so being twice as
    late counts more than being somewhat stronger. Ties: stronger first, then lower id.
    Ranked and cut to ``limit`` by one statement, the same on PostgreSQL and SQLite; names and
    parts are read for the shown ones only (thousands may be overdue in a workspace nobody tends)."""
    cadences = cadences if cadences is not None else tier_cadences(workspace=workspace)
    shown = _cold_ranked(workspace, cadences, now, limit)
    details = _cold_details([r[0] for r in shown])
    entries = ColdList()
    entries.total = shown[0][-1] if shown else 0
    for contact_id, urgency, score, last_touch, every, most, own, _total in shown:
        name, tier, *explain = details[contact_id]
        last_touch = _aware(last_touch)
        cold_at = last_touch + dt.timedelta(days=most)
        entries.append(ColdEntry(
            contact_id, name or f"Contact {contact_id}", score, tier, last_touch,
            last_touch + dt.timedelta(days=every), cold_at, every, most, bool(own), urgency,
            "cold" if now > cold_at else "due", _explained(tier, *explain), (now - last_touch).days))
    return entries


def _cold_details(contact_ids: list[int]) -> dict[int, tuple]:
    """(name, tier, last_90, in_90, out_90, channels_90, conversations) per shown contact, by one
    raw statement: building the ORM's (an IN of up to 100 ids) cost more than running it. The
    name by one index probe per entry: as a join, PostgreSQL hashed every contact of the
    workspace once a hundred entries were shown (the feed's)."""
    if not contact_ids:
        return {}
    qn = connection.ops.quote_name
    sql = f"""
        SELECT s.contact_id, (SELECT c.name FROM {qn(Contact._meta.db_table)} c WHERE c.id = s.contact_id),
               s.tier, s.last_90, s.in_90, s.out_90, s.channels_90, s.conversations
        FROM {qn(ContactStrength._meta.db_table)} s WHERE s.contact_id IN ({", ".join(["%s"] * len(contact_ids))})"""
    with connection.cursor() as cur:
        cur.execute(sql, contact_ids)
        # channels_90 arrives as JSON text from a raw cursor (as the ORM's JSONField reads it)
        return {contact_id: (name, tier, last_90, in_90, out_90, json.loads(channels or "[]"), conversations)
                for contact_id, name, tier, last_90, in_90, out_90, channels, conversations in cur.fetchall()}


def _aware(value: dt.datetime | str) -> dt.datetime:
    """A timestamp from raw SQL: aware from PostgreSQL, naive UTC text from SQLite."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# ContactStrength rows exist only for top-level contacts that are not the owner (a merge empties
# the merged contact's timeline, and with it its row): no join with Contact is needed to rank.


def _cold_ranked(workspace: Workspace, cadences: dict[str, tuple[int, int] | None], now: dt.datetime,
                 limit: int | None) -> list[tuple]:
    """(contact id, urgency, score, last touch, every, at most, own?, number overdue) of the
    overdue contacts, most urgent first, at most ``limit``. The tiers' cadences are a CASE
    (a handful of tiers), so that SQLite runs the same statement as PostgreSQL."""
    qn = connection.ops.quote_name
    tiers = [(tier, pair) for tier, pair in cadences.items() if pair]

    def by_tier(i: int) -> tuple[str, list]:
        if not tiers:
            return "NULL", []
        return "CASE s.tier " + " ".join("WHEN %s THEN %s" for _ in tiers) + " END", [
            v for tier, pair in tiers for v in (tier, pair[i])]

    every_sql, every_params = by_tier(0)
    most_sql, most_params = by_tier(1)
    if connection.vendor == "postgresql" and limit and tiers:
        return _cold_ranked_pruned(workspace, tiers, every_sql, every_params, most_sql, most_params, now, limit)
    if connection.vendor == "postgresql":
        # date_part, a float8: EXTRACT's numeric arithmetic over every overdue row cost a quarter of the statement
        days_since = "date_part('epoch', %s::timestamptz - s.last_touch_at) / 86400"
    else:
        days_since = "(julianday(%s) - julianday(s.last_touch_at))"
    sql = f"""
        SELECT contact_id, (days - every) / every * (1 + CAST(score AS DOUBLE PRECISION) / 100) AS urgency, score, last_touch_at,
               every, most, own, COUNT(*) OVER ()
        FROM (SELECT s.contact_id, s.score, s.last_touch_at, {days_since} AS days,
                     COALESCE(k.every_days, {every_sql}) AS every, COALESCE(k.at_most_days, {most_sql}) AS most,
                     k.contact_id IS NOT NULL AS own
              FROM {qn(ContactStrength._meta.db_table)} s
              LEFT JOIN {qn(KeepInTouch._meta.db_table)} k ON k.contact_id = s.contact_id
              WHERE s.workspace_id = %s AND s.last_touch_at IS NOT NULL) AS cadenced
        WHERE every IS NOT NULL AND days > every
        ORDER BY urgency DESC, score DESC, contact_id
    """ + ("LIMIT %s" if limit else "")
    params = [connection.ops.adapt_datetimefield_value(now), *every_params, *most_params, workspace.pk]
    with connection.cursor() as cur:
        cur.execute(sql, params + ([limit] if limit else []))
        return cur.fetchall()


def _cold_ranked_pruned(workspace: Workspace, tiers: list, every_sql: str, every_params: list, most_sql: str,
                        most_params: list, now: dt.datetime, limit: int) -> list[tuple]:
    """``_cold_ranked`` on PostgreSQL for a page: the same rows, scoring a few candidates
    instead of every contact (8,081 overdue of 10,000 cost ~12 ms). Urgency = (days / every - 1)
    * k with k = 1 + score / 100 <= kmax, the tier's highest (read from strength_rank_idx; the
    workspace's highest would let ten times as many candidates through), so a contact of a tier
    can only beat a bound ``u`` if its last touch is older than every * (1 + u / kmax) days:
    ``u`` is the ``limit``-th urgency among each tier's ``limit`` oldest last touches (read from
    strength_cold_idx) and the contacts with a cadence of their own (always candidates). The
    number overdue is counted from the index, per tier, corrected for the contacts with their
    own cadence."""
    qn = connection.ops.quote_name
    st, kt = qn(ContactStrength._meta.db_table), qn(KeepInTouch._meta.db_table)
    values = ", ".join("(%s, %s::int)" for _ in tiers)
    values_params = [v for tier, pair in tiers for v in (tier, pair[0])]
    cols = "s.contact_id, s.score, s.last_touch_at, s.tier"

    def ranked(rows: str) -> str:  # the statement of _cold_ranked, over ``rows`` (columns: cols)
        return f"""
            SELECT contact_id, (days - every) / every * (1 + CAST(score AS DOUBLE PRECISION) / 100) AS urgency,
                   score, last_touch_at, every, most, own
            FROM (SELECT s.contact_id, s.score, s.last_touch_at,
                         date_part('epoch', %s::timestamptz - s.last_touch_at) / 86400 AS days,
                         COALESCE(k.every_days, {every_sql}) AS every, COALESCE(k.at_most_days, {most_sql}) AS most,
                         k.contact_id IS NOT NULL AS own
                  FROM {rows} s LEFT JOIN {kt} k ON k.contact_id = s.contact_id) AS cadenced
            WHERE every IS NOT NULL AND days > every"""

    ranked_params = [now, *every_params, *most_params]
    # cut: a tier's highest score only where the tier has anyone (CASE, a probe of
    # strength_cold_idx first): for an empty tier the scan in score order would read the whole
    # workspace.
    # OFFSET 0 keeps each tier's scan a range scan of strength_cold_idx (not a join over every row)
    sql = f"""
        WITH tiers AS MATERIALIZED (
            SELECT tier, every, %s::timestamptz - make_interval(secs => every * 86400.0) AS due_before
            FROM (VALUES {values}) AS v (tier, every)),
        own AS MATERIALIZED (SELECT {cols} FROM {kt} k JOIN {st} s ON s.contact_id = k.contact_id
                             WHERE s.workspace_id = %s AND s.last_touch_at IS NOT NULL),
        pool AS (SELECT o.* FROM tiers t CROSS JOIN LATERAL (
                     SELECT {cols} FROM {st} s WHERE s.workspace_id = %s AND s.tier = t.tier
                     AND s.last_touch_at IS NOT NULL ORDER BY s.last_touch_at LIMIT %s) o
                 UNION SELECT * FROM own),
        bound AS MATERIALIZED (
            SELECT COALESCE((SELECT urgency FROM ({ranked("pool")}) r ORDER BY urgency DESC OFFSET %s LIMIT 1), 0) AS u),
        cut AS MATERIALIZED (
            SELECT t.tier, %s::timestamptz - make_interval(secs => t.every * 86400.0 * (1 + b.u / (
                       CASE WHEN (SELECT s.last_touch_at FROM {st} s WHERE s.workspace_id = %s AND s.tier = t.tier
                                  AND s.last_touch_at IS NOT NULL ORDER BY s.last_touch_at LIMIT 1) IS NOT NULL
                       THEN (SELECT 1 + CAST(s.score AS DOUBLE PRECISION) / 100 FROM {st} s
                             WHERE s.workspace_id = %s AND s.tier = t.tier AND s.last_touch_at IS NOT NULL
                             ORDER BY s.score DESC LIMIT 1) END)) - 1) AS before
            FROM tiers t CROSS JOIN bound b),
        candidates AS (SELECT o.* FROM cut c CROSS JOIN LATERAL (
                           SELECT {cols} FROM {st} s WHERE s.workspace_id = %s AND s.tier = c.tier
                           AND s.last_touch_at < c.before OFFSET 0) o
                       UNION SELECT * FROM own),
        overdue AS (SELECT (SELECT COUNT(*) FROM tiers t CROSS JOIN LATERAL (
                                SELECT 1 FROM {st} s WHERE s.workspace_id = %s AND s.tier = t.tier
                                AND s.last_touch_at < t.due_before OFFSET 0) c)
                           - (SELECT COUNT(*) FROM own s JOIN tiers t ON t.tier = s.tier
                              WHERE s.last_touch_at < t.due_before)
                           + (SELECT COUNT(*) FROM ({ranked("own")}) r) AS n)
        SELECT r.*, (SELECT n FROM overdue) FROM ({ranked("candidates")}) r
        ORDER BY urgency DESC, score DESC, contact_id LIMIT %s
    """
    params = [now, *values_params, workspace.pk, workspace.pk, limit, *ranked_params, limit - 1, now,
              workspace.pk, workspace.pk, workspace.pk, workspace.pk, *ranked_params, *ranked_params, limit]
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()
