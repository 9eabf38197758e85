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


def test_an_mqtt_batch_of_two_devices_holds_each_one_s_seqs(workspace):
    """mesh_mqtt's batch store, which on PostgreSQL shares its statements between devices, is a
    plain loop here and keeps the same rules."""
    from django.utils import timezone

    from streams.devices import device_set_mqtt_topic
    from streams.mqtt import BrokerConfig, Message, MqttIngest
    from streams.selectors import device_seq_status
    from streams.services import device_create

    devices = []
    for name in ("Phone", "Tablet"):
        device, _ = device_create(workspace=workspace, name=f"MQTT {name}", kind="phone")
        device_set_mqtt_topic(device=device, topic=f"mesh/devices/sqlite-{name.lower()}")
        devices.append(device)
    phone, tablet = devices
    ingest = MqttIngest(BrokerConfig("mqtt://127.0.0.1", client_id="sqlite-smoke"))  # never connected

    def message(device, *seqs):
        body = json.dumps({"events": [make_event(f"s{s}", type="note", seq=s) for s in seqs]})
        return Message(f"{device.mqtt_topic}/events", body.encode(), 1, 1, False, timezone.now(), 1)

    counts = ingest.store([message(phone, 1, 3), message(tablet, 1, 2), message(phone, 1)])
    assert (counts.stored, counts.duplicate) == (4, 1)
    assert device_seq_status(device=phone)["missing"] == [[2, 2]] and device_seq_status(device=tablet)["high_seq"] == 2
