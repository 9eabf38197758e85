"""Contact merge and unmerge rebuild exactly the timelines a from-scratch rebuild gives."""

from __future__ import annotations

import datetime as dt

import pytest

from streams.feed_tokens import activity_erase
from streams.models import Activity, Contact, Identity, TimelineEntry
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
    """The state after a rebuild from nothing (the rebuild writes only differences: emptied
    first, it cannot take a wrong row for a right one)."""
    contacts = Contact.objects.filter(workspace=workspace).values("pk")
    TimelineEntry.objects.filter(kind="c", owner_id__in=contacts).delete()
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


def test_merge_keeps_the_survivors_rows_and_rebuilds_exactly_what_changed(workspace, people):
    # The rebuild writes the difference: the survivor's right rows stay as they are (same ids),
    # and a row gone stale (its activity's time and channel changed behind it), a row nothing
    # wants and a missing row come out as a rebuild from nothing makes them.
    survivor = people["phone"].pk
    rows = TimelineEntry.objects.filter(kind="c", owner_id=survivor).order_by("pk")
    stale, missing = rows[0], rows[1]
    TimelineEntry.objects.filter(pk=stale.pk).update(occurred_at=stale.occurred_at - dt.timedelta(days=9), channel="sms")
    missing.delete()
    stray = Activity.objects.filter(workspace=workspace).exclude(
        participants__identity__contact_id__in=[survivor, people["mail"].pk]).first()
    TimelineEntry.objects.create(kind="c", owner_id=survivor, activity=stray, occurred_at=stray.occurred_at,
                                 channel=stray.channel, direction=stray.direction)
    kept = set(rows.exclude(activity=stray).values_list("pk", flat=True))
    contact_merge(workspace=workspace, target=people["phone"], other=people["mail"])
    after = state(workspace)
    assert kept <= set(rows.values_list("pk", flat=True))
    assert not rows.filter(activity=stray).exists()
    assert after == rebuilt(workspace)


def test_a_rebuild_counts_no_erased_item_but_keeps_its_row(workspace, people):
    ana = people["phone"]
    erased = Activity.objects.filter(timeline_entries__kind="c", timeline_entries__owner_id=ana.pk) \
        .order_by("-occurred_at").first()
    activity_erase(activity=erased)
    merged = contact_merge(workspace=workspace, target=ana, other=people["mail"])
    assert TimelineEntry.objects.filter(kind="c", owner_id=merged.pk, activity=erased).exists()
    assert (merged.activity_count, merged.channel_counts) == (3, {"device": 3})
    assert merged.last_activity_at < erased.occurred_at
    assert state(workspace) == rebuilt(workspace)


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
