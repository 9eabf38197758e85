"""Sync locks are leases held by a live process: a crashed holder never blocks a re-run for
long, a live one is named in a plain message, on both backends (Redis and the database claim)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from streams import locks
from streams.locks import Holder, SourceBusy, source_lock
from streams.models import Source
from streams.services import source_create


@pytest.fixture(params=["redis", "database"])
def backend(request, settings):
    if request.param == "database":
        settings.REDIS_URL = ""
    elif not settings.REDIS_URL:
        pytest.fail("REDIS_URL is not set: run the suite with tests/run_suite.py")
    return request.param


@pytest.fixture
def source(workspace):
    return source_create(workspace=workspace, connector="device", name="file", config={})


def dead_holder() -> Holder:
    """A holder on this host whose process has exited (as after a SIGKILL)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    me = Holder.me()
    return Holder(me.host, int(proc.stdout), "1")


def hold(backend: str, source: Source, holder: Holder, since: dt.datetime) -> None:
    """Write a lock as another process left it: its holder and a lease an hour long."""
    Source.objects.filter(pk=source.pk).update(
        sync_started_at=since, sync_holder=holder.dumps(), sync_lease_until=since + dt.timedelta(hours=1)
    )
    if backend == "redis":
        key = f"mesh:sync-lock:{connection.settings_dict['NAME']}:{source.pk}"
        locks.redis_client().set(key, json.dumps({"holder": holder.dumps(), "since": since.isoformat()}), ex=3600)


@pytest.fixture(autouse=True)
def clean_redis_keys(settings):
    yield
    if settings.REDIS_URL:
        r = locks.redis_client()
        for key in r.scan_iter(f"mesh:sync-lock:{connection.settings_dict['NAME']}:*"):
            r.delete(key)


@pytest.mark.django_db
def test_lock_of_a_holder_that_died_on_this_host_is_taken_at_once(backend, source):
    hold(backend, source, dead_holder(), timezone.now())
    with source_lock(source.pk):
        source.refresh_from_db()
        assert Holder.parse(source.sync_holder) == Holder.me()
    source.refresh_from_db()
    assert (source.sync_holder, source.sync_started_at) == ("", None)


@pytest.mark.django_db
def test_lock_this_process_could_not_release_is_taken_back(backend, source):
    # A run of this process whose release failed (the database was down at that moment).
    hold(backend, source, Holder.me(), timezone.now())
    with source_lock(source.pk):
        pass
    source.refresh_from_db()
    assert source.sync_holder == ""


@pytest.mark.django_db
def test_lock_of_a_live_holder_names_it_and_when_it_started(backend, source):
    since = timezone.now().replace(microsecond=0)
    elsewhere = Holder("other-host", 1234, "99")
    hold(backend, source, elsewhere, since)
    with pytest.raises(SourceBusy) as busy, source_lock(source.pk):
        pass
    assert str(busy.value) == (
        f"source {source.pk} is being synced by pid 1234 on host other-host since "
        f"{since.isoformat()}; try again later"
    )


@pytest.mark.django_db
def test_lock_of_a_live_holder_on_this_host_is_kept(backend, source):
    # This very process is alive: a second sync of the same source in it must wait.
    with source_lock(source.pk), pytest.raises(SourceBusy, match=r"by pid \d+ on host"), source_lock(source.pk):
        pass


@pytest.mark.django_db
def test_lock_whose_lease_ran_out_is_free(backend, source):
    elsewhere = Holder("other-host", 1234, "99")
    if backend == "redis":
        hold(backend, source, elsewhere, timezone.now())
        key = f"mesh:sync-lock:{connection.settings_dict['NAME']}:{source.pk}"
        locks.redis_client().expire(key, 1)
        time.sleep(1.2)
    else:
        Source.objects.filter(pk=source.pk).update(
            sync_started_at=timezone.now(), sync_holder=elsewhere.dumps(),
            sync_lease_until=timezone.now() - dt.timedelta(seconds=1),
        )
    with source_lock(source.pk):
        source.refresh_from_db()
        assert Holder.parse(source.sync_holder) == Holder.me()


@pytest.mark.django_db(transaction=True)
def test_live_holder_renews_its_lease_past_its_length(backend, workspace, monkeypatch):
    source = source_create(workspace=workspace, connector="device", name="file", config={})
    monkeypatch.setattr(locks, "LEASE_SECONDS", 2)
    monkeypatch.setattr(locks, "RENEW_SECONDS", 0.3)
    with source_lock(source.pk):
        time.sleep(3)
        # Another process (pretended: a holder on another host would wait for the lease).
        monkeypatch.setattr(locks.Holder, "me", classmethod(lambda cls: Holder("other-host", 1, "1")))
        with pytest.raises(SourceBusy), source_lock(source.pk):
            pass


@pytest.mark.django_db
def test_import_while_another_run_is_active_says_so_plainly(backend, source, tmp_path, workspace):
    path = tmp_path / "events.jsonl"
    path.write_text("")
    since = timezone.now().replace(microsecond=0)
    hold(backend, source, Holder("other-host", 1234, "99"), since)
    with pytest.raises(CommandError) as error:
        call_command("mesh_import", "device", str(path), "--source", str(source.pk), "--workspace", workspace.slug)
    assert str(error.value) == (
        f"source {source.pk} is being synced by pid 1234 on host other-host since {since.isoformat()}; "
        "try again later"
    )


@pytest.mark.django_db
def test_sync_while_another_run_is_active_names_it_and_exits_1(backend, workspace, capsys, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("")
    source = source_create(workspace=workspace, connector="device", name="file", config={"path": str(path)},
                           interval_seconds=0)
    since = timezone.now().replace(microsecond=0)
    hold(backend, source, Holder("other-host", 1234, "99"), since)
    with pytest.raises(SystemExit) as exit_:
        call_command("mesh_sync", str(source.pk), "--workspace", workspace.slug)
    assert exit_.value.code == 1
    assert (f"source {source.pk} is being synced by pid 1234 on host other-host since {since.isoformat()}; "
            "try again later") in capsys.readouterr().err
