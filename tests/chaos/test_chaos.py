"""Mesh under failure, on real services these tests own (see harness.py): workers and imports
killed mid-batch, Redis flushed and restarted, PostgreSQL restarted under a sync and under
webhook load. Each ends with the exact counts: every item stored once, on every timeline it
belongs to (its device's and its contact's), nothing left pending, and every summary equal to
what a rebuild from scratch gives."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.chaos.harness import SWEEP_SECONDS, pool_children, wait_for

pytestmark = pytest.mark.chaos

PEOPLE = 25


def event(i: int, prefix: str) -> dict:
    return {
        "id": f"{prefix}{i}", "type": "sms.received", "occurred_at": f"2026-05-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "participants": [{"kind": "phone", "value": f"+1415555{i % PEOPLE:04d}", "role": "from"}],
        # Enough text that a batch takes a moment: the kills must land inside one.
        "data": {"text": f"message {i} " + "lorem ipsum dolor sit amet " * 40},
    }


def write_events(path, n: int, prefix: str = "f") -> str:
    path.write_text("\n".join(json.dumps(event(i, prefix)) for i in range(n)) + "\n")
    return str(path)


def post(url: str, token: str, events: list[dict]) -> tuple[int, str | None]:
    request = urllib.request.Request(
        url + "/api/v1/devices/events", data=json.dumps({"events": events}).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Retry-After")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Retry-After")


def push(url: str, token: str, n: int, prefix: str, per_request: int = 250,
         answers: list | None = None) -> None:
    """Send n events as a device app does: each request again a while after a 503 (the
    answers seen are appended to ``answers``), until it is accepted."""
    for start in range(0, n, per_request):
        batch = [event(i, prefix) for i in range(start, min(n, start + per_request))]
        while True:
            status, retry_after = post(url, token, batch)
            if answers is not None:
                answers.append((status, retry_after))
            if status != 503:
                break
            time.sleep(0.3)  # a real client waits Retry-After; the test cannot wait 30 s
        assert status == 202, status


def assert_exact(state: dict, n: int) -> None:
    """n items, each stored once, on its device's and its contact's timeline, nothing pending,
    every summary as a rebuild makes it."""
    assert state["pending"] == 0
    assert (state["activities"], state["distinct_activities"]) == (n, n)
    assert (state["device_entries"], state["contact_entries"]) == (n, n)
    assert state["device_counts"] == [n]
    assert state["summaries_equal_rebuild"] is True


def in_transaction(mesh) -> bool:
    """A client of the test's database (the worker, an import) is inside a transaction now."""
    return bool(mesh.sql(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend' AND xact_start IS NOT NULL"
    ))


def done_count(mesh) -> int:
    return mesh.sql("SELECT count(*) FROM streams_inbounditem WHERE state = 'done'")[0][0]


def batches_committed(mesh) -> int:
    return mesh.sql("SELECT coalesce(max(batches), 0) FROM streams_syncrun")[0][0]


@pytest.mark.parametrize("backend", ["redis", "database"])
def test_killed_import_is_rerun_at_once_and_stores_every_item_once(mesh, tmp_path, backend):
    n = 1500
    ids = mesh.probe("setup", "w")
    path = write_events(tmp_path / "events.jsonl", n)
    source = mesh.probe("source", "w", str(ids["device"]), path, "100")["source"]
    argv = [sys.executable, "manage.py", "mesh_import", "device", path, "--source", str(source),
            "--workspace", "w", "--json"]
    env = {"REDIS_URL": ""} if backend == "database" else {}
    importer = mesh.spawn(argv, **env)
    wait_for(lambda: batches_committed(mesh) >= 2 and in_transaction(mesh), "the import to be inside a batch")
    os.kill(importer.pid, signal.SIGKILL)
    importer.wait()
    committed = mesh.sql("SELECT count(*) FROM streams_activity")[0][0]
    assert 0 < committed < n

    rerun = mesh.spawn(argv, **env)
    out, _ = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, out
    assert json.loads(out.splitlines()[-1]) == {"fetched": n, "new": n - committed, "duplicate": committed, "failed": 0}
    state = mesh.probe("state", "w")
    assert_exact(state, n)
    assert state["runs"] == [["interrupted", committed, 0], ["ok", n - committed, committed]]


