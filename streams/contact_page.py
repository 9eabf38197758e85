"""The contact a page names, read for a member: one raw statement (prepared where connections
persist) in place of the ORM's four-way ``select_related`` query, whose compilation took ~2 ms
of Python per contact page view. Same rows, same related objects cached, same 404s."""

from __future__ import annotations

import functools

from django.db import connection
from django.http import Http404

from .models import Contact, ContactStrength, Identity, KeepInTouch, Membership, Source, Workspace
from .rawdb import instance_from_row, prepared_rows

# Each related model in the order its columns follow the contact's: (model, alias, join).
_RELATED = (
    (Workspace, "w", "JOIN {t} w ON w.id = c.workspace_id"),
    (Contact, "m", "LEFT JOIN {t} m ON m.id = c.merged_into_id"),
    (KeepInTouch, "k", "LEFT JOIN {t} k ON k.contact_id = c.id"),
    (ContactStrength, "s", "LEFT JOIN {t} s ON s.contact_id = c.id"),
)


@functools.cache
def _sql() -> str:
    columns = [f"c.{f.column}" for f in Contact._meta.concrete_fields]
    joins = []
    for model, alias, join in _RELATED:
        columns += [f"{alias}.{f.column}" for f in model._meta.concrete_fields]
        joins.append(join.format(t=model._meta.db_table))
    # Membership checked on every request (EXISTS, not a join: a row per contact either way).
    return (f"SELECT {', '.join(columns)} FROM {Contact._meta.db_table} c {' '.join(joins)} "
            f"WHERE c.id = %s AND EXISTS (SELECT 1 FROM {Membership._meta.db_table} p "
            f"WHERE p.workspace_id = c.workspace_id AND p.user_id = %s)")


def member_contact(contact_id: int, user_id: int) -> Contact:
    """The contact ``contact_id`` if ``user_id`` is a member of its workspace (else Http404),
    with its workspace, ``merged_into``, ``keep_in_touch`` and ``strength`` already attached
    (a missing one cached as missing, as ``select_related`` does)."""

    if not -2**63 <= contact_id < 2**63:  # the ORM finds nothing for an id out of the column's range
        raise Http404("No Contact matches the given query.")
    rows = prepared_rows("mesh_member_contact_v1", _sql(), [contact_id, user_id])
    if not rows:
        raise Http404("No Contact matches the given query.")
    row, start = rows[0], len(Contact._meta.concrete_fields)
    contact = instance_from_row(Contact, row[:start])
    for model, _alias, _join in _RELATED:
        end = start + len(model._meta.concrete_fields)
        values = row[start:end]
        related = None if values[model._meta.concrete_fields.index(model._meta.pk)] is None else \
            instance_from_row(model, values)
        start = end
        if model is Workspace:
            Contact.workspace.field.set_cached_value(contact, related)
        elif model is Contact:
            Contact.merged_into.field.set_cached_value(contact, related)
        else:  # a reverse one-to-one: cached both ways, as select_related leaves it
            descriptor = getattr(Contact, "keep_in_touch" if model is KeepInTouch else "strength")
            descriptor.related.set_cached_value(contact, related)
            if related is not None:
                descriptor.related.field.set_cached_value(related, contact)
    return contact


@functools.cache
def _identities_sql() -> str:
    columns = ", ".join(f.column for f in Identity._meta.concrete_fields)
    return f"SELECT {columns} FROM {Identity._meta.db_table} WHERE contact_id = %s ORDER BY kind, value"


@functools.cache
def _children_sql() -> str:
    columns = ", ".join(f.column for f in Contact._meta.concrete_fields)
    return f"SELECT {columns} FROM {Contact._meta.db_table} WHERE merged_into_id = %s ORDER BY id"


def contact_identities(contact: Contact) -> list[Identity]:
    """``selectors.contact_identities`` (same rows, same order) by a prepared statement: the
    ORM's query building was ~1 ms of the contact page's Python."""
    return [instance_from_row(Identity, row) for row in prepared_rows("mesh_contact_identities_v1", _identities_sql(), [contact.pk])]


def merged_children(contact: Contact) -> list[Contact]:
    """``contact.merged_children.order_by("pk")`` by a prepared statement (as above)."""
    return [instance_from_row(Contact, row) for row in prepared_rows("mesh_merged_children_v1", _children_sql(), [contact.pk])]


def sending_source_exists(workspace_id: int, connectors) -> bool:
    """Whether the workspace has a source of one of ``connectors`` (the SMS form's question):
    the ORM's ``exists()`` by a prepared statement on PostgreSQL (~0.5 ms of query building)."""
    connectors = sorted(connectors)
    if not connectors:
        return False
    if connection.vendor != "postgresql":
        return Source.objects.filter(workspace_id=workspace_id, connector__in=connectors).exists()
    sql = f"SELECT 1 FROM {Source._meta.db_table} WHERE workspace_id = %s AND connector = ANY(%s) LIMIT 1"
    return bool(prepared_rows("mesh_sending_source_v1", sql, [workspace_id, connectors]))
