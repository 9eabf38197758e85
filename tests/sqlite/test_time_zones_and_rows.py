"""Smoke on SQLite (the embedded default): time zones, the dense timeline's rows and people's
identities work on the demo data there too (issue 18 §1-3)."""

from __future__ import annotations

from streams.models import Contact, Device, UserPreference, Workspace

ANA_PHONE = "+14155550100"


def test_demo_pages_in_a_chosen_zone_with_rows_and_readable_identities(demo_client, demo):
    workspace = Workspace.objects.get(slug=demo["workspace"])
    ana = Contact.objects.get(workspace=workspace, merged_into=None, identities__value=ANA_PHONE)
    assert demo_client.post("/settings/time-zone/", {"scope": "browser", "time_zone": "Asia/Tokyo"}).status_code == 204
    assert UserPreference.objects.get(user__username=demo["username"]).time_zone == "Asia/Tokyo"

    body = demo_client.get(f"/contacts/{ana.pk}/").content.decode()
    assert "Asia/Tokyo</a> (JST)" in body
    assert "<bdi>(415) 555-0100</bdi>" in body and "<code>phone:" not in body
    assert '<article class="activity row ' in body  # the demo's calls and meetings are one-line rows
    assert "call.missed" not in body and "meeting.attended" not in body

    phone = Device.objects.filter(workspace=workspace, kind="phone").first()
    body = demo_client.get(f"/devices/{phone.pk}/").content.decode()
    assert "Battery " in body and "<dt>battery</dt>" not in body.split('class="timeline"')[1]
