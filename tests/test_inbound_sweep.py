"""Pushed items whose ingest task was lost (a worker killed, Redis wiped) are recovered by the
workers themselves, beat or not, and wait in plain sight meanwhile: health shows how many per
device and per webhook source, and since when."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.utils import timezone

from streams.models import InboundItem, Source
from streams.tasks import inbound_sweep_stranded
from tests.factories import make_event
from tests.fakes.subprocesses import ROOT, subprocess_database_url, wait_for


def push(device, n: int, *, age_s: float, prefix: str = "p") -> list[int]:
    """Raw items as the device API stores them, whose ingest task never ran."""
    at = timezone.now() - dt.timedelta(seconds=age_s)
    return [
        InboundItem.objects.create(
            workspace=device.workspace, connector="device", scope=f"device:{device.pk}", device=device,
            external_id=f"{device.pk}/{prefix}{i}", payload=make_event(f"{prefix}{i}"), received_at=at,
        ).pk
        for i in range(n)
    ]


@pytest.mark.django_db
def test_sweep_ingests_items_stranded_longer_than_the_sweep_period(device, settings):
    settings.MESH_INBOUND_SWEEP_SECONDS = 60
    stranded = push(device, 3, age_s=120, prefix="old")
    fresh = push(device, 2, age_s=0, prefix="new")
    # Eager tasks: the re-sent ingest runs at once and drains the whole scope of its item.
    assert inbound_sweep_stranded() == 1
    assert set(InboundItem.objects.filter(pk__in=stranded + fresh).values_list("state", flat=True)) == {"done"}
    assert device.activities.count() == 5
    assert inbound_sweep_stranded() == 0


@pytest.mark.django_db
def test_sweep_leaves_items_younger_than_the_period_to_their_own_task(device, settings):
    settings.MESH_INBOUND_SWEEP_SECONDS = 60
    push(device, 2, age_s=5)
    assert inbound_sweep_stranded() == 0
    assert InboundItem.objects.filter(state="pending").count() == 2


@pytest.mark.django_db
def test_source_health_and_json_show_pending_webhook_items(workspace, settings, capsys):
    settings.MESH_INBOUND_SWEEP_SECONDS = 60
    source = Source.objects.create(workspace=workspace, name="sms", connector="twilio_sms", interval_seconds=0)
    oldest = (timezone.now() - dt.timedelta(minutes=10)).replace(microsecond=0)
    for i, at in enumerate([oldest, timezone.now()]):
        InboundItem.objects.create(workspace=workspace, connector="twilio_sms", scope=f"source:{source.pk}",
                                   source=source, external_id=f"SM{i}", payload={}, received_at=at)
    call_command("mesh_source", "show", str(source.pk), "--json", "--workspace", workspace.slug)
    data = json.loads(capsys.readouterr().out)
    assert data["pending"] == {"count": 2, "oldest_at": oldest.isoformat().replace("+00:00", "Z")}
    assert f"2 pushed item(s) waiting since {oldest.isoformat(timespec='seconds')}" in data["problems"]


@pytest.mark.django_db
def test_device_list_json_shows_pending_count_and_oldest(device, workspace, capsys):
    push(device, 4, age_s=300)
    oldest = InboundItem.objects.get(external_id=f"{device.pk}/p0").received_at.replace(microsecond=0)
    call_command("mesh_device", "list", "--json", "--workspace", workspace.slug)
    rows = json.loads(capsys.readouterr().out)
    assert [r["pending"] for r in rows] == [{"count": 4, "oldest_at": oldest.isoformat().replace("+00:00", "Z")}]


@pytest.mark.django_db
def test_pages_show_items_waiting_to_ingest(member_client, device, workspace):
    push(device, 3, age_s=600)
    source = Source.objects.create(workspace=workspace, name="sms", connector="twilio_sms", interval_seconds=0)
    InboundItem.objects.create(workspace=workspace, connector="twilio_sms", scope=f"source:{source.pk}",
                               source=source, external_id="SM1", payload={})
    assert "3 waiting to ingest since" in member_client.get("/devices/").content.decode()
    assert "3 pushed events, oldest" in member_client.get(f"/devices/{device.pk}/").content.decode()
    assert "1 pushed item, oldest" in member_client.get("/sources/").content.decode()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_alone_recovers_stranded_items_at_start_and_periodically(device, settings):
    """No beat runs: the worker sweeps what was pending when it started, then every period."""
    at_start = push(device, 3, age_s=3600, prefix="before")
    queue = f"mesh-sweep-{os.getpid()}"
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "REDIS_URL": settings.REDIS_URL,
           "MESH_CELERY_QUEUE": queue, "MESH_INBOUND_SWEEP_SECONDS": "2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "mesh_site", "worker", "--pool=solo", "--loglevel=INFO", "-Q", queue,
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{queue}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_for(lambda: InboundItem.objects.filter(pk__in=at_start, state="done").count() == 3, timeout=30)
        later = push(device, 2, age_s=0, prefix="later")  # their task is lost: never sent
        wait_for(lambda: InboundItem.objects.filter(pk__in=later, state="done").count() == 2, timeout=30)
        assert device.activities.count() == 5
    finally:
        proc.terminate()
        print(proc.communicate(timeout=30)[0][-3000:])


@pytest.mark.django_db
def test_push_while_redis_is_down_is_stored_and_left_to_the_sweep(device, settings, django_capture_on_commit_callbacks):
    from connectors.base import RawItem
    from streams.services import inbound_store

    # Nothing listens on port 1: the cache (and so the ingest kick) is down.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    with django_capture_on_commit_callbacks(execute=True):
        ids, repeated = inbound_store(workspace=device.workspace, connector="device", device=device,
                                      items=[RawItem(f"{device.pk}/x{i}", make_event(f"x{i}")) for i in range(2)])
    assert (len(ids), repeated) == (2, 0)
    assert list(InboundItem.objects.filter(pk__in=ids).values_list("state", flat=True)) == ["pending", "pending"]
