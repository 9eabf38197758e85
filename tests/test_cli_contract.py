"""The command-line contract at its edges: what a new operator's mistakes do (a misconfigured
source, a file of the wrong format, an unknown workspace), exit statuses, the JSON's one time
format, and output for people without --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.models import Activity, ImportFailure, Source, SyncRun
from tests.factories import make_event
from tests.fakes.cli import run, run_json
from tests.fakes.ticker import ticker_source

FIXTURES = Path(__file__).parent / "fixtures" / "cli"
ROOT = Path(__file__).resolve().parent.parent


# --- 13.5: one misconfigured source does not stop `mesh_sync --all` --------------------------


def test_sync_all_reports_each_broken_source_and_syncs_the_others(workspace, ticker):
    good = ticker_source(workspace, "Good", count=2)
    bad_config = ticker_source(workspace, "Edited by hand")
    Source.objects.filter(pk=bad_config.pk).update(config={"count": "many"})
    uninstalled = Source.objects.create(workspace=workspace, name="Old plug-in", connector="gone", interval_seconds=60)
    status, out, err = run("mesh_sync", "--all", "--workspace", "acme", "--json")
    assert status == 1
    data = json.loads(out)
    assert (data["fetched"], data["new"]) == (2, 2)
    errors = {e["source"]: e for e in data["errors"]}
    assert set(errors) == {bad_config.pk, uninstalled.pk}
    assert "count: 'many' is not a whole number" in errors[bad_config.pk]["error"] and errors[bad_config.pk]["retry_at"] is None
    assert "unknown connector 'gone'" in errors[uninstalled.pk]["error"]
    assert "Traceback" not in err
    assert SyncRun.objects.get(source=good).status == "ok"


def test_failed_device_import_without_device_leaves_no_source_and_sync_all_is_clean(workspace, device, ticker, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(make_event("c-1")) + "\n")
    status, out, err = run("mesh_import", "device", str(path), "--workspace", "acme", "--json")
    assert status == 1 and "--device" in err
    assert json.loads(out)["error"] == "device events need a device (--device ID)"
    assert not Source.objects.filter(workspace=workspace).exists()
    ticker_source(workspace)
    assert run_json("mesh_sync", "--all", "--workspace", "acme") == {"fetched": 3, "new": 3, "duplicate": 0,
                                                                      "failed": 0}


def test_sync_all_skips_file_imports_and_sync_by_id_reads_the_file_again(workspace, device, ticker, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(make_event(f"c-{i}")) + "\n" for i in range(4)))
    assert run_json("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", "acme")["new"] == 4
    imported = Source.objects.get(workspace=workspace, connector="device")
    ticker_source(workspace)
    status, out, err = run("mesh_sync", "--all", "--workspace", "acme", "--json")
    assert status == 0 and json.loads(out)["fetched"] == 3
    assert f"source {imported.pk} (device import (device {device.pk})) is a file import: skipped" in err
    assert imported.runs.count() == 1
    again = run_json("mesh_sync", str(imported.pk), "--workspace", "acme")
    assert again == {"fetched": 4, "new": 0, "duplicate": 4, "failed": 0}


def test_sync_of_a_file_import_whose_file_is_gone_fails_and_records_no_success(workspace, device, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(make_event("c-1")) + "\n")
    run_json("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", "acme")
    source = Source.objects.get(workspace=workspace, connector="device")
    success = source.last_success_at
    path.unlink()
    status, out, _ = run("mesh_sync", str(source.pk), "--workspace", "acme", "--json")
    assert status == 1
    error = json.loads(out)["errors"][0]
    assert error["source"] == source.pk and "is gone" in error["error"]
    source.refresh_from_db()
    assert source.last_success_at == success and source.runs.count() == 1


# --- 13.6: exit statuses ----------------------------------------------------------------------


def test_import_of_random_bytes_as_mbox_exits_1_with_the_message_and_json(workspace):
    status, out, err = run("mesh_import", "mbox", str(FIXTURES / "mailbox__random_bytes.mbox"),
                           "--workspace", "acme", "--json")
    assert status == 1
    data = json.loads(out)
    assert data["new"] == 0 and data["error"]
    assert data["error"] in err and "Traceback" not in err


def test_import_of_an_mbox_as_an_sms_backup_exits_1(workspace):
    status, out, err = run("mesh_import", "sms_backup", str(FIXTURES / "mailbox__one_message.mbox"),
                           "--workspace", "acme", "--json")
    assert status == 1
    assert json.loads(out)["error"] in err
    assert not Activity.objects.filter(workspace=workspace).exists()


def test_import_where_every_item_failed_exits_1_and_still_prints_counts(workspace, device):
    status, out, err = run("mesh_import", "device", str(FIXTURES / "device_events__all_malformed.jsonl"),
                           "--device", str(device.pk), "--workspace", "acme", "--json")
    assert status == 1
    assert json.loads(out) == {"fetched": 3, "new": 0, "duplicate": 0, "failed": 3}
    assert "nothing was imported" in err
    assert ImportFailure.objects.filter(workspace=workspace, resolved_at=None).count() == 3


@pytest.mark.django_db(transaction=True)
def test_exit_statuses_from_the_shell(workspace):
    from django.conf import settings

    db = settings.DATABASES["default"]
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    shell = [sys.executable, "manage.py"]
    bad = subprocess.run([*shell, "mesh_import", "mbox", str(FIXTURES / "mailbox__random_bytes.mbox"),
                          "--workspace", "acme", "--json"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 1, bad.stderr
    assert "error" in json.loads(bad.stdout) and "Traceback" not in bad.stderr
    unknown = subprocess.run([*shell, "mesh_source", "list", "--workspace", "nope"], cwd=ROOT, env=env,
                             capture_output=True, text=True)
    assert unknown.returncode == 2 and "no workspace 'nope'" in unknown.stderr and unknown.stdout == ""


def test_beat_never_dispatches_a_file_import(workspace, device, ticker, tmp_path):
    from streams.tasks import dispatch_due_sources

    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(make_event("c-1")) + "\n")
    run_json("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", "acme")
    imported = Source.objects.get(workspace=workspace, connector="device")
    Source.objects.filter(pk=imported.pk).update(interval_seconds=60)  # set by hand, say
    polled = ticker_source(workspace)
    assert dispatch_due_sources() == [polled.pk]
    assert imported.runs.count() == 1
