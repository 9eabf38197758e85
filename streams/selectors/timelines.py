"""Timelines read: a contact's or a device's activities newest first, page by page, and the
one rule of what a reader may see.

Pages, feeds, the live poll, the lifestream, search, the heat strip and exports all read
through here: ``visible_q`` (ORM) and ``visible_sql`` (raw statements) say "not erased" once,
``lifestream_activities`` adds "public", and ``activities_for_tier`` reads only the columns a
feed tier shows. ``timeline_scan_sql`` is the keyset range scan every raw timeline statement
is built on (the page here, the feed heads and the feed poll).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from typing import TypedDict, Unpack

from django.db import connection
from django.db.models import F, QuerySet, signals
from django.db.models.base import ModelState
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan

from ..models import (
    Activity,
    Contact,
    Device,
    FeedToken,
    Identity,
    Participant,
    TimelineEntry,
    Workspace,
)
from ..rawdb import prepared_fetch, prepared_rows, raw_cursor
from ..visibility import erased_q, visible_q, visible_sql
from .places import place_hidden_q


def timeline_entries(*, kind: str, owner_id: int, erased: bool = False) -> QuerySet[TimelineEntry]:
    """The rows of a timeline (``kind`` "c" contact, "d" device) whose activity is shown; with
    ``erased``, also those of erased activities (the feeds' tombstones)."""
    qs = TimelineEntry.objects.filter(kind=kind, owner_id=owner_id)
    return qs if erased else qs.filter(visible_q("activity__"))


def timeline_entries_to_count(*, kind: str, owner_id: int) -> QuerySet[TimelineEntry]:
    """``timeline_entries`` for counting a whole timeline: the same rows, the erased ones left
    out by id (a hashed handful from the partial index on erased activities) rather than by
    joining each row to its activity, so that a count stays an index-only scan (the heat strip
    of a contact with 100,000 items)."""
    erased_ids = Activity.objects.filter(erased_q()).values("pk")
    return TimelineEntry.objects.filter(kind=kind, owner_id=owner_id).exclude(activity_id__in=erased_ids)


def workspace_activities(*, workspace: Workspace | int) -> QuerySet[Activity]:
    """Every activity of a workspace that is shown (search, export, the HTML body view)."""
    return Activity.objects.filter(visible_q(), workspace=workspace)


def lifestream_activities(*, workspace: Workspace, erased: bool = False) -> QuerySet[Activity]:
    """A workspace's public activities: its lifestream page and feeds (on activity_public_idx);
    with ``erased``, also the erased ones (the feeds' tombstones). Places only from devices
    whose places are public (``place_hidden_q``)."""
    qs = Activity.objects.filter(workspace=workspace, visibility="public").exclude(place_hidden_q(workspace=workspace))
    return qs if erased else qs.filter(visible_q())


def timeline_scan_sql(*, columns: str, kind: str, owner: str, limit: str, where: str = "") -> str:
    """The newest-first keyset range scan of one timeline over its shown activities, as raw SQL:
    ``te`` the timeline rows, ``a`` their activities. ``kind``, ``owner`` and ``limit`` are
    placeholders (``%s``, ``$1``) or outer columns; ``where`` adds ``AND …`` conditions."""
    te, act = TimelineEntry._meta.db_table, Activity._meta.db_table
    return f"""SELECT {columns} FROM {te} te JOIN {act} a ON a.id = te.activity_id
        WHERE te.kind = {kind} AND te.owner_id = {owner} AND {visible_sql("a")} {where}
        ORDER BY te.occurred_at DESC, te.activity_id DESC LIMIT {limit}"""


class BadCursor(ValueError):
    """A paging cursor that did not come from us."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Keyset position: the (occurred_at, activity id) of the last row shown."""

    occurred_at: dt.datetime
    activity_id: int

    def encode(self) -> str:
        return f"{self.occurred_at.astimezone(dt.UTC).strftime('%Y%m%dT%H%M%S.%fZ')}_{self.activity_id}"

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        if not text:
            return None
        try:
            when, _, pk = text.partition("_")
            occurred = dt.datetime.strptime(when, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.UTC)
            return cls(occurred, int(pk))
        except (ValueError, TypeError):
            raise BadCursor(f"bad cursor {text[:40]!r}") from None


@dataclass(slots=True)
class Page:
    activities: list[Activity]
    next_cursor: Cursor | None


def keyset_before(at: str, pk: str, before: Cursor):
    return TupleLessThan(Tuple(F(at), F(pk)), (before.occurred_at, before.activity_id))


class PageFilters(TypedDict, total=False):
    """The filters a timeline or search page takes besides its keyset position."""

    channel: str | None
    direction: str | None
    since: dt.datetime | None
    until: dt.datetime | None


def timeline_filters(
    qs: QuerySet, *, before: Cursor | None, pk: str, channel: str | None = None, direction: str | None = None,
    since: dt.datetime | None = None, until: dt.datetime | None = None,
) -> QuerySet:
    """The page filters shared by timelines and searches, over rows that have ``occurred_at``,
    ``channel``, ``direction`` and the id column ``pk``."""
    if before is not None:
        # A row comparison, (occurred_at, pk) < (x, y): PostgreSQL uses it as an index bound,
        # so any depth costs the same; the equivalent OR form is only a filter.
        qs = qs.filter(keyset_before("occurred_at", pk, before))
    if channel:
        qs = qs.filter(channel=channel)
    if direction:
        qs = qs.filter(direction=direction)
    if since:
        qs = qs.filter(occurred_at__gte=since)
    if until:
        qs = qs.filter(occurred_at__lt=until)
    return qs


def timeline_page(
    *, kind: str, owner_id: int, before: Cursor | None = None, limit: int = 50, **filters: Unpack[PageFilters]
) -> Page:
    """One newest-first page of a timeline: a range scan on the keyset index, then the
    activities fetched by primary key. Costs the same at any depth."""
    if connection.vendor == "postgresql":
        return _timeline_page_pg(kind=kind, owner_id=owner_id, before=before, limit=limit, **filters)
    qs = timeline_filters(timeline_entries(kind=kind, owner_id=owner_id), before=before, pk="activity_id", **filters)
    # One statement: the keyset range scan on the timeline index joined to the activity rows
    # (then one more for the participants). Written with raw() because the ORM would order by
    # the activity's columns and lose the index order.
    entries_sql, params = qs.order_by("-occurred_at", "-activity_id").values("activity_id")[: limit + 1].query.sql_with_params()
    table = connection.ops.quote_name(Activity._meta.db_table)
    cols = ", ".join(
        f"a.{connection.ops.quote_name(f.column)}" for f in Activity._meta.concrete_fields if f.name != "raw"
    )
    sql = f"SELECT {cols} FROM ({entries_sql}) AS page JOIN {table} a ON a.id = page.activity_id"
    by_id = {a.pk: a for a in Activity.objects.raw(sql, params)}
    _attach(by_id)
    ordered = sorted(by_id.values(), key=lambda a: (a.occurred_at, a.pk), reverse=True)
    more = len(ordered) > limit
    activities = ordered[:limit]
    next_cursor = Cursor(activities[-1].occurred_at, activities[-1].pk) if more and activities else None
    return Page(activities, next_cursor)


_ACTIVITY_COLUMNS = [f for f in Activity._meta.concrete_fields if f.name != "raw"]
_DEVICE_COLUMNS = list(Device._meta.concrete_fields)
_ACTIVITY_JSON = [(i, f) for i, f in enumerate(_ACTIVITY_COLUMNS) if f.get_internal_type() == "JSONField"]


@functools.lru_cache(maxsize=64)  # one per filter shape: the text was rebuilt on every page view
def _page_sql(where: str) -> str:
    a, d = Activity._meta.db_table, Device._meta.db_table
    acols = ", ".join(f"a.{connection.ops.quote_name(f.column)}" for f in _ACTIVITY_COLUMNS)
    dcols = ", ".join(f"d.{connection.ops.quote_name(f.column)}" for f in _DEVICE_COLUMNS)
    scan = timeline_scan_sql(columns="te.occurred_at, te.activity_id", kind="%s", owner="%s", limit="%s",
                             where=where)
    return f"""
        SELECT {acols}, {dcols}, ({_persons_sql("a")})
        FROM ({scan}) AS page
        JOIN {a} a ON a.id = page.activity_id
        LEFT JOIN {d} d ON d.id = a.device_id
        ORDER BY page.occurred_at DESC, page.activity_id DESC
    """


def _persons_sql(alias: str) -> str:
    """The participants of activity ``alias`` as one JSON array of `Person` fields."""
    p, i = Participant._meta.db_table, Identity._meta.db_table
    return f"""SELECT coalesce(json_agg(json_build_array(p.role, i.kind, i.value, i.display, i.contact_id,
                                                          i.is_self) ORDER BY p.id), '[]')
               FROM {p} p JOIN {i} i ON i.id = p.identity_id WHERE p.activity_id = {alias}.id"""


# The page filters as conditions on the timeline rows (``timeline_filters`` in raw SQL).
_PAGE_FILTERS_SQL = {
    "channel": "AND te.channel = %s",
    "direction": "AND te.direction = %s",
    "since": "AND te.occurred_at >= %s",
    "until": "AND te.occurred_at < %s",
}


def _timeline_page_pg(*, kind, owner_id, before, limit, **filters: Unpack[PageFilters]) -> Page:
    """The same page in one statement and no ORM query building: the keyset range scan, the
    activities, their devices and their participants (as JSON arrays). Three ORM queries cost
    ~5 ms of Python for ~1 ms of PostgreSQL."""
    where, params = [], [kind, owner_id]
    if before is not None:
        where.append("AND (te.occurred_at, te.activity_id) < (%s, %s)")
        params += [before.occurred_at, before.activity_id]
    filtered = {name: value for name, value in filters.items() if value}
    for name, value in filtered.items():
        where.append(_PAGE_FILTERS_SQL[name])
        params.append(value)
    params.append(limit + 1)
    if filtered:  # as many shapes as filter combinations: planned each time
        with raw_cursor() as cur:
            cur.execute(_page_sql(" ".join(where)), params)
            rows = cur.fetchall()
    else:
        # The two shapes every page view and "older" click runs: prepared once per connection
        # (planning cost a third of the statement's server time), where connections persist.
        name = "mesh_timeline_first_v1" if before is None else "mesh_timeline_older_v1"
        rows = prepared_rows(name, _page_sql(" ".join(where)), params, server_binding=True)
    alias = connection.alias
    anames = [f.attname for f in _ACTIVITY_COLUMNS]
    dnames = [f.attname for f in _DEVICE_COLUMNS]
    na, nd = len(anames), len(dnames)
    activities = []
    for row in rows:
        values = list(row[:na])
        for i, field in _ACTIVITY_JSON:  # jsonb arrives as text (Django's loader on this connection)
            if isinstance(values[i], str):
                values[i] = field.from_db_value(values[i], None, connection)
        a = _from_db(Activity, alias, anames, values)
        device_row = row[na : na + nd]
        a.device = _from_db(Device, alias, dnames, device_row) if device_row[0] is not None else None
        a.persons = [Person(*p) for p in _json_value(row[-1]) or ()]
        activities.append(a)
    more = len(activities) > limit
    activities = activities[:limit]
    next_cursor = Cursor(activities[-1].occurred_at, activities[-1].pk) if more and activities else None
    return Page(activities, next_cursor)


def _from_db(model, alias: str, names: list[str], values) -> Activity | Device:
    """``model.from_db`` without ``Model.__init__``'s per-field setattr (half the selector's
    Python for a page of 50): the same instance, its columns in ``__dict__`` (one left out is
    deferred, as from_db leaves it). The ORM's path where init signals are listened to."""
    if signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
        return model.from_db(alias, names, list(values))
    obj = model.__new__(model)
    state = obj._state = ModelState()
    state.adding, state.db = False, alias
    obj.__dict__.update(zip(names, values, strict=True))
    return obj


@dataclass(frozen=True, slots=True)
class Person:
    """A participant of an activity as pages and feeds show it: role plus the identity's
    normalized value, display and contact. Built from plain rows (no model instances), which
    is most of what keeps a page of 50 activities at a few milliseconds."""

    role: str
    kind: str
    value: str
    display: str
    contact_id: int | None
    is_self: bool

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.value}"

    @property
    def name(self) -> str:
        return self.display or self.value

    @property
    def identity(self) -> Person:  # so code written for Participant.identity reads the same
        return self


