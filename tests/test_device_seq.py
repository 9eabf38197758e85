"""Device → Mesh sequence numbers: ``seq`` on pushed events, what Mesh holds
(``GET /api/v1/devices/me/status`` → ``high_seq``, ``missing``), resends, redelivery,
concurrent batches of one device, and clients that send no seq."""

from __future__ import annotations

import json
import random
import threading

import pytest
from django.db import connection
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from connectors.base import RawItem
from streams.devices import device_push_lock, device_push_record
from streams.models import Device, DeviceSeqRange, InboundItem
from streams.selectors import device_seq_status
from streams.services import device_events_store, device_revoke
from tests.factories import make_device, make_event
from tests.fakes.cli import run_json

EVENTS = "/api/v1/devices/events"
STATUS = "/api/v1/devices/me/status"


@pytest.fixture
def push(client, device_token):
    def _push(seqs, *, token=None, prefix="e"):
        events = [make_event(f"{prefix}{s}", type="note", seq=s) for s in seqs]
        return client.post(EVENTS, data=json.dumps({"events": events}), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token or device_token}")

    return _push


@pytest.fixture
def status(client, device_token):
    def _status(token=None):
        response = client.get(STATUS, HTTP_AUTHORIZATION=f"Bearer {token or device_token}")
        assert response.status_code == 200, response.content
        return response.json()

    return _status


def _held(device) -> tuple[int, list[tuple[int, int]]]:
    high = Device.objects.get(pk=device.pk).seq_high
    return high, list(DeviceSeqRange.objects.filter(device=device).order_by("first").values_list("first", "last"))


def test_seqs_in_order_raise_high_seq(push, status, device):
    assert push([1, 2, 3]).status_code == 202
    assert push([4, 5]).status_code == 202
    answer = status()
    assert (answer["high_seq"], answer["max_seq"], answer["missing"]) == (5, 5, [])
    assert answer["device"] == device.pk and answer["missing_truncated"] is False
    assert _held(device) == (5, [])


def test_gaps_are_missing_until_resent_then_high_seq_covers_them(push, status, device):
    push([1, 2, 3, 7, 8, 10])
    answer = status()
    assert (answer["high_seq"], answer["max_seq"], answer["missing"]) == (3, 10, [[4, 6], [9, 9]])
    push([5, 9])
    assert status()["missing"] == [[4, 4], [6, 6]]
    push([6, 4])
    answer = status()
    assert (answer["high_seq"], answer["max_seq"], answer["missing"]) == (10, 10, [])
    assert _held(device) == (10, [])


def test_a_device_that_starts_late_is_missing_everything_before(push, status):
    push([4, 5])
    assert status()["high_seq"] == 0 and status()["missing"] == [[1, 3]]


def test_a_resent_batch_changes_nothing(push, status, device):
    first = push([1, 2, 5, 6, 9])
    assert first.json() == {"accepted": 5, "duplicate": 0, "received": 5}
    rows = list(DeviceSeqRange.objects.filter(device=device).values_list("pk", "first", "last"))
    again = push([1, 2, 5, 6, 9])
    assert again.status_code == 202 and again.json() == {"accepted": 0, "duplicate": 5, "received": 5}
    assert list(DeviceSeqRange.objects.filter(device=device).values_list("pk", "first", "last")) == rows
    assert status()["missing"] == [[3, 4], [7, 8]]
    assert InboundItem.objects.filter(device=device).count() == 5


def test_an_event_stored_before_it_had_a_seq_is_held_when_resent_with_one(client, device_token, status, push):
    event = make_event("old-1", type="note")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {device_token}"}
    client.post(EVENTS, data=json.dumps({"events": [event]}), content_type="application/json", **auth)
    resent = client.post(EVENTS, data=json.dumps({"events": [{**event, "seq": 1}]}),
                         content_type="application/json", **auth)
    # Mesh holds the event the device numbered 1, whenever it arrived.
    assert resent.json()["duplicate"] == 1 and status()["high_seq"] == 1


def test_clients_without_seq_keep_working(client, device_token, status, device):
    events = [make_event("a"), make_event("b", type="note")]
    response = client.post(EVENTS, data=json.dumps({"events": events}), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {device_token}")
    assert response.status_code == 202 and response.json()["accepted"] == 2
    answer = status()
    assert (answer["high_seq"], answer["max_seq"], answer["missing"]) == (0, 0, [])
    assert answer["presence"] == "online" and answer["last_seen_at"].endswith("Z")


@pytest.mark.parametrize("seq", [0, -3, "4", 2.5, True, None, 2**63])
def test_a_bad_seq_is_refused_by_name_and_nothing_is_stored(client, device_token, device, seq):
    events = [make_event("ok", seq=1), make_event("bad", seq=seq)]
    response = client.post(EVENTS, data=json.dumps({"events": events}), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {device_token}")
    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, "seq")]
    assert not InboundItem.objects.exists() and _held(device) == (0, [])


