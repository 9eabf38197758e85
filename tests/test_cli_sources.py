"""Managing sources, workspaces and contacts from the command line, and the output contract
every command shares (RFC 3339 times in JSON, tables for people without --json)."""

from __future__ import annotations

import json

import pytest

from streams.crypto import secrets_decrypt
from streams.models import Activity, ImportFailure, Source, SyncRun, Workspace
from tests.factories import make_event
from tests.fakes.cli import RFC3339_Z, TIME_LIKE, run, run_json
from tests.fakes.ticker import ticker_source


def imported_device_source(workspace, device, tmp_path, lines):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    run("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", "acme", "--json")
    return Source.objects.get(workspace=workspace, connector="device")


# --- 13.7: edit, disable, enable, remove, failures -------------------------------------------


@pytest.mark.usefixtures("ticker")
def test_edit_merges_config_and_secrets_and_validates_with_the_connector(workspace):
    source = ticker_source(workspace, count=2)
    edited = run_json("mesh_source", "edit", str(source.pk), "--config", "count=5", "--secret", "api_key=k-456",
                      "--name", "Ticker 2", "--workspace", "acme")
    assert edited["id"] == source.pk and edited["name"] == "Ticker 2"
    source.refresh_from_db()
    assert source.config == {"count": "5"} and secrets_decrypt(source.secrets_encrypted) == {"api_key": "k-456"}
    for bad, message in ((("--config", "colour=blue"), "unknown config key(s) for ticker: colour"),
                         (("--config", "count=-1"), "count must be 0 or more"),
                         (("--secret", "api_key="), "missing secret(s): api_key")):
        status, _, err = run("mesh_source", "edit", str(source.pk), *bad, "--workspace", "acme")
        assert status == 1 and message in err
    source.refresh_from_db()
    assert source.config == {"count": "5"} and secrets_decrypt(source.secrets_encrypted) == {"api_key": "k-456"}


@pytest.mark.usefixtures("ticker")
def test_disabled_source_is_not_synced_until_enabled(workspace):
    source = ticker_source(workspace)
    assert run_json("mesh_source", "disable", str(source.pk), "--workspace", "acme") == {"id": source.pk,
                                                                                          "enabled": False}
    assert run_json("mesh_sync", "--all", "--workspace", "acme")["fetched"] == 0
    status, _, err = run("mesh_sync", str(source.pk), "--workspace", "acme")
    assert status == 1 and "disabled" in err
    assert not SyncRun.objects.filter(source=source).exists()
    run_json("mesh_source", "enable", str(source.pk), "--workspace", "acme")
    assert run_json("mesh_sync", "--all", "--workspace", "acme")["new"] == 3


@pytest.mark.usefixtures("ticker")
def test_remove_keeps_the_activities_and_asks_for_yes_when_not_in_a_terminal(workspace):
    source = ticker_source(workspace)
    run_json("mesh_sync", str(source.pk), "--workspace", "acme")
    status, _, err = run("mesh_source", "remove", str(source.pk), "--workspace", "acme")
    assert status == 1 and "--yes" in err and Source.objects.filter(pk=source.pk).exists()
    removed = run_json("mesh_source", "remove", str(source.pk), "--yes", "--workspace", "acme")
    assert removed == {"id": source.pk, "removed": True, "activities_kept": 3}
    assert not Source.objects.filter(pk=source.pk).exists()
    assert list(Activity.objects.filter(workspace=workspace).values_list("source_id", flat=True)) == [None] * 3
    # Added again, it finds its items already there.
    again = ticker_source(workspace)
    assert run_json("mesh_sync", str(again.pk), "--workspace", "acme")["duplicate"] == 3


def test_failures_lists_open_ones_and_dismiss_resolves_them(workspace, device, tmp_path):
    source = imported_device_source(workspace, device, tmp_path, [
        json.dumps(make_event("ok-1")), "not json", json.dumps(make_event("late", occurred_at="soon"))])
    failures = run_json("mesh_source", "failures", str(source.pk), "--workspace", "acme")
    assert sorted(f["external_id"] for f in failures) == [f"{device.pk}/late", f"{device.pk}/line-2"]
    assert all(RFC3339_Z.match(f["last_seen_at"]) for f in failures)
    assert run_json("mesh_source", "failures", str(source.pk), "--dismiss", "--workspace", "acme") == {
        "id": source.pk, "dismissed": 2}
    assert run_json("mesh_source", "failures", str(source.pk), "--workspace", "acme") == []
    assert not ImportFailure.objects.filter(source=source, resolved_at=None).exists()
    assert "item(s) failed to import" not in " ".join(
        run_json("mesh_source", "show", str(source.pk), "--workspace", "acme")["problems"])