def activities_by_ids(*, ids: list[int]) -> dict[int, Activity]:
    """Activities by id (without the raw payload), each with ``persons``: its participants as
    `Person` rows, in the order they were stored."""
    activities = {a.pk: a for a in Activity.objects.filter(pk__in=ids).defer("raw").select_related("device")}
    _attach(activities, devices=False)
    return activities


def _attach(activities: dict[int, Activity], *, devices: bool = True) -> None:
    """Give each activity ``persons`` (participants as plain rows) and, when asked, its device
    (one query each, whatever the page size)."""
    ids = list(activities)
    if devices:
        device_ids = {a.device_id for a in activities.values() if a.device_id}
        found = {d.pk: d for d in Device.objects.filter(pk__in=device_ids)} if device_ids else {}
        for a in activities.values():
            if a.device_id:
                a.device = found.get(a.device_id)
    for a in activities.values():
        a.persons = []
    rows = (
        Participant.objects.filter(activity_id__in=ids)
        .order_by("pk")
        .values_list("activity_id", "role", "identity__kind", "identity__value", "identity__display",
                     "identity__contact_id", "identity__is_self")
    )
    for activity_id, *fields in rows:
        activities[activity_id].persons.append(Person(*fields))


def timeline_for_contact(
    *, contact: Contact, before: Cursor | None = None, limit: int = 50, **filters: Unpack[PageFilters]
) -> Page:
    return timeline_page(kind="c", owner_id=contact.pk, before=before, limit=limit, **filters)


