"""The heat strip and the summaries count what pages show: an erased item leaves the strip, the
contact's and the device's counts and their "last activity" at once."""

from __future__ import annotations

import datetime as dt

import pytest

from streams.feed_tokens import activity_erase
from streams.heatmap import heat_weeks
from streams.models import Activity, Contact
from tests.factories import ingest_events, make_event

pytestmark = pytest.mark.django_db

ANA = {"kind": "phone", "value": "+14155550100", "role": "from"}
NOW = dt.datetime(2026, 5, 6, 12, tzinfo=dt.UTC)


def strip_total(contact: Contact) -> int:
    contact.refresh_from_db()
    summary = (contact.activity_count, contact.last_activity_at.isoformat())
    return sum(w.count for w in heat_weeks(kind="c", owner_id=contact.pk, summary=summary, now=NOW))


def test_erasing_an_item_takes_it_out_of_the_heat_strip(workspace, device):
    ingest_events(workspace, device, [
        make_event(str(n), occurred_at=f"2026-05-0{n}T10:00:00Z", participants=[ANA]) for n in (1, 2, 3)
    ])
    ana = Contact.objects.get(workspace=workspace, identities__value=ANA["value"])
    assert strip_total(ana) == 3  # and now cached under Ana's summary
    activity_erase(activity=Activity.objects.get(workspace=workspace, external_id__endswith="/2"))
    assert strip_total(ana) == 2
    assert sum(w.count for w in heat_weeks(kind="d", owner_id=device.pk, now=NOW)) == 2  # uncached


def test_erasing_an_item_takes_it_out_of_the_contact_and_device_summaries(workspace, device):
    ingest_events(workspace, device, [
        make_event("1", occurred_at="2026-05-01T10:00:00Z", participants=[ANA]),
        make_event("2", type="sms.received", occurred_at="2026-05-03T10:00:00Z", participants=[ANA]),
    ])
    ana = Contact.objects.get(workspace=workspace, identities__value=ANA["value"])
    assert (ana.activity_count, ana.channel_counts) == (2, {"device": 2})
    activity_erase(activity=Activity.objects.get(workspace=workspace, external_id__endswith="/2"))
    ana.refresh_from_db()
    device.refresh_from_db()
    assert (ana.activity_count, ana.channel_counts) == (1, {"device": 1})
    assert ana.last_activity_at == dt.datetime(2026, 5, 1, 10, tzinfo=dt.UTC)
    assert (device.activity_count, device.last_event_at) == (1, dt.datetime(2026, 5, 1, 10, tzinfo=dt.UTC))
