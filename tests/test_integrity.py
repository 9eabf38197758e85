"""Participants and timeline entries have no database foreign-key constraints (their checks
were over a third of the ingest's database time; see Participant in streams/models.py). These
tests walk every flow that writes or deletes them and check that none leaves a row pointing at
an activity or identity that is gone, and that the ORM still protects and cascades."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.db.models.deletion import ProtectedError

from streams.feed_tokens import activity_erase
from streams.models import Activity, Device, Identity, Participant, Source, TimelineEntry
from streams.reprocess import source_reprocess
from streams.services import contact_merge, contact_unmerge, source_create, source_sync
from tests.factories import ANA_MAIL, ANA_PHONE, ANA_WORK, BEN_PHONE, ingest_events, make_event

pytestmark = pytest.mark.django_db


def orphans() -> dict[str, int]:
    p, t, a, i = (m._meta.db_table for m in (Participant, TimelineEntry, Activity, Identity))
    with connection.cursor() as cur:
        cur.execute(f"""
            SELECT
              (SELECT count(*) FROM {p} x WHERE NOT EXISTS (SELECT 1 FROM {a} y WHERE y.id = x.activity_id)),
              (SELECT count(*) FROM {p} x WHERE NOT EXISTS (SELECT 1 FROM {i} y WHERE y.id = x.identity_id)),
              (SELECT count(*) FROM {t} x WHERE NOT EXISTS (SELECT 1 FROM {a} y WHERE y.id = x.activity_id))
        """)
        row = cur.fetchone()
    return dict(zip(("participant→activity", "participant→identity", "timeline→activity"), row, strict=True))


NONE = {"participant→activity": 0, "participant→identity": 0, "timeline→activity": 0}


def test_no_flow_leaves_orphans(workspace, device, tmp_path):
    ingest_events(workspace, device, [
        make_event("1", occurred_at="2026-05-01T10:00:00Z", participants=[ANA_PHONE]),
        make_event("2", type="meeting.attended", occurred_at="2026-05-02T10:00:00Z", participants=[ANA_MAIL, BEN_PHONE]),
        make_event("3", type="meeting.attended", occurred_at="2026-05-03T10:00:00Z", participants=[ANA_MAIL, ANA_WORK]),
    ])
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(make_event(f"f{i}", participants=[ANA_PHONE, BEN_PHONE])) for i in range(5)))
    source = source_create(workspace=workspace, connector="device", name="file", config={"path": str(path), "device": device.pk})
    source_sync(source=source)
    assert Participant.objects.count() >= 8 and TimelineEntry.objects.count() >= 8
    assert orphans() == NONE

    phone = Identity.objects.get(workspace=workspace, value="+14155550100").contact
    mail = Identity.objects.get(workspace=workspace, value="ana@example.com").contact
    contact_merge(workspace=workspace, target=phone, other=mail)
    assert orphans() == NONE
    contact_unmerge(workspace=workspace, contact=mail)
    assert orphans() == NONE

    source_reprocess(source=source)
    assert orphans() == NONE
    activity_erase(activity=Activity.objects.filter(workspace=workspace).first())
    assert orphans() == NONE

    # Identities stay protected by the ORM while they take part in anything.
    with pytest.raises(ProtectedError):
        Identity.objects.filter(workspace=workspace, value="+14155550101").delete()

    # Deleting a source or a device keeps their activities (SET_NULL) and everything on them.
    Source.objects.filter(pk=source.pk).delete()
    Device.objects.filter(pk=device.pk).delete()
    assert orphans() == NONE and Activity.objects.filter(workspace=workspace).count() == 8
    assert Participant.objects.filter(activity__workspace=workspace).count() == 15

    # Deleting an activity through the ORM takes its participants and timeline rows along.
    gone = Activity.objects.filter(workspace=workspace).order_by("pk").first()
    Activity.objects.filter(pk=gone.pk).delete()
    assert orphans() == NONE
    assert not Participant.objects.filter(activity_id=gone.pk).exists()
    assert not TimelineEntry.objects.filter(activity_id=gone.pk).exists()
