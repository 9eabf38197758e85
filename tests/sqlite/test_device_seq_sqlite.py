"""Sequence numbers, the device status and presence on SQLite, the embedded default: the
merged seq ranges, the device row lock (a no-op there) and the presence rule need nothing
PostgreSQL-only."""

from __future__ import annotations

import json

from tests.factories import make_event


def test_seqs_are_held_and_the_status_names_the_gaps(client, demo, workspace, django_capture_on_commit_callbacks):
    from streams.services import device_create

    device, token = device_create(workspace=workspace, name="Seq phone", kind="phone")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def push(*seqs):
        body = json.dumps({"events": [make_event(f"s{s}", type="note", seq=s) for s in seqs]})
        with django_capture_on_commit_callbacks(execute=True):
            return client.post("/api/v1/devices/events", data=body, content_type="application/json", **auth)

    assert push(1, 2, 5, 7).json() == {"accepted": 4, "duplicate": 0, "received": 4}
    status = client.get("/api/v1/devices/me/status", **auth).json()
    assert (status["high_seq"], status["max_seq"], status["missing"]) == (2, 7, [[3, 4], [6, 6]])
    assert status["presence"] == "online"
    assert push(5, 7).json()["duplicate"] == 2
    push(3, 4, 6)
    status = client.get("/api/v1/devices/me/status", **auth).json()
    assert (status["high_seq"], status["missing"]) == (7, [])
    assert client.login(username=demo["username"], password="demo-pass-123")
    page = client.get("/devices/").content.decode()
    assert "Seq phone" in page and "seen never" not in page.split("Seq phone", 1)[1][:1500]
