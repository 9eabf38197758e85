"""Celery through a real worker process on the real Redis broker: a sync sent with .delay()
is picked up by `celery -A mesh_site worker` and lands in PostgreSQL, and so do pushed device
events stored by the ingest API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from mesh_site.celery import app
from streams.models import InboundItem, SyncRun
from tests.factories import make_event
from tests.fakes.subprocesses import ROOT, stop_and_show_output, subprocess_database_url, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(settings):
    # The worker listens on the broker this process already sends to (its connection pool is
    # bound to it), on a queue of its own so that nothing else is picked up.
    redis_url = settings.REDIS_URL
    if not redis_url:
        pytest.fail("REDIS_URL is not set: run the suite with `make test`, which provides Redis")
    queue = f"mesh-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": subprocess_database_url(),
        "REDIS_URL": redis_url,
        "MESH_CELERY_QUEUE": queue,
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "mesh_site", "worker", "--pool=solo", "--loglevel=INFO",
         "-Q", queue, "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{queue}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    app.conf.task_always_eager = False
    try:
        yield queue
    finally:
        app.conf.task_always_eager = True
        stop_and_show_output(proc)


def test_sync_sent_to_a_real_worker_is_stored(worker, tmp_path):
    from streams.services import device_create, source_create, workspace_get_or_create
    from streams.tasks import ingest_inbound, sync_source

    workspace = workspace_get_or_create(slug="w")
    device, _ = device_create(workspace=workspace, name="Phone")
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(
        json.dumps(make_event(f"e{i}", participants=[{"kind": "phone", "value": "+14155550100", "role": "from"}]))
        for i in range(30)
    ))
    source = source_create(workspace=workspace, connector="device", name="file",
                           config={"path": str(path), "device": device.pk, "batch_size": 7})
    sync_source.apply_async(args=[source.pk], kwargs={"trigger": "worker-test"}, queue=worker)
    run = wait_for(lambda: SyncRun.objects.filter(source=source, status="ok").first())
    assert (run.trigger, run.fetched, run.new, run.batches) == ("worker-test", 30, 30, 5)

    # Raw pushed items as the ingest API stores them, then ingested by the worker.
    ids = [
        InboundItem.objects.create(
            workspace=workspace, connector="device", scope=f"device:{device.pk}", device=device,
            external_id=f"{device.pk}/push{i}", payload=make_event(f"push{i}"),
        ).pk
        for i in range(3)
    ]
    ingest_inbound.apply_async(args=[ids], queue=worker)
    wait_for(lambda: InboundItem.objects.filter(pk__in=ids, state="done").count() == 3)
    assert device.activities.count() == 33