def test_two_events_with_one_seq_in_a_batch_are_refused(client, device_token, device):
    events = [make_event("x", seq=7), make_event("y", seq=7)]
    response = client.post(EVENTS, data=json.dumps({"events": events}), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {device_token}")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"index": 1, "id": "y", "field": "seq", "error": "seq 7 is also at index 0, another event"}]
    assert _held(device) == (0, [])


def test_the_status_needs_a_live_token_and_shows_only_its_own_device(client, push, status, workspace, device):
    assert client.get(STATUS).status_code == 401
    assert client.get(STATUS, HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    other, other_token = make_device(workspace, "Laptop", "laptop")
    push([1, 2])
    push([1, 5], token=other_token)
    assert status()["high_seq"] == 2
    assert status(other_token)["missing"] == [[2, 4]] and status(other_token)["device"] == other.pk
    device_revoke(device=other)
    assert client.get(STATUS, HTTP_AUTHORIZATION=f"Bearer {other_token}").status_code == 401
    assert client.post(STATUS, HTTP_AUTHORIZATION=f"Bearer {other_token}").status_code == 405


def test_the_missing_list_is_bounded_and_says_so(push, status, monkeypatch):
    from streams.selectors import devices as device_selectors

    monkeypatch.setattr(device_selectors, "MAX_MISSING", 2)
    push([2, 4, 6, 8])
    answer = status()
    assert answer["missing"] == [[1, 1], [3, 3]] and answer["missing_truncated"] is True
    assert answer["max_seq"] == 8


def test_skip_records_hold_no_seq(device):
    items = [RawItem(f"{device.pk}/bad", {"_error": "broken", "seq": 1}), RawItem(f"{device.pk}/ok", {"seq": 2})]
    device_events_store(device=device, items=items, at=None)
    assert _held(device) == (0, [(2, 2)])
    assert Device.objects.get(pk=device.pk).last_seen_at is None  # at=None: not a sign of life


# --- the merge, as a property ----------------------------------------------------------------------


@pytest.mark.django_db
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.integers(min_value=1, max_value=60), max_size=12), max_size=8))
def test_held_ranges_equal_the_set_of_seqs_sent_in_any_order(workspace, batches):
    device, _ = make_device(workspace, "Prop")
    sent: set[int] = set()
    for batch in batches:
        items = [RawItem(str(s), {"seq": s}) for s in batch]
        device_push_record(device=device, items=items, seq_high=device_push_lock(device=device), seen_at=None)
        sent.update(batch)
        high, ranges = _held(device)
        held = set(range(1, high + 1)) | {s for first, last in ranges for s in range(first, last + 1)}
        assert held == sent
        assert high + 1 not in sent
        # disjoint, not adjacent, all above high + 1: one representation per set
        assert all(a[1] + 1 < b[0] for a, b in zip(ranges, ranges[1:], strict=False))
        assert all(first > high + 1 for first, _ in ranges)
    status = device_seq_status(device=device)
    expected_missing = sorted(set(range(1, max(sent, default=0) + 1)) - sent)
    assert [s for a, b in status["missing"] for s in range(a, b + 1)] == expected_missing


# --- concurrency -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_of_one_device_merge_exactly(workspace):
    """Eight clients push shuffled, overlapping batches of seqs 1..800 (one seq, 400, never sent)
    at once, each through its own database connection: the result is exactly the set sent."""
    device, _ = make_device(workspace, "Busy phone")
    seqs = [s for s in range(1, 801) if s != 400]
    rng = random.Random(16)
    plans = []
    for _client in range(8):
        mine = rng.sample(seqs, 300) + seqs[_client::8]  # overlaps other clients' seqs
        rng.shuffle(mine)
        plans.append([mine[i:i + 50] for i in range(0, len(mine), 50)])
    errors: list[BaseException] = []
    start = threading.Barrier(len(plans))

    def client(plan):
        try:
            start.wait()
            for batch in plan:
                items = [RawItem(f"{device.pk}/s{s}", make_event(f"s{s}", type="note", seq=s)) for s in batch]
                device_events_store(device=device, items=items, at=None)
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(plan,)) for plan in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert _held(device) == (399, [(401, 800)])
    assert device_seq_status(device=device)["missing"] == [[400, 400]]
    assert InboundItem.objects.filter(device=device).count() == 799


def test_a_device_file_import_holds_its_seqs_like_the_api(push, status, device, tmp_path):
    """``mesh_import device FILE --device ID``: the events' seqs are held as if pushed, so a
    device that exported what it could not send knows what is still missing; an event the API
    already stored, or a line that fails, holds nothing new."""
    push([1])
    path = tmp_path / "events.jsonl"
    lines = [make_event("e1", type="note", seq=1), make_event("f2", type="note", seq=2),
             make_event("f5", type="note", seq=5), {"id": "bad", "type": "Not A Type", "seq": 3}]
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert run_json("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", device.workspace.slug)["new"] == 3
    answer = status()
    assert (answer["high_seq"], answer["missing"]) == (2, [[3, 4]])
    path.write_text("".join(json.dumps(make_event(f"f{s}", type="note", seq=s)) + "\n" for s in (3, 4)))
    run_json("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", device.workspace.slug)
    assert (status()["high_seq"], status()["missing"]) == (5, [])
