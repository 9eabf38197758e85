"""``mesh_mqtt`` against a real Mosquitto: device events on ``mesh/devices/<name>/events`` and
OwnTracks messages stored through the same path as HTTP, once; presence from messages and last
wills; unacknowledged messages delivered again after a restart of Mesh's client, and a broker
restart in the middle of a burst, with nothing lost and nothing doubled.

The machine's broker (127.0.0.1:1883, started by ``.ci/run``) serves most tests; the restart
test runs a Mosquitto of its own (tests/fakes/mosquitto.py), since it stops it."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from django.utils import timezone

from streams.devices import device_set_mqtt_topic
from streams.models import Activity, Device, ImportFailure, InboundItem
from streams.mqtt import BrokerConfig, Message, MqttIngest
from streams.selectors import device_presence, device_seq_status
from streams.services import device_revoke, inbound_process
from tests.factories import make_device, make_event
from tests.fakes import mosquitto
from tests.fakes.cli import run
from tests.fakes.mosquitto import Broker, Publisher, client_id, forget_session
from tests.fakes.subprocesses import subprocess_database_url


@pytest.fixture(scope="module", autouse=True)
def _local_broker():
    if not mosquitto.answers(*mosquitto.LOCAL):
        pytest.fail("no MQTT broker on 127.0.0.1:1883: start Mosquitto (.ci/run does: mosquitto -d -c "
                    "/etc/mosquitto/mosquitto.conf; apt-get install mosquitto)")


@pytest.fixture
def ingests():
    """Mesh's MQTT client, as many as a test starts (one client id per test unless given);
    each is closed and its session forgotten afterwards."""
    started: list[MqttIngest] = []
    cid = client_id()

    def _start(host="127.0.0.1", port=1883, *, cid=cid) -> MqttIngest:
        ingest = MqttIngest(BrokerConfig(f"mqtt://{host}:{port}", client_id=cid), batch=500, flush_ms=20)
        ingest.start()
        assert ingest.subscribed.wait(15), "no SUBACK from the broker"
        started.append(ingest)
        return ingest

    yield _start
    for ingest in started:
        ingest.close()
        forget_session(ingest.broker.host, ingest.broker.port, ingest.broker.client_id)


def _topic_device(workspace, name="Phone", prefix="mesh/devices"):
    device, token = make_device(workspace, name)
    device_set_mqtt_topic(device=device, topic=f"{prefix}/{name.lower()}-{uuid.uuid4().hex[:8]}")
    return device, token


def _drain(ingest: MqttIngest, done, timeout=30.0):
    """Run the client here (this test's database connection) until ``done()``."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out; counts {ingest.counts}"
        ingest.run(max_seconds=0.2)


def _events_payload(*events) -> str:
    return json.dumps({"events": list(events)})


def test_device_events_over_mqtt_are_the_api_s_items_stored_once(workspace, device_token, client, ingests):
    device, token = _topic_device(workspace)
    ingest = ingests()
    events = [make_event("m1", type="note", seq=1, data={"text": "over MQTT"}), make_event("m2", type="note", seq=2)]
    with Publisher("127.0.0.1", 1883) as pub:
        pub.publish(f"{device.mqtt_topic}/events", _events_payload(*events))
        pub.publish(f"{device.mqtt_topic}/events", _events_payload(*events))  # the device resends
        pub.wait_acknowledged()
    _drain(ingest, lambda: ingest.counts.received == 2)
    assert sorted(InboundItem.objects.filter(device=device).values_list("external_id", "connector")) == [
        (f"{device.pk}/m1", "device"), (f"{device.pk}/m2", "device")]
    assert (ingest.counts.stored, ingest.counts.duplicate) == (2, 2)
    # The same events over HTTP are repeats: one identity whichever door they came through.
    response = client.post("/api/v1/devices/events", data=_events_payload(*events), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.json() == {"accepted": 0, "duplicate": 2, "received": 2}
    assert device_seq_status(device=device)["high_seq"] == 2
    device.refresh_from_db()
    assert device_presence(device=device).state == "online"
    inbound_process(item_ids=list(InboundItem.objects.filter(device=device).values_list("pk", flat=True)))
    assert Activity.objects.get(dedup_key=f"device:{device.pk}/m1").text == "over MQTT"


def test_one_batch_of_many_devices_holds_each_one_s_seqs_and_presence(workspace, django_assert_max_num_queries):
    """A batch spread over devices is stored in statements shared by all of them (the benchmark's
    shape); each device still gets its own seqs, gaps, duplicates, sign of life and last will."""
    phone, _ = _topic_device(workspace, "Phone")
    tablet, _ = _topic_device(workspace, "Tablet")
    watch, _ = _topic_device(workspace, "Watch", prefix="owntracks/ana")
    ingest = MqttIngest(BrokerConfig("mqtt://127.0.0.1", client_id=client_id()))  # never connected: store() only
    at = timezone.now()

    def message(topic, payload, *, retain=False, mid=1):
        return Message(topic, payload.encode(), mid, 1, retain, at, 1)

    def events(device, *seqs, retain=False):
        return message(f"{device.mqtt_topic}/events",
                       _events_payload(*(make_event(f"s{n}", type="note", seq=n) for n in seqs)), retain=retain)

    tst = int(at.timestamp())
    first = [events(phone, 1, 2, 5), events(tablet, 3, retain=True), events(phone, 2),
             message(watch.mqtt_topic, json.dumps({"_type": "location", "lat": 52.5, "lon": 13.4, "tst": tst - 60}))]
    with django_assert_max_num_queries(6):  # one of each kind, not one per device (+ the raw insert and update)
        counts = ingest.store(first)
    assert (counts.stored, counts.duplicate) == (5, 1)
    later = [events(phone, 3, 4), events(tablet, 1, 2, 3), message(watch.mqtt_topic, json.dumps({"_type": "lwt", "tst": tst}))]
    assert ingest.store(later).as_dict() | {"batches": 0} == {
        "received": 3, "stored": 5, "duplicate": 1, "unmapped": 0, "batches": 0}
    assert device_seq_status(device=phone)["high_seq"] == 5 and device_seq_status(device=tablet)["high_seq"] == 3
    assert device_seq_status(device=watch)["high_seq"] == 0
    for device in (phone, tablet, watch):
        device.refresh_from_db()
    assert device_presence(device=phone).state == device_presence(device=tablet).state == "online"
    assert device_presence(device=watch).state == "offline"


def test_what_was_not_acknowledged_comes_again_and_is_stored_once(workspace, ingests):
    """Mesh's client stores a burst but dies before acknowledging it; more arrives while it is
    away. The next client on the same session gets both: the first again (duplicates), the rest
    once."""
    device, _ = _topic_device(workspace)
    first = ingests()
    first._ack = lambda messages: None  # stored, then gone before the acknowledgement
    with Publisher("127.0.0.1", 1883) as pub:
        for n in range(50):
            pub.publish(f"{device.mqtt_topic}/events", _events_payload(make_event(f"a{n}", type="note", seq=n + 1)))
        pub.wait_acknowledged()
        _drain(first, lambda: first.counts.received >= 50)
        first.close()
        for n in range(50, 80):  # while nobody is connected: the broker keeps them for the session
            pub.publish(f"{device.mqtt_topic}/events", _events_payload(make_event(f"a{n}", type="note", seq=n + 1)))
        pub.wait_acknowledged()
    second = ingests(cid=first.broker.client_id)
    _drain(second, lambda: second.counts.received >= 80)
    assert second.counts.duplicate == 50 and second.counts.stored == 30
    assert InboundItem.objects.filter(device=device).count() == 80
    assert device_seq_status(device=device) == {"high_seq": 80, "max_seq": 80, "missing": [],
                                                "missing_truncated": False}


def test_a_broker_restart_in_the_middle_of_a_burst_loses_nothing_and_doubles_nothing(workspace, ingests, tmp_path):
    broker = Broker(tmp_path)
    broker.start()
    try:
        device, _ = _topic_device(workspace)
        ingest = ingests("127.0.0.1", broker.port)
        total = 3000
        published = threading.Event()
        errors: list[BaseException] = []
        stored_at_restart: list[int] = []

        def burst():
            try:
                with Publisher("127.0.0.1", broker.port, inflight=200) as pub:
                    for n in range(total):
                        pub.publish(f"{device.mqtt_topic}/events",
                                    _events_payload(make_event(f"b{n}", type="note", seq=n + 1)))
                        if n == total // 3:
                            time.sleep(0.3)  # some stored, some in flight both ways
                            stored_at_restart.append(ingest.counts.stored)
                            broker.restart()
                    pub.wait_acknowledged(timeout=120)
            except BaseException as exc:  # shown by the assertion below
                errors.append(exc)
            finally:
                published.set()

        thread = threading.Thread(target=burst)
        thread.start()
        _drain(ingest, lambda: InboundItem.objects.filter(device=device).count() >= total and published.is_set(),
               timeout=180)
        thread.join()
        assert not errors, errors
        assert 0 < stored_at_restart[0] < total  # the restart came in the middle of it
        _drain(ingest, lambda: ingest._inbox.empty(), timeout=10)  # redeliveries still on their way
        stored = list(InboundItem.objects.filter(device=device).values_list("external_id", flat=True))
        assert len(stored) == total and set(stored) == {f"{device.pk}/b{n}" for n in range(total)}
        assert device_seq_status(device=device) == {"high_seq": total, "max_seq": total, "missing": [],
                                                    "missing_truncated": False}
        assert ingest.counts.stored == total
    finally:
        broker.stop()


def test_owntracks_messages_are_stored_for_their_device_and_its_last_will_is_offline(workspace, ingests):
    device, _ = _topic_device(workspace, "Pixel", prefix="owntracks/ana")
    ingest = ingests()
    tst = int(time.time()) - 60
    location = {"_type": "location", "lat": 52.52, "lon": 13.405, "tst": tst, "batt": 80, "tid": "px"}
    with Publisher("127.0.0.1", 1883) as pub:
        pub.publish(device.mqtt_topic, json.dumps(location))
        pub.publish(device.mqtt_topic, json.dumps(location))  # the app's retry
        pub.wait_acknowledged()
        _drain(ingest, lambda: ingest.counts.received == 2)
        device.refresh_from_db()
        assert device_presence(device=device).state == "online"
        pub.publish(device.mqtt_topic, json.dumps({"_type": "lwt", "tst": tst - 3600}))
        pub.wait_acknowledged()
        _drain(ingest, lambda: ingest.counts.received == 3)
    items = InboundItem.objects.filter(device=device)
    assert sorted(items.values_list("connector", flat=True)) == ["owntracks", "owntracks"]
    assert items.get(external_id=f"ot/location/{tst}").payload["topic"] == device.mqtt_topic
    device.refresh_from_db()
    presence = device_presence(device=device)
    assert (presence.state, presence.reason) == ("offline", "last will")


def test_a_retained_message_is_stored_but_is_no_sign_of_life(workspace, ingests):
    device, _ = _topic_device(workspace)
    topic = f"{device.mqtt_topic}/events"
    with Publisher("127.0.0.1", 1883) as pub:
        pub.publish(topic, _events_payload(make_event("r1", type="note")), retain=True)
        pub.wait_acknowledged()
        try:
            ingest = ingests()  # subscribes after it was published: the broker hands the kept copy
            _drain(ingest, lambda: InboundItem.objects.filter(device=device).exists())
        finally:
            pub.publish(topic, b"", retain=True)  # clear it on the shared broker
            pub.wait_acknowledged()
    device.refresh_from_db()
    assert device.last_seen_at is None and device_presence(device=device).state == "never seen"


def test_topics_of_no_device_or_a_revoked_one_are_dropped_and_counted(workspace, ingests):
    device, _ = _topic_device(workspace)
    device_revoke(device=device)
    ingest = ingests()
    with Publisher("127.0.0.1", 1883) as pub:
        pub.publish(f"mesh/devices/nobody-{uuid.uuid4().hex[:8]}/events", _events_payload(make_event("n1")))
        pub.publish(f"{device.mqtt_topic}/events", _events_payload(make_event("n2")))
        pub.wait_acknowledged()
    _drain(ingest, lambda: ingest.counts.unmapped >= 2)
    assert not InboundItem.objects.exists()


def test_an_unreadable_message_becomes_a_skip_record_and_a_bad_event_does_not_sink_the_good_one(workspace, ingests):
    device, _ = _topic_device(workspace)
    ingest = ingests()
    mixed = _events_payload(make_event("good", type="note", seq=1), {"id": "bad", "type": "Not A Type", "seq": 2})
    with Publisher("127.0.0.1", 1883) as pub:
        pub.publish(f"{device.mqtt_topic}/events", b"{not json")
        pub.publish(f"{device.mqtt_topic}/events", mixed)
        pub.publish(f"{device.mqtt_topic}/events", mixed)  # the same bad event twice is one failure
        pub.wait_acknowledged()
    _drain(ingest, lambda: ingest.counts.received == 3)
    items = InboundItem.objects.filter(device=device)
    assert items.count() == 3
    inbound_process(item_ids=list(items.values_list("pk", flat=True)))
    assert Activity.objects.filter(device=device).count() == 1
    reasons = sorted(ImportFailure.objects.filter(device=device).values_list("reason", flat=True))
    assert len(reasons) == 2
    assert "payload is not valid JSON" in reasons[0] + reasons[1] and "type: must be a lowercase name" in reasons[0] + reasons[1]
    # seq 2 came with an event Mesh could not read: the device must send it again.
    assert device_seq_status(device=device)["high_seq"] == 1


def test_the_mesh_mqtt_command_stores_and_prints_its_counts(workspace, settings):
    settings.MESH_MQTT_CLIENT_ID = client_id("mesh-test-cmd")
    device, _ = _topic_device(workspace)

    def publish_soon():
        time.sleep(1.5)
        with Publisher("127.0.0.1", 1883) as pub:
            pub.publish(f"{device.mqtt_topic}/events", _events_payload(make_event("c1", type="note")))
            pub.wait_acknowledged()

    thread = threading.Thread(target=publish_soon)
    thread.start()
    try:
        status, out, err = run("mesh_mqtt", "--max-seconds", "4", "--json")
    finally:
        thread.join()
        forget_session("127.0.0.1", 1883, settings.MESH_MQTT_CLIENT_ID)
    assert status == 0, err
    assert json.loads(out) | {"batches": 1} == {"received": 1, "stored": 1, "duplicate": 0, "unmapped": 0,
                                                "batches": 1}
    assert "mesh/devices/+/events" in err and "owntracks/+/+" in err
    assert InboundItem.objects.filter(device=device).count() == 1


def test_the_broker_url_and_the_topic_setting_are_checked(workspace, settings):
    config = BrokerConfig("mqtts://user:p%40ss@broker.example:8884", client_id="x")
    assert (config.host, config.port, config.tls, config.username, config.password) == (
        "broker.example", 8884, True, "user", "p@ss")
    assert BrokerConfig("mqtt://h", username="u", password="p").port == 1883
    with pytest.raises(ValueError, match="MESH_MQTT_URL"):
        BrokerConfig("http://h")
    settings.MESH_MQTT_URL = "tcp://nowhere"
    status, _, err = run("mesh_mqtt", "--max-seconds", "1")
    assert status == 1 and "MESH_MQTT_URL" in err
    device, _ = _topic_device(workspace)
    other, _ = make_device(workspace, "Other")
    status, _, err = run("mesh_device", "topic", str(other.pk), device.mqtt_topic, "--workspace", "acme")
    assert status == 1 and "another device" in err
    status, _, err = run("mesh_device", "topic", str(other.pk), "owntracks/+/x", "--workspace", "acme")
    assert status == 1 and "wildcards" in err
    status, out, _ = run("mesh_device", "topic", str(other.pk), "owntracks/ana/tab", "--workspace", "acme", "--json")
    assert status == 0 and json.loads(out) == {"id": other.pk, "mqtt_topic": "owntracks/ana/tab"}
    assert Device.objects.get(pk=other.pk).mqtt_topic == "owntracks/ana/tab"


@pytest.mark.django_db(transaction=True)
def test_the_device_benchmark_runs_both_doors_and_checks_what_it_stored(monkeypatch):
    """mesh_bench_devices, tiny (CI never asserts timings): gunicorn and mesh_mqtt in their own
    processes against this test's database."""
    monkeypatch.setenv("DATABASE_URL", subprocess_database_url())
    status, out, err = run("mesh_bench_devices", "--clients", "2", "--batches", "2", "--batch-size", "5",
                           "--workers", "1", "--messages", "40", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert (result["http"]["events_accepted"], result["http"]["stored"], result["http"]["doubled"]) == (20, 20, 0)
    assert result["http"]["high_seq_all_equal_sent"] and not result["http"]["errors"]
    assert (result["mqtt"]["stored"], result["mqtt"]["doubled"], result["mqtt"]["expected"]) == (40, 0, 40)
    assert result["mqtt"]["high_seq_all_equal_sent"] and result["mqtt"]["mesh_mqtt"]["stored"] == 40
    assert result["http"]["events_per_s"] > 0 and result["mqtt"]["messages_per_s"] > 0
