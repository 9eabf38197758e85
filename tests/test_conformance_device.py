"""The device connector passes the connector conformance kit."""

from __future__ import annotations

import json

from connectors.testing import ConnectorConformance, draft_dict

EVENTS = [
    {"id": "c1", "type": "call.incoming", "occurred_at": "2026-05-01T10:00:00Z", "data": {"duration": 61},
     "participants": [{"kind": "phone", "value": "(415) 555-0100", "role": "from", "name": "Ana"}]},
    {"id": "b1", "type": "battery", "occurred_at": "2026-05-01T10:05:00+02:00", "data": {"battery": 81}},
    "not json at all",
    {"id": "s1", "type": "sms.sent", "occurred_at": 1777636800, "data": {"text": "On my way"},
     "participants": [{"kind": "phone", "value": "14155550100", "role": "to"}]},
    {"id": "x1", "type": "call.incoming", "occurred_at": "yesterday"},
    {"id": "l1", "type": "location", "occurred_at": "2026-05-01T12:00:00Z", "visibility": "public",
     "data": {"lat": 37.77, "lon": -122.41, "place": "Office"}},
    {"id": "m1", "type": "meeting.attended", "occurred_at": "2026-05-01T13:00:00Z",
     "data": {"title": "Renewal"}, "participants": [{"kind": "email", "value": "Ana@Example.com", "role": "to"}]},
]


class TestDeviceConformance(ConnectorConformance):
    connector_key = "device"
    bad_external_ids = {"DEV/line-3", "DEV/x1"}

    def make_source(self, workspace, tmp_path):
        from streams.services import device_create, source_create

        device, _ = device_create(workspace=workspace, name="Phone")
        path = tmp_path / "events.jsonl"
        path.write_text("\n".join(e if isinstance(e, str) else json.dumps(e) for e in EVENTS) + "\n")
        type(self).bad_external_ids = {i.replace("DEV", str(device.pk)) for i in {"DEV/line-3", "DEV/x1"}}
        type(self).expected_drafts = {
            f"{device.pk}/c1": draft_dict(
                channel="device", verb="call", direction="in", occurred_at="2026-05-01T10:00:00+00:00",
                dedup_key=f"device:{device.pk}/c1", device=str(device.pk),
                participants=[{"role": "from", "kind": "phone", "value": "(415) 555-0100", "display": "Ana"}],
                extra={"type": "call.incoming", "duration": 61},
            ),
            f"{device.pk}/b1": draft_dict(
                channel="device", verb="battery", direction="none", occurred_at="2026-05-01T08:05:00+00:00",
                dedup_key=f"device:{device.pk}/b1", device=str(device.pk),
                extra={"type": "battery", "battery": 81},
            ),
            f"{device.pk}/s1": draft_dict(
                channel="device", verb="sms", direction="out", occurred_at="2026-05-01T12:00:00+00:00",
                dedup_key=f"device:{device.pk}/s1", device=str(device.pk), text="On my way",
                participants=[{"role": "to", "kind": "phone", "value": "14155550100", "display": ""}],
                extra={"type": "sms.sent", "text": "On my way"},
            ),
            f"{device.pk}/l1": draft_dict(
                channel="device", verb="location", direction="none", occurred_at="2026-05-01T12:00:00+00:00",
                dedup_key=f"device:{device.pk}/l1", device=str(device.pk), visibility="public",
                extra={"type": "location", "lat": 37.77, "lon": -122.41, "place": "Office"},
            ),
        }
        return source_create(
            workspace=workspace, connector="device", name="phone file",
            config={"path": str(path), "device": str(device.pk), "batch_size": "2"},
        )