def timeline_for_device(
    *, device: Device, before: Cursor | None = None, limit: int = 50, **filters: Unpack[PageFilters]
) -> Page:
    return timeline_page(kind="d", owner_id=device.pk, before=before, limit=limit, **filters)


def timeline_since(*, kind: str, owner_id: int, after: Cursor, limit: int) -> list[Cursor]:
    """The positions of a timeline's shown items newer than ``after``, oldest first, at most
    ``limit`` (the live poll: one range scan on the timeline index)."""
    rows = (
        timeline_entries(kind=kind, owner_id=owner_id)
        .filter(TupleGreaterThan(Tuple(F("occurred_at"), F("activity_id")), (after.occurred_at, after.activity_id)))
        .order_by("occurred_at", "activity_id")
        .values_list("occurred_at", "activity_id")[:limit]
    )
    return [Cursor(*row) for row in rows]


def lifestream_page(*, workspace: Workspace, before: Cursor | None = None, limit: int = 100) -> Page:
    """A page of a workspace's public activities, newest first, each with ``persons``."""
    qs = lifestream_activities(workspace=workspace)
    if before is not None:
        qs = qs.filter(keyset_before("occurred_at", "pk", before))
    rows = list(qs.order_by("-occurred_at", "-id").values_list("occurred_at", "id")[: limit + 1])
    more, rows = len(rows) > limit, rows[:limit]
    by_id = activities_by_ids(ids=[pk for _, pk in rows])
    # Visibility is checked again on the rows read second, so that an item made private
    # between the two queries is not shown either.
    activities = [by_id[pk] for _, pk in rows if pk in by_id and by_id[pk].visibility == "public"]
    return Page(activities, Cursor(*rows[-1]) if more else None)




