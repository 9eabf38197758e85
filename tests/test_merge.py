"""Contact merge and unmerge rebuild exactly the timelines a from-scratch rebuild gives."""

from __future__ import annotations

import pytest

from streams.models import Contact, Identity, TimelineEntry
from streams.services import ServiceError, contact_merge, contact_unmerge
from streams.timelines import workspace_timelines_rebuild
from tests.factories import ANA_MAIL, ANA_PHONE, ANA_WORK, BEN_PHONE, ingest_events, make_event


def state(workspace):
    """Every contact timeline and summary, keyed by the contact's identities (ids of contacts
    are stable, but compare by meaning too)."""
    contacts = {}
    for c in Contact.objects.filter(workspace=workspace, merged_into=None, is_self=False):
        contacts[c.pk] = (
            sorted(Identity.objects.filter(contact=c).values_list("kind", "value")),
            sorted(TimelineEntry.objects.filter(kind="c", owner_id=c.pk).values_list("activity_id", "occurred_at", "channel", "direction")),
            c.activity_count, c.channel_counts, c.last_activity_at,
        )
    return contacts


def rebuilt(workspace):
    workspace_timelines_rebuild(workspace_id=workspace.pk)
    return state(workspace)


@pytest.fixture
def people(workspace, device):
    events = [
        make_event("1", occurred_at="2026-05-01T10:00:00Z", participants=[ANA_PHONE]),
        make_event("2", type="meeting.attended", occurred_at="2026-05-02T10:00:00Z", participants=[ANA_MAIL, BEN_PHONE]),
        make_event("3", type="meeting.attended", occurred_at="2026-05-03T10:00:00Z", participants=[ANA_MAIL, ANA_WORK]),
        make_event("4", occurred_at="2026-05-04T10:00:00Z", participants=[BEN_PHONE]),
        make_event("5", type="meeting.attended", occurred_at="2026-05-05T10:00:00Z", participants=[ANA_PHONE, ANA_MAIL]),
        make_event("6", type="note", occurred_at="2026-05-06T10:00:00Z", participants=[ANA_WORK]),
    ]
    ingest_events(workspace, device, events)

    def contact_of(kind, value):
        return Identity.objects.get(workspace=workspace, kind=kind, value=value).contact

    return {
        "phone": contact_of("phone", "+14155550100"),
        "mail": contact_of("email", "ana@example.com"),
        "work": contact_of("email", "ana@work.example"),
        "ben": contact_of("phone", "+14155550101"),
    }


def test_incremental_fanout_equals_a_from_scratch_rebuild(workspace, people):
    incremental = state(workspace)
    assert incremental == rebuilt(workspace)
    phone = incremental[people["phone"].pk]
    assert phone[2] == 2 and phone[3] == {"device": 2}


def test_merge_then_unmerge_equals_from_scratch_rebuild(workspace, people):
    original = state(workspace)
    merged = contact_merge(workspace=workspace, target=people["phone"], other=people["mail"])
    after_merge = state(workspace)
    assert after_merge == rebuilt(workspace)
    ana = after_merge[merged.pk]
    assert ana[0] == [("email", "ana@example.com"), ("phone", "+14155550100")]
    # events 1, 2, 3, 5: event 5 has both identities and appears once
    assert len(ana[1]) == 4 and ana[2] == 4
    assert people["mail"].pk not in after_merge
    assert not TimelineEntry.objects.filter(kind="c", owner_id=people["mail"].pk).exists()

    contact_merge(workspace=workspace, target=merged, other=people["work"])
    assert state(workspace)[merged.pk][2] == 5
    assert state(workspace) == rebuilt(workspace)

    # Unmerge the top-level contact: both merged contacts split off again.
    result = contact_unmerge(workspace=workspace, contact=merged)
    assert [c.pk for c in result] == [people["phone"].pk, people["mail"].pk, people["work"].pk]
    assert state(workspace) == original == rebuilt(workspace)


def test_unmerge_of_a_merged_contact_takes_its_own_merges_along(workspace, people):
    original = state(workspace)
    contact_merge(workspace=workspace, target=people["mail"], other=people["work"])
    contact_merge(workspace=workspace, target=people["phone"], other=people["mail"])
    # Split "mail" (with "work" still inside it) off "phone".
    result = contact_unmerge(workspace=workspace, contact=people["mail"])
    assert [c.pk for c in result] == [people["phone"].pk, people["mail"].pk]
    now = state(workspace)
    assert now == rebuilt(workspace)
    assert now[people["mail"].pk][0] == [("email", "ana@example.com"), ("email", "ana@work.example")]
    assert now[people["phone"].pk] == original[people["phone"].pk]
    contact_unmerge(workspace=workspace, contact=people["mail"])
    assert state(workspace) == original


def test_new_activity_after_merge_lands_on_the_survivor(workspace, device, people):
    survivor = contact_merge(workspace=workspace, target=people["phone"], other=people["mail"])
    ingest_events(workspace, device, [make_event("7", occurred_at="2026-06-01T10:00:00Z", participants=[ANA_MAIL])])
    assert state(workspace) == rebuilt(workspace)
    assert TimelineEntry.objects.filter(kind="c", owner_id=survivor.pk).count() == 5
    survivor.refresh_from_db()
    assert survivor.last_activity_at.isoformat() == "2026-06-01T10:00:00+00:00"


def test_merge_refuses_nonsense(workspace, other_workspace, people):
    with pytest.raises(ServiceError, match="itself"):
        contact_merge(workspace=workspace, target=people["ben"], other=people["ben"])
    stranger = Contact.objects.create(workspace=other_workspace, name="Stranger")
    with pytest.raises(ServiceError, match="workspace"):
        contact_merge(workspace=workspace, target=people["ben"], other=stranger)
    contact_merge(workspace=workspace, target=people["phone"], other=people["mail"])
    with pytest.raises(ServiceError, match="already merged"):
        contact_merge(workspace=workspace, target=people["ben"], other=people["mail"])
    with pytest.raises(ServiceError, match="nothing merged"):
        contact_unmerge(workspace=workspace, contact=people["ben"])
