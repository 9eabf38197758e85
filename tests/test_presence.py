"""Presence: one rule (``streams.selectors.device_presence``) behind the device page, the
device list and ``mesh_device list``: online while heard from within
``MESH_DEVICE_OFFLINE_AFTER_SECONDS``, offline after its MQTT last will or that much silence,
last seen from its last contact or its newest event, battery and last place from its state."""

from __future__ import annotations

import datetime as dt
import re

from streams.devices import device_offline, device_push_lock, device_push_record
from streams.models import Device
from streams.selectors import device_presence
from streams.services import device_revoke
from tests.factories import ingest_events, make_event
from tests.fakes.cli import RFC3339_Z, run_json

NOW = dt.datetime.now(dt.UTC)


def _seen(device, at) -> None:
    """The device heard from at ``at``, as each push records it."""
    device_push_record(device=device, items=[], seq_high=device_push_lock(device=device), seen_at=at)


def _page(client, device) -> str:
    response = client.get(f"/devices/{device.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def _facts(body: str) -> dict[str, str]:
    """The Status card's facts, as text."""
    return {dt_: re.sub(r"<[^>]+>", "", dd).strip()
            for dt_, dd in re.findall(r"<dt>([^<]+)</dt><dd>(.*?)</dd>", body, re.S)}


def test_a_device_known_only_from_its_events_is_seen_then_on_every_line(member_client, workspace, device):
    """The page said "seen 1 week ago" at the top and "last seen: never" below it: a device whose
    events were imported, which never contacted Mesh itself."""
    week_ago = NOW - dt.timedelta(days=7)
    ingest_events(workspace, device, [make_event("old", type="note", occurred_at=week_ago.isoformat())])
    device.refresh_from_db()
    assert device.last_seen_at is None and device.last_event_at is not None
    body = _page(member_client, device)
    assert "never" not in _facts(body)["last seen"]
    assert _facts(body)["last seen"] == "1\xa0week ago"
    assert "· seen" in body and "1\xa0week ago" in body.split("· seen", 1)[1][:200]
    presence = device_presence(device=device)
    assert (presence.state, presence.reason, presence.last_seen) == ("offline", "silent", device.last_event_at)
    listing = member_client.get("/devices/").content.decode()
    assert "seen <time" in listing and "seen never" not in listing
    row = run_json("mesh_device", "list", "--workspace", "acme")[0]
    assert row["presence"] == "offline" and RFC3339_Z.match(row["last_seen_at"])


def test_silence_longer_than_the_setting_is_offline(settings, device):
    Device.objects.filter(pk=device.pk).update(last_seen_at=NOW - dt.timedelta(minutes=20))
    device.refresh_from_db()
    assert device_presence(device=device, now=NOW).state == "offline"
    settings.MESH_DEVICE_OFFLINE_AFTER_SECONDS = 3600
    assert device_presence(device=device, now=NOW).state == "online"


def test_a_last_will_is_offline_until_the_device_is_heard_again(member_client, device):
    _seen(device, NOW - dt.timedelta(minutes=2))
    device_offline(device=device, at=NOW - dt.timedelta(minutes=1))
    device.refresh_from_db()
    presence = device_presence(device=device, now=NOW)
    assert (presence.state, presence.reason) == ("offline", "last will")
    assert '<li class="presence presence-offline">' in _page(member_client, device)
    assert "(last will)" in _page(member_client, device)
    _seen(device, NOW)
    device.refresh_from_db()
    assert device_presence(device=device, now=NOW).state == "online"
    # An older will delivered late does not undo what came after it.
    device_offline(device=device, at=NOW - dt.timedelta(minutes=5))
    device.refresh_from_db()
    assert device_presence(device=device, now=NOW).state == "online"


def test_never_seen_and_revoked(device):
    assert device_presence(device=device).state == "never seen"
    device_revoke(device=device)
    device.refresh_from_db()
    assert device_presence(device=device).state == "revoked"


def test_battery_and_place_agree_on_the_page_the_list_and_the_command(member_client, workspace, device):
    ingest_events(workspace, device, [
        make_event("b1", type="battery", occurred_at=(NOW - dt.timedelta(hours=1)).isoformat(),
                   data={"battery": 42, "charging": True}),
        make_event("l1", type="location", occurred_at=(NOW - dt.timedelta(hours=2)).isoformat(),
                   data={"lat": 52.52, "lon": 13.405, "place": "Berlin"}),
    ])
    _seen(device, NOW)
    body = _page(member_client, device)
    assert '<li class="presence presence-online">' in body
    assert 'value="42"' in body and "<bdi>Berlin</bdi>" in body
    listing = member_client.get("/devices/").content.decode()
    assert "presence-online" in listing
    row = run_json("mesh_device", "list", "--workspace", "acme")[0]
    assert {k: row[k] for k in ("presence", "presence_reason", "battery", "charging")} == {
        "presence": "online", "presence_reason": "", "battery": 42.0, "charging": True}
    assert {k: row["place"][k] for k in ("lat", "lon", "place")} == {"lat": 52.52, "lon": 13.405, "place": "Berlin"}
    # The keys the list always had are still there, with their meaning.
    assert {"id", "name", "kind", "revoked", "last_seen_at", "activity_count", "pending"} <= set(row)
    assert row["id"] == device.pk and row["revoked"] is False and row["activity_count"] == 2