def _json_value(value):
    """A json/jsonb column read by a raw statement: text or already decoded, as the driver gives it."""
    return json.loads(value) if isinstance(value, str | bytes) else value


# --- activities as a feed tier shows them ------------------------------------------------------


@dataclass(slots=True)
class TierRow:
    """An activity as ``activities_for_tier`` reads it on PostgreSQL: the fields a feed item
    reads, with those the tier hides left empty."""

    id: int
    workspace_id: int
    dedup_key: str
    channel: str
    verb: str
    direction: str
    occurred_at: dt.datetime
    updated_at: dt.datetime
    subject: str
    text: str
    html: str
    attachments: list
    persons: list[Person]
    workspace: Workspace | None = None

    @property
    def pk(self) -> int:
        return self.id


_TIER_BASE_FIELDS = ["id", "workspace_id", "dedup_key", "channel", "verb", "direction", "occurred_at", "updated_at"]


def _tier_sql() -> str:
    # $2: the tier shows a subject or first line; $3: the tier shows the content.
    return f"""
        SELECT {", ".join(f"a.{name}" for name in _TIER_BASE_FIELDS)},
               CASE WHEN $2 THEN a.subject ELSE '' END, CASE WHEN $2 THEN a.text ELSE '' END,
               CASE WHEN $3 THEN a.html ELSE '' END, CASE WHEN $3 THEN a.attachments ELSE '[]'::jsonb END,
               ({_persons_sql("a")})
        FROM {Activity._meta.db_table} a WHERE a.id = ANY($1) AND {visible_sql("a")}
    """


def activities_for_tier(*, ids: list[int], tier: str) -> dict[int, Activity | TierRow]:
    """The shown activities among ``ids`` with only the columns ``tier`` shows (a metadata feed
    never reads a body), each with ``persons``: one prepared statement where prepared
    statements pay (see ``prepared_fetch``), else two ORM queries. An id erased since the
    caller read it is left out."""
    shows_subject, shows_content = tier != FeedToken.Tier.METADATA, tier == FeedToken.Tier.FULL
    rows = prepared_fetch("mesh_feed_activities_v2", _tier_sql(), [ids, shows_subject, shows_content])
    if rows is not None:
        return {
            fields[0]: TierRow(*fields, _json_value(attachments) or [], [Person(*p) for p in _json_value(persons)])
            for *fields, attachments, persons in rows
        }
    fields = list(_TIER_BASE_FIELDS)
    if shows_subject:
        fields += ["subject", "text"]
    if shows_content:
        fields += ["html", "attachments"]
    activities = {a.pk: a for a in Activity.objects.filter(visible_q(), pk__in=ids).only(*fields)}
    _attach(activities, devices=False)
    return activities