@pytest.mark.parametrize("victim", ["worker", "pool child"])
def test_worker_killed_mid_batch_loses_no_pushed_item(mesh, victim):
    n = 1500
    ids = mesh.probe("setup", "w")
    web = mesh.web()
    push(web, ids["token"], n, "p")  # no worker yet: every ingest task waits in Redis
    worker = mesh.worker()
    wait_for(lambda: in_transaction(mesh) and done_count(mesh) < n, "the worker to be inside a batch", every=0.02)
    if victim == "worker":
        # The worker and its pool child at once (an OOM kill, a container stop): the batch in
        # flight is rolled back and its task stays unacknowledged in Redis for an hour.
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        mesh.worker()  # sweeps at start what was pending before it started
    else:
        os.kill(pool_children(worker.pid)[0], signal.SIGKILL)  # the worker forks a new child
    assert done_count(mesh) < n
    wait_for(lambda: done_count(mesh) == n, "every pushed item to be ingested", timeout=40)
    assert_exact(mesh.probe("state", "w"), n)


def test_items_stranded_by_redis_flushall_and_restart_are_recovered_without_beat(mesh):
    ids = mesh.probe("setup", "w")
    web = mesh.web()
    push(web, ids["token"], 250, "a")
    mesh.redis.flushall()  # the queued ingest tasks are gone
    worker = mesh.worker()
    wait_for(lambda: done_count(mesh) == 250, "the start sweep to ingest the flushed items")

    push(web, ids["token"], 250, "b")
    mesh.redis.stop()  # nothing on disk: whatever was queued or held is gone
    answers: list = []
    client = threading.Thread(target=push, args=(web, ids["token"], 250, "c"), kwargs={"answers": answers})
    client.start()
    wait_for(lambda: answers, "an answer while Redis is down")
    time.sleep(1)
    mesh.redis.start()
    client.join(timeout=30)
    assert {status for status, _ in answers} <= {202, 503}, answers
    assert {retry for status, retry in answers if status == 503} <= {"30"}
    push(web, ids["token"], 250, "d")
    # kombu 5.7 makes a worker that holds unacknowledged messages when the broker goes away
    # exit ("Unrecoverable error"): its supervisor starts it again, as in production.
    time.sleep(1)
    if worker.poll() is not None:
        mesh.worker()
    wait_for(lambda: done_count(mesh) == 1000, "the sweeps to ingest the stranded items",
             timeout=10 + 4 * SWEEP_SECONDS)
    assert_exact(mesh.probe("state", "w"), 1000)


def test_postgres_restart_during_a_sync_resumes_and_stores_every_item_once(mesh, tmp_path):
    n = 1500
    ids = mesh.probe("setup", "w")
    path = write_events(tmp_path / "events.jsonl", n)
    source = mesh.probe("source", "w", str(ids["device"]), path, "50")["source"]
    mesh.worker()
    mesh.run("-c", f"import django; django.setup(); from streams.tasks import sync_source; sync_source.delay({source})",
             )
    wait_for(lambda: batches_committed(mesh) >= 2, "the sync to be under way")
    mesh.pg.stop_now()
    time.sleep(1)
    mesh.pg.start_again()
    # The task retries by itself and resumes after the last stored batch.
    wait_for(lambda: mesh.sql("SELECT count(*) FROM streams_syncrun WHERE status = 'ok'")[0][0] == 1,
             "the retried sync to finish", timeout=40)
    state = mesh.probe("state", "w")
    assert_exact(state, n)
    assert state["runs"][-1][0] == "ok" and sum(r[1] for r in state["runs"]) == n


def test_postgres_restart_under_webhook_load_answers_503_and_loses_nothing(mesh):
    requests, per_request = 60, 20
    ids = mesh.probe("setup", "w")
    web = mesh.web()
    mesh.worker()
    answers: list[tuple[int, str | None]] = []

    thread = threading.Thread(target=push, args=(web, ids["token"], requests * per_request, "h"),
                              kwargs={"per_request": per_request, "answers": answers})
    thread.start()
    wait_for(lambda: len(answers) >= 10, "the load to be under way")
    mesh.pg.stop_now()
    time.sleep(2)
    mesh.pg.start_again()
    thread.join(timeout=60)
    statuses = {status for status, _ in answers}
    assert statuses == {202, 503}, statuses
    assert {retry for status, retry in answers if status == 503} == {"30"}
    n = requests * per_request
    wait_for(lambda: done_count(mesh) == n, "every accepted item to be ingested", timeout=40)
    assert_exact(mesh.probe("state", "w"), n)
