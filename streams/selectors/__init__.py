"""Selectors: every read of more than one row goes through a function here (services write).

- ``timelines``: a contact's or device's timeline, page by page, and the one rule of what a
  reader may see (``visible_q``/``visible_sql``), which every page, feed, live poll, lifestream,
  search and export composes.
- ``contacts``: the contact list and its search, identities, merge trees, pending pushes.
- ``search``: full-text search pages over the timelines' visible activities.
- ``devices``: a device's presence (the one rule every page and command shows) and its held seqs.
- ``sources``: what a source stored and its last run, for the connector conformance kit.

The names below are the import path code outside ``streams`` uses (``streams.selectors.<name>``).
"""

from ..visibility import visible_q, visible_sql
from .contacts import (
    NO_PENDING,
    PHONE_QUERY_RE,
    ContactCursor,
    contact_identities,
    contact_search_term,
    contact_subtree_ids,
    contacts_list,
    inbound_pending,
    workspaces_for_user,
)
from .devices import Presence, device_presence, device_seq_status, owntracks_friends
from .search import (
    highlight_terms,
    search_backlog,
    search_terms,
    timeline_search_page,
    workspace_search_page,
)
from .sources import (
    source_activity_external_ids,
    source_import_failures,
    source_latest_run,
    timeline_entries_total,
)
from .timelines import (
    BadCursor,
    Cursor,
    Page,
    Person,
    activities_by_ids,
    keyset_before,
    lifestream_activities,
    lifestream_page,
    timeline_entries,
    timeline_entries_to_count,
    timeline_filters,
    timeline_for_contact,
    timeline_for_device,
    timeline_page,
    timeline_since,
    workspace_activities,
)

__all__ = [
    "NO_PENDING", "PHONE_QUERY_RE", "BadCursor", "ContactCursor", "Cursor", "Page", "Person", "activities_by_ids",
    "contact_identities", "contact_search_term", "contact_subtree_ids", "contacts_list", "highlight_terms",
    "inbound_pending", "keyset_before", "lifestream_activities", "lifestream_page", "search_backlog", "search_terms",
    "timeline_entries", "timeline_entries_to_count", "timeline_filters", "timeline_for_contact",
    "timeline_for_device", "timeline_page", "timeline_search_page", "timeline_since", "visible_q", "visible_sql",
    "workspace_activities", "workspace_search_page",
    "workspaces_for_user",
    "Presence", "device_presence", "device_seq_status", "owntracks_friends",
    "source_activity_external_ids", "source_import_failures", "source_latest_run", "timeline_entries_total",
]
