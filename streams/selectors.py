"""Selectors: every read of more than one row goes through a function here."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, F, Min, Q, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleLessThan

from .identity import InvalidIdentity, normalize_email, normalize_phone
from .models import (
    Activity,
    Contact,
    Device,
    Identity,
    InboundItem,
    Participant,
    TimelineEntry,
    Workspace,
)


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


def timeline_page(
    *,
    kind: str,
    owner_id: int,
    before: Cursor | None = None,
    limit: int = 50,
    channel: str | None = None,
    direction: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Page:
    """One newest-first page of a timeline: a range scan on the keyset index, then the
    activities fetched by primary key. Costs the same at any depth."""
    if connection.vendor == "postgresql":
        return _timeline_page_pg(kind=kind, owner_id=owner_id, before=before, limit=limit, channel=channel,
                                 direction=direction, since=since, until=until)
    # Erased activities keep their timeline rows (feeds show them as tombstones); pages skip them.
    qs = TimelineEntry.objects.filter(kind=kind, owner_id=owner_id, activity__erased_at=None)
    qs = timeline_filters(qs, before=before, pk="activity_id", channel=channel, direction=direction,
                          since=since, until=until)
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


def _page_sql(where: str) -> str:
    te, a, d = TimelineEntry._meta.db_table, Activity._meta.db_table, Device._meta.db_table
    p, i = Participant._meta.db_table, Identity._meta.db_table
    acols = ", ".join(f"a.{connection.ops.quote_name(f.column)}" for f in _ACTIVITY_COLUMNS)
    dcols = ", ".join(f"d.{connection.ops.quote_name(f.column)}" for f in _DEVICE_COLUMNS)
    return f"""
        SELECT {acols}, {dcols},
            (SELECT json_agg(json_build_array(p.role, i.kind, i.value, i.display, i.contact_id, i.is_self)
                             ORDER BY p.id)
             FROM {p} p JOIN {i} i ON i.id = p.identity_id WHERE p.activity_id = a.id)
        FROM (
            SELECT te.occurred_at, te.activity_id FROM {te} te
            JOIN {a} x ON x.id = te.activity_id AND x.erased_at IS NULL
            WHERE te.kind = %s AND te.owner_id = %s {where}
            ORDER BY te.occurred_at DESC, te.activity_id DESC LIMIT %s
        ) AS page
        JOIN {a} a ON a.id = page.activity_id
        LEFT JOIN {d} d ON d.id = a.device_id
        ORDER BY page.occurred_at DESC, page.activity_id DESC
    """


def _timeline_page_pg(*, kind, owner_id, before, limit, channel, direction, since, until) -> Page:
    """The same page in one statement and no ORM query building: the keyset range scan, the
    activities, their devices and their participants (as JSON arrays). Three ORM queries cost
    ~5 ms of Python for ~1 ms of PostgreSQL."""
    import json

    from .rawdb import prepared_fetch, raw_cursor

    where, params = [], [kind, owner_id]
    if before is not None:
        where.append("AND (te.occurred_at, te.activity_id) < (%s, %s)")
        params += [before.occurred_at, before.activity_id]
    if channel:
        where.append("AND te.channel = %s")
        params.append(channel)
    if direction:
        where.append("AND te.direction = %s")
        params.append(direction)
    if since:
        where.append("AND te.occurred_at >= %s")
        params.append(since)
    if until:
        where.append("AND te.occurred_at < %s")
        params.append(until)
    params.append(limit + 1)
    rows = None
    if not (channel or direction or since or until):
        # The two shapes every page view and "older" click runs: prepared once per connection
        # (planning cost a third of the statement's server time), where connections persist.
        name = "mesh_timeline_first_v1" if before is None else "mesh_timeline_older_v1"
        rows = prepared_fetch(name, _dollar(_page_sql(" ".join(where))), params)
    if rows is None:
        with raw_cursor() as cur:
            cur.execute(_page_sql(" ".join(where)), params)
            rows = cur.fetchall()
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
        a = Activity.from_db(alias, anames, values)
        device_row = row[na : na + nd]
        a.device = Device.from_db(alias, dnames, list(device_row)) if device_row[0] is not None else None
        persons = row[-1]
        if isinstance(persons, str):
            persons = json.loads(persons)
        a.persons = [Person(*p) for p in persons or ()]
        activities.append(a)
    more = len(activities) > limit
    activities = activities[:limit]
    next_cursor = Cursor(activities[-1].occurred_at, activities[-1].pk) if more and activities else None
    return Page(activities, next_cursor)


def _dollar(sql: str) -> str:
    """``%s`` placeholders numbered ``$1``, ``$2``… for a server-side prepared statement."""
    parts = sql.split("%s")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


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


def timeline_for_contact(*, contact: Contact, before: Cursor | None = None, limit: int = 50, **filters) -> Page:
    return timeline_page(kind="c", owner_id=contact.pk, before=before, limit=limit, **filters)


def timeline_for_device(*, device: Device, before: Cursor | None = None, limit: int = 50, **filters) -> Page:
    return timeline_page(kind="d", owner_id=device.pk, before=before, limit=limit, **filters)


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
