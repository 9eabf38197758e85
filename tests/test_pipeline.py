"""The ingest pipeline end to end through the command line: idempotent imports, crash
recovery, sync health, and the CLI's JSON contract."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from connectors.base import ConnectorError
from streams.models import Activity, ImportFailure, Participant, Source, SyncRun, TimelineEntry
from tests.factories import make_event


def run_json(*args) -> dict | list:
    out = io.StringIO()
    call_command(*args, "--json", stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert text.count("\n") <= 1, f"--json printed more than one document: {text!r}"
    return json.loads(text)


def write_events(path, n, *, start=0, bad_lines=()):
    lines = []
    for i in range(start, start + n):
        lines.append(json.dumps(make_event(
            f"e{i}", type="call.incoming" if i % 2 else "sms.sent", occurred_at=f"2026-05-01T10:{i % 60:02d}:{i // 60:02d}Z",
            participants=[{"kind": "phone", "value": f"+1415555{i % 7:04d}", "role": "from" if i % 2 else "to"}],
        )))
    for line in bad_lines:
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return path


def snapshot(workspace):
    return (
        sorted(Activity.objects.filter(workspace=workspace).values_list("pk", "dedup_key", "occurred_at", "direction")),
        sorted(Participant.objects.filter(activity__workspace=workspace).values_list("activity_id", "identity_id", "role")),
        sorted(TimelineEntry.objects.values_list("kind", "owner_id", "activity_id", "occurred_at")),
    )


def test_importing_the_same_file_twice_gives_the_same_rows(workspace, device, tmp_path):
    path = write_events(tmp_path / "events.jsonl", 120)
    first = run_json("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", "acme")
    assert first == {"fetched": 120, "new": 120, "duplicate": 0, "failed": 0}
    before = snapshot(workspace)
    second = run_json("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", "acme")
    assert second == {"fetched": 120, "new": 0, "duplicate": 120, "failed": 0}
    assert snapshot(workspace) == before
    assert TimelineEntry.objects.filter(kind="d", owner_id=device.pk).count() == 120


def test_crash_after_batch_k_then_rerun_stores_every_item_exactly_once(workspace, device, tmp_path, monkeypatch, settings):
    import streams.services as services

    path = write_events(tmp_path / "events.jsonl", 50)
    source = services.source_create(
        workspace=workspace, connector="device", name="phone",
        config={"path": str(path), "device": device.pk, "batch_size": 10},
    )
    real = services.ingest_batch
    calls = {"n": 0}

    def crash_on_third(**kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected crash in batch 3 of 5")
        return real(**kwargs)

    monkeypatch.setattr(services, "ingest_batch", crash_on_third)
    with pytest.raises(RuntimeError, match="injected crash"):
        services.source_sync(source=source)
    assert Activity.objects.filter(source=source).count() == 20
    source.refresh_from_db()
    assert source.status == "error" and "injected crash" in source.last_error
    assert not services.source_health(source=source)["healthy"]

    monkeypatch.setattr(services, "ingest_batch", real)
    run = services.source_sync(source=source)
    assert (run.fetched, run.new, run.duplicate) == (30, 30, 0)
    keys = list(Activity.objects.filter(source=source).values_list("dedup_key", flat=True))
    assert len(keys) == len(set(keys)) == 50
    assert TimelineEntry.objects.filter(kind="d", owner_id=device.pk).count() == 50
    source.refresh_from_db()
    assert source.status == "ok" and source.last_error == ""


def test_a_run_killed_midway_is_reported_as_interrupted(workspace, device, tmp_path):
    from streams.services import source_create, source_health, source_sync

    path = write_events(tmp_path / "events.jsonl", 5)
    source = source_create(workspace=workspace, connector="device", name="p", config={"path": str(path), "device": device.pk})
    # A run left "running" by a process that died.
    SyncRun.objects.create(source=source, trigger="beat")
    run = source_sync(source=source)
    assert run.new == 5
    statuses = list(source.runs.order_by("started_at").values_list("status", flat=True))
    assert statuses == ["interrupted", "ok"]
    assert source_health(source=source)["healthy"]


def test_bad_items_become_import_failures_listed_by_mesh_source_show(workspace, device, tmp_path):
    path = write_events(tmp_path / "events.jsonl", 4, bad_lines=["{broken", json.dumps({"id": "z", "type": "x"})])
    counts = run_json("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", "acme")
    assert counts == {"fetched": 6, "new": 4, "duplicate": 0, "failed": 2}
    source = Source.objects.get(workspace=workspace, connector="device")
    shown = run_json("mesh_source", "show", str(source.pk), "--workspace", "acme")
    assert shown["healthy"] is False
    reasons = sorted(f["reason"] for f in shown["failures"])
    assert any("invalid JSON" in r for r in reasons)
    assert any("occurred_at: required" in r for r in reasons)
    assert shown["last_run"]["failed"] == 2
    # Re-import: still two failures, not four.
    run_json("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", "acme")
    assert ImportFailure.objects.filter(source=source, resolved_at=None).count() == 2


def test_fixed_item_resolves_its_import_failure(workspace, device, tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(make_event("late", occurred_at="soon")) + "\n")
    with pytest.raises(SystemExit):  # nothing imported, an item failed: exit status 1
        run_json("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", "acme")
    assert ImportFailure.objects.get(external_id=f"{device.pk}/late").resolved_at is None
    path.write_text(json.dumps(make_event("late")) + "\n")
    counts = run_json("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", "acme")
    assert counts["new"] == 1
    assert ImportFailure.objects.get(external_id=f"{device.pk}/late").resolved_at is not None


def test_source_add_list_show_json_contract(workspace, device, tmp_path):
    added = run_json("mesh_source", "add", "device", "--name", "Phone file", "--config", f"device={device.pk}",
                     "--config", f"path={tmp_path}/x.jsonl", "--workspace", "acme")
    assert set(added) == {"id"}
    listed = run_json("mesh_source", "list", "--workspace", "acme")
    assert [s["id"] for s in listed] == [added["id"]]
    assert listed[0]["healthy"] is False and "never synced successfully" in listed[0]["problems"]
    shown = run_json("mesh_source", "show", str(added["id"]), "--workspace", "acme")
    assert shown["connector"] == "device" and shown["config"]["device"] == str(device.pk)
    with pytest.raises(CommandError, match="unknown config key"):
        call_command("mesh_source", "add", "device", "--name", "x", "--config", "colour=blue", stdout=io.StringIO())
    with pytest.raises(CommandError, match="unknown connector"):
        call_command("mesh_source", "add", "nope", "--name", "x", stdout=io.StringIO())


def test_sync_json_sums_sources_and_reports_failures(workspace, device, tmp_path, monkeypatch):
    from connectors.device.connector import DeviceConnector
    from streams.services import source_create

    a = source_create(workspace=workspace, connector="device", name="a",
                      config={"path": str(write_events(tmp_path / "a.jsonl", 3)), "device": device.pk})
    source_create(workspace=workspace, connector="device", name="b",
                  config={"path": str(write_events(tmp_path / "b.jsonl", 4, start=100)), "device": device.pk})
    # File sources: `--all` leaves them alone, syncing one by ID reads its whole file again.
    assert run_json("mesh_sync", "--all", "--workspace", "acme") == {"fetched": 0, "new": 0, "duplicate": 0, "failed": 0}
    assert run_json("mesh_sync", str(a.pk), "--workspace", "acme") == {"fetched": 3, "new": 3, "duplicate": 0, "failed": 0}
    assert run_json("mesh_sync", str(a.pk), "--workspace", "acme") == {"fetched": 3, "new": 0, "duplicate": 3, "failed": 0}

    def unauthorized(self, cursor, *, since=None):
        raise ConnectorError("server said: invalid credentials", permanent=True, status="auth_failed")
        yield  # pragma: no cover

    monkeypatch.setattr(DeviceConnector, "fetch", unauthorized)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("mesh_sync", str(a.pk), "--workspace", "acme", "--json", stdout=out, stderr=io.StringIO())
    assert exit_info.value.code == 1
    data = json.loads(out.getvalue())
    assert data["errors"][0]["error"] == "server said: invalid credentials"
    a.refresh_from_db()
    assert a.status == "auth_failed" and a.last_error == "server said: invalid credentials"


def test_device_add_and_export_contract(workspace, tmp_path):
    added = run_json("mesh_device", "add", "Laptop", "--workspace", "acme")
    assert set(added) == {"id", "token"} and len(added["token"]) >= 40
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(make_event(
        "m1", type="meeting.attended", data={"title": "Renewal", "text": "Went well"},
        participants=[{"kind": "email", "value": "Ana@Example.com", "role": "from", "name": "Ana"},
                      {"kind": "phone", "value": "(415) 555-0100", "role": "to"}],
    )) + "\n")
    run_json("mesh_import", "device", str(path), "--device", str(added["id"]), "--workspace", "acme")
    out = io.StringIO()
    call_command("mesh_export", "--workspace", "acme", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    contacts = run_json("mesh_contacts", "list", "--workspace", "acme")
    assert line == {
        "id": f"tag:mesh,{workspace.created_at:%Y}:acme/device:{added['id']}/m1",
        "type": "Create",
        "published": "2026-05-01T10:00:00Z",
        "updated": line["updated"],
        "name": "Renewal",
        "content": "Went well",
        "actor": {"mesh:identity": "email:ana@example.com", "name": "Ana"},
        "to": [{"mesh:identity": "phone:+14155550100", "name": "+14155550100"}],
        "cc": [],
        "attachment": [],
        "mesh:channel": "device",
        "mesh:verb": "meeting",
        "mesh:direction": "in",
        "mesh:dedupKey": f"device:{added['id']}/m1",
        "mesh:threadKey": "",
        "mesh:source": Source.objects.get(workspace=workspace).pk,
        "mesh:device": added["id"],
        "mesh:contacts": sorted(c["id"] for c in contacts),
        "mesh:visibility": "private",
        "mesh:automated": False,
    }
    assert line["updated"].endswith("Z")
    assert {tuple(c["identities"]) for c in contacts} == {("email:ana@example.com",), ("phone:+14155550100",)}


def test_commands_never_reach_into_another_workspace(workspace, other_workspace, device, tmp_path):
    path = write_events(tmp_path / "events.jsonl", 3)
    run_json("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", "acme")
    contact = run_json("mesh_contacts", "list", "--workspace", "acme")[0]
    assert run_json("mesh_contacts", "list", "--workspace", "globex") == []
    with pytest.raises(CommandError):
        call_command("mesh_contacts", "merge", str(contact["id"]), str(contact["id"]), "--workspace", "globex",
                     stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("mesh_export", "--contact", str(contact["id"]), "--workspace", "globex", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no device"):
        call_command("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", "globex",
                     stdout=io.StringIO())


def test_dispatch_due_sources_claims_each_due_source_once(workspace, device, tmp_path, monkeypatch):
    from connectors.device.connector import DeviceConnector
    from streams import tasks
    from streams.services import source_create

    monkeypatch.setattr(DeviceConnector, "pollable", True)
    source = source_create(workspace=workspace, connector="device", name="polled", interval_seconds=60,
                           config={"path": str(write_events(tmp_path / "e.jsonl", 3)), "device": device.pk})
    sent = tasks.dispatch_due_sources()
    assert sent == [source.pk]
    assert tasks.dispatch_due_sources() == []  # not due again for a minute
    run = SyncRun.objects.get(source=source)
    assert (run.trigger, run.status, run.new) == ("beat", "ok", 3)


def test_sync_task_retries_transient_errors_and_stops_on_permanent(workspace, device, tmp_path, monkeypatch):
    from celery.exceptions import Retry

    from connectors.device.connector import DeviceConnector
    from streams import tasks
    from streams.services import source_create

    source = source_create(workspace=workspace, connector="device", name="p",
                           config={"path": str(tmp_path / "none.jsonl"), "device": device.pk})

    def flaky(self, cursor, *, since=None):
        raise ConnectorError("connection reset")
        yield  # pragma: no cover

    monkeypatch.setattr(DeviceConnector, "fetch", flaky)
    monkeypatch.setattr(tasks.sync_source, "retry", lambda **kw: Retry("retry", when=kw["countdown"]))
    with pytest.raises(Retry):
        tasks.sync_source.run(source.pk)
    source.refresh_from_db()
    assert source.status == "error" and source.last_error == "connection reset"

    def denied(self, cursor, *, since=None):
        raise ConnectorError("bad password", permanent=True, status="auth_failed")
        yield  # pragma: no cover

    monkeypatch.setattr(DeviceConnector, "fetch", denied)
    assert tasks.sync_source.run(source.pk) == {"error": "bad password", "permanent": True}
    source.refresh_from_db()
    assert source.status == "auth_failed"


def test_backoff_grows_and_is_capped():
    from streams.tasks import backoff

    assert [backoff(n) for n in range(4)] == [30, 60, 120, 240]
    assert backoff(20) == 3600