@pytest.mark.usefixtures("ticker")
def test_a_source_of_another_workspace_is_not_found(workspace, other_workspace):
    source = ticker_source(workspace)
    for action in ("edit", "disable", "enable", "remove", "failures", "show"):
        status, _, err = run("mesh_source", action, str(source.pk), "--workspace", "globex")
        assert status == 1 and f"no source {source.pk} in workspace globex" in err


# --- 13.8: workspaces -------------------------------------------------------------------------


def test_unknown_workspace_is_a_usage_error_and_mesh_workspace_adds_it(db):
    status, out, err = run("mesh_source", "list", "--workspace", "typo", "--json")
    assert status == 2 and out == "" and "no workspace 'typo'" in err
    assert not Workspace.objects.filter(slug="typo").exists()
    added = run_json("mesh_workspace", "add", "typo", "--name", "Typo Ltd", "--region", "gb")
    assert added["slug"] == "typo" and added["region"] == "GB" and RFC3339_Z.match(added["created_at"])
    assert run_json("mesh_source", "list", "--workspace", "typo") == []
    listed = run_json("mesh_workspace", "list")
    assert [(w["slug"], w["name"], w["sources"], w["contacts"]) for w in listed] == [("typo", "Typo Ltd", 0, 0)]
    status, _, err = run("mesh_workspace", "add", "typo")
    assert status == 1 and "already exists" in err
    status, _, err = run("mesh_workspace", "add", "x", "--region", "ZZ")
    assert status == 1 and "'ZZ'" in err
    assert run_json("mesh_device", "list")[:0] == []  # the auto-created default stays


# --- 13.9: contact search as the web does it -------------------------------------------------


def test_contacts_search_finds_a_phone_number_as_written_and_an_email_in_any_case(workspace, device, tmp_path):
    imported_device_source(workspace, device, tmp_path, [json.dumps(make_event(
        "c-1", participants=[{"kind": "phone", "value": "+1 415-555-0105", "role": "from", "name": "Ana"},
                             {"kind": "email", "value": "bo@example.com", "role": "to", "name": "Bo"}]))])
    for query, name in (("(415) 555-0105", "Ana"), ("415.555.0105", "Ana"), ("BO@Example.COM", "Bo")):
        found = run_json("mesh_contacts", "list", "--search", query, "--workspace", "acme")
        assert [c["name"] for c in found] == [name], query


# --- 13.11: one time format in JSON, and output for people -----------------------------------


def _times(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _times(v)
    elif isinstance(value, list):
        for v in value:
            yield from _times(v)
    elif isinstance(value, str) and TIME_LIKE.match(value):
        yield value


@pytest.mark.usefixtures("ticker")
def test_every_command_prints_times_as_rfc3339_z_and_tables_for_people(workspace, device, tmp_path):
    source = imported_device_source(workspace, device, tmp_path, [json.dumps(make_event(
        "c-1", participants=[{"kind": "phone", "value": "(415) 555-0100", "role": "from", "name": "Ana"}])),
        "not json"])
    Source.objects.filter(pk=source.pk).update(last_error="line one\nline two")
    commands = [
        ("mesh_source", "list"), ("mesh_source", "show", str(source.pk)), ("mesh_source", "failures", str(source.pk)),
        ("mesh_contacts", "list"), ("mesh_device", "list"), ("mesh_workspace", "list"),
    ]
    seen = []
    for args in commands:
        data = run_json(*args, "--workspace", "acme")
        seen += list(_times(data))
        status, out, _ = run(*args, "--workspace", "acme")
        assert status == 0 and out.strip(), args
        assert not out.lstrip().startswith(("{", "[")), (args, out)
        assert "datetime.datetime(" not in out and "{'" not in out and "None" not in out, (args, out)
    status, out, _ = run("mesh_export", "--workspace", "acme")
    seen += [t for line in out.splitlines() for t in _times(json.loads(line))]
    assert len(seen) >= 8 and all(RFC3339_Z.match(t) for t in seen), seen
    table = run("mesh_source", "list", "--workspace", "acme")[1].splitlines()
    assert table[0].split()[:3] == ["id", "connector", "name"]
    assert len({line.index("device") for line in table[1:]}) == 1


def test_source_show_for_people_gives_the_lag_in_words_and_the_json_in_seconds(workspace, device, tmp_path):
    import re

    source = imported_device_source(workspace, device, tmp_path, [json.dumps(make_event("c-1"))])
    seconds = run_json("mesh_source", "show", str(source.pk), "--workspace", "acme")["lag_seconds"]
    assert seconds > 86400  # the bundled event is months old
    status, out, _ = run("mesh_source", "show", str(source.pk), "--workspace", "acme")
    lag = next(line for line in out.splitlines() if line.startswith("lag "))
    assert status == 0 and re.fullmatch(r"lag\s+\d+\s(day|week|month|year)s?", lag), lag
