"""``POST /api/v1/devices/events``: authentication, limits, the event schema, idempotency,
workspace isolation, the JSONL file import of the same events, and fixture payloads normalized
end to end."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from connectors.base import RawItem
from connectors.device.connector import DeviceConnector
from streams.models import (
    Activity,
    Contact,
    Identity,
    ImportFailure,
    InboundItem,
    TimelineEntry,
)
from tests.factories import make_event

URL = "/api/v1/devices/events"
FIXTURES = Path(__file__).parent / "fixtures" / "device"
UTC = dt.UTC


def _eager() -> bool:
    from mesh_site.celery import app

    return bool(app.conf.task_always_eager)


@pytest.fixture
def post(client, device_token, django_capture_on_commit_callbacks):
    """POST to the ingest API and make sure the after-commit ingest has run: eagerly through
    the on_commit callback when Celery is eager, else by processing the stored items here."""

    def _post(events=None, *, body=None, token=None, auth=None, content_type="application/json"):
        if body is None:
            body = json.dumps({"events": events})
        headers = {}
        if auth is None:
            auth = f"Bearer {token or device_token}"
        if auth is not False:
            headers["HTTP_AUTHORIZATION"] = auth
        eager = _eager()
        with django_capture_on_commit_callbacks(execute=eager):
            response = client.post(URL, data=body, content_type=content_type, **headers)
        if not eager and response.status_code == 202:
            from streams.services import inbound_process

            pending = list(InboundItem.objects.filter(state=InboundItem.State.PENDING).values_list("pk", flat=True))
            inbound_process(item_ids=pending)
        return response

    return _post


def _stored() -> tuple[int, int, int]:
    return InboundItem.objects.count(), Activity.objects.count(), TimelineEntry.objects.count()


def _phone_call(event_id="call-1", **kw):
    return make_event(
        event_id,
        participants=[{"kind": "phone", "value": "(415) 555-0100", "role": "from", "name": "Ana"}],
        data={"duration_s": 42},
        **kw,
    )


def _mail_note(event_id="mail-1", **kw):
    return make_event(
        event_id,
        type="notification.mail",
        occurred_at="2026-05-01T11:00:00Z",
        participants=[{"kind": "email", "value": "Bo@Example.COM", "role": "from", "name": "Bo"}],
        data={"title": "Lunch?"},
        **kw,
    )


# --- happy path ---------------------------------------------------------------------------------


def test_happy_path_stores_ingests_and_fans_out(post, workspace, device):
    response = post([_phone_call(), _mail_note()])
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 2, "duplicate": 0, "received": 2}

    call = Activity.objects.get(dedup_key=f"device:{device.pk}/call-1")
    mail = Activity.objects.get(dedup_key=f"device:{device.pk}/mail-1")
    for activity in (call, mail):
        assert activity.workspace_id == workspace.pk
        assert activity.device_id == device.pk
        assert activity.channel == "device"
        assert activity.connector == "device"
        assert TimelineEntry.objects.filter(kind="d", owner_id=device.pk, activity=activity).count() == 1
    assert call.verb == "call" and call.direction == "in"
    assert call.occurred_at == dt.datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert call.extra == {"type": "call.incoming", "duration_s": 42}
    assert mail.subject == "Lunch?"

    phone = Identity.objects.get(workspace=workspace, kind="phone", value="+14155550100")
    email = Identity.objects.get(workspace=workspace, kind="email", value="bo@example.com")
    assert phone.contact.name == "Ana" and email.contact.name == "Bo"
    assert list(TimelineEntry.objects.filter(kind="c", owner_id=phone.contact_id).values_list("activity_id", flat=True)) == [call.pk]
    assert list(TimelineEntry.objects.filter(kind="c", owner_id=email.contact_id).values_list("activity_id", flat=True)) == [mail.pk]

    # The raw items were stored first and are marked done; the device was seen.
    items = InboundItem.objects.filter(device=device)
    assert sorted(items.values_list("external_id", flat=True)) == [f"{device.pk}/call-1", f"{device.pk}/mail-1"]
    assert set(items.values_list("state", flat=True)) == {InboundItem.State.DONE}
    assert set(items.values_list("scope", flat=True)) == {f"device:{device.pk}"}
    device.refresh_from_db()
    assert device.last_seen_at is not None
    assert not ImportFailure.objects.exists()


def test_integer_ids_and_state_events(post, device):
    response = post([make_event(7, type="battery", data={"battery": 55, "charging": True})])
    assert response.status_code == 202
    activity = Activity.objects.get(dedup_key=f"device:{device.pk}/7")
    assert activity.direction == "none"
    device.refresh_from_db()
    assert device.state["battery"]["value"] == 55
    assert device.state["charging"]["value"] is True


def test_event_with_an_invalid_participant_is_accepted_and_recorded(post, workspace, device):
    event = make_event(
        "mixed", type="note",
        participants=[{"kind": "phone", "value": "abc!!", "role": "to"},
                      {"kind": "email", "value": "ana@example.com", "role": "to"}],
    )
    response = post([event])
    assert response.status_code == 202
    activity = Activity.objects.get(dedup_key=f"device:{device.pk}/mixed")
    assert [p["value"] for p in activity.extra["invalid_participants"]] == ["abc!!"]
    assert Contact.objects.filter(workspace=workspace).count() == 1


# --- body-level problems ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        (b"\xff\xfe\xfa", "not valid JSON"),
        ('{"events": [{"id": 1, "data": {"lat": NaN}}]}', "NaN"),
        ('{"events": [{"id": 1, "data": {"lat": Infinity}}]}', "Infinity"),
        ("[" * 100_000 + "]" * 100_000, "nested"),
        ('{"events": [{"id": ' + "1" * 5000 + "}]}", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('"events"', "JSON object"),
        ("{}", "JSON object"),
        ('{"events": {"id": 1}}', "JSON object"),
        ('{"events": null}', "JSON object"),
        ('{"events": []}', "events is empty"),
    ],
)
def test_bad_body_is_400_and_stores_nothing(post, body, fragment):
    before = _stored()
    response = post(body=body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert _stored() == before


def test_body_over_size_limit_is_413(post, settings):
    settings.MESH_INGEST_MAX_BYTES = 1000
    events = [_phone_call(f"call-{i}") for i in range(20)]
    body = json.dumps({"events": events})
    assert len(body) > 1000
    before = _stored()
    response = post(body=body)
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["error"]
    assert _stored() == before


def test_body_just_under_size_limit_is_accepted(post, settings):
    body = json.dumps({"events": [_phone_call()]})
    settings.MESH_INGEST_MAX_BYTES = len(body)
    response = post(body=body)
    assert response.status_code == 202
    assert Activity.objects.count() == 1


def test_too_many_events_is_413(post, settings):
    settings.MESH_INGEST_MAX_EVENTS = 3
    before = _stored()
    response = post([make_event(f"e{i}") for i in range(4)])
    assert response.status_code == 413
    assert "more than 3 events" in response.json()["error"]
    assert _stored() == before
    response = post([make_event(f"e{i}") for i in range(3)])
    assert response.status_code == 202
    assert response.json()["accepted"] == 3


# --- event schema -------------------------------------------------------------------------------


def _assert_rejected(response, before, *, index, field, fragment=""):
    assert response.status_code == 400, response.content
    body = response.json()
    assert "nothing was stored" in body["error"]
    matching = [e for e in body["errors"] if e["index"] == index and e["field"] == field]
    assert matching, body["errors"]
    if fragment:
        assert any(fragment in e["error"] for e in matching), matching
    assert _stored() == before


@pytest.mark.parametrize("missing", ["id", "type", "occurred_at"])
def test_missing_required_field(post, missing):
    bad = make_event("bad")
    del bad[missing]
    before = _stored()
    response = post([make_event("good"), bad])  # the good one is not stored either
    _assert_rejected(response, before, index=1, field=missing, fragment="required")
    if missing != "id":
        assert response.json()["errors"][0]["id"] == "bad"


@pytest.mark.parametrize(
    "changes, field, fragment",
    [
        ({"id": ["a", "b"]}, "id", "string or an integer"),
        ({"id": True}, "id", "string or an integer"),
        ({"id": 1.5}, "id", "string or an integer"),
        ({"id": ""}, "id", "1 to 200"),
        ({"id": "x" * 201}, "id", "1 to 200"),
        ({"type": "Not Valid"}, "type", "lowercase"),
        ({"type": 3}, "type", "lowercase"),
        ({"type": ""}, "type", "lowercase"),
        ({"data": "a string"}, "data", "JSON object"),
        ({"data": [1, 2]}, "data", "JSON object"),
        ({"participants": {"kind": "phone"}}, "participants", "list"),
        ({"participants": "+14155550100"}, "participants", "list"),
        ({"participants": ["+14155550100"]}, "participants[0]", "object"),
        ({"participants": [{"kind": "phone", "role": "from"}]}, "participants[0].value", "required"),
        ({"participants": [{"kind": "phone", "value": "  ", "role": "from"}]}, "participants[0].value", "required"),
        ({"participants": [{"kind": "phone", "value": True, "role": "from"}]}, "participants[0].value", "required"),
        ({"participants": [{"value": "+14155550100", "role": "from"}]}, "participants[0].kind", "required"),
        ({"participants": [{"kind": "phone", "value": "1", "role": "sender"}]}, "participants[0].role", "must be one of"),
        ({"participants": [{"kind": "phone", "value": "1", "role": ["from"]}]}, "participants[0].role", "must be one of"),
        ({"participants": [{"kind": "phone", "value": "1", "role": {"x": 1}}]}, "participants[0].role", "must be one of"),
        ({"participants": [{"kind": "phone", "value": "1", "name": 5}]}, "participants[0].name", "string"),
        ({"visibility": "friends"}, "visibility", "private"),
    ],
)
def test_wrong_types_are_400_naming_index_and_field(post, changes, field, fragment):
    bad = make_event("bad")
    bad.update(changes)
    before = _stored()
    response = post([make_event("ok-1"), make_event("ok-2"), bad])
    _assert_rejected(response, before, index=2, field=field, fragment=fragment)


def test_every_problem_is_listed(post):
    before = _stored()
    response = post([{"type": "Bad", "data": 1}, "not an object", make_event("fine")])
    assert response.status_code == 400
    errors = response.json()["errors"]
    fields = {(e["index"], e["field"]) for e in errors}
    assert {(0, "id"), (0, "type"), (0, "occurred_at"), (0, "data"), (1, "")} <= fields
    assert not any(e["index"] == 2 for e in errors)
    assert response.json()["error"].startswith(f"{len(errors)} problem(s)")
    assert _stored() == before


@pytest.mark.parametrize(
    "occurred_at, fragment",
    [
        ("2026-05-01T10:00:00", "UTC offset"),
        ("2026-05-01", "UTC offset"),
        ("yesterday", "RFC 3339"),
        ("", "RFC 3339"),
        ("1970-01-01T00:00:00Z", "before 1980"),
        (0, "before 1980"),
        ("2999-01-01T00:00:00Z", "future"),
        (32503680000, "future"),  # year 3000 in epoch seconds
        (10**20, "out of range"),
        (-(10**20), "out of range"),
        ("0001-01-01T00:00:00+01:00", "out of range"),
        (True, "epoch seconds"),
        (None, "epoch seconds"),
        ({"t": 1}, "epoch seconds"),
    ],
)
def test_bad_dates_are_400(post, occurred_at, fragment):
    before = _stored()
    response = post([make_event("d", occurred_at=occurred_at)])
    _assert_rejected(response, before, index=0, field="occurred_at", fragment=fragment)


@pytest.mark.parametrize(
    "occurred_at, expected",
    [
        (1777629600, dt.datetime(2026, 5, 1, 10, 0, tzinfo=UTC)),
        (1777629600.5, dt.datetime(2026, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        (1777629600000, dt.datetime(2026, 5, 1, 10, 0, tzinfo=UTC)),  # milliseconds
        ("2026-05-01T12:00:00+02:00", dt.datetime(2026, 5, 1, 10, 0, tzinfo=UTC)),
        ("2026-05-01T10:00:00z", dt.datetime(2026, 5, 1, 10, 0, tzinfo=UTC)),
    ],
)
def test_accepted_time_formats(post, device, occurred_at, expected):
    response = post([make_event("t", occurred_at=occurred_at)])
    assert response.status_code == 202, response.content
    assert Activity.objects.get(dedup_key=f"device:{device.pk}/t").occurred_at == expected


def test_a_few_minutes_ahead_is_tolerated(post):
    soon = (dt.datetime.now(UTC) + dt.timedelta(minutes=10)).isoformat()
    assert post([make_event("skew", occurred_at=soon)]).status_code == 202


# --- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        False,  # no header
        "",
        "Bearer",
        "Bearer ",
        "Bearer mesh_dev_wrong",
        "Token {token}",
        "Basic {token}",
        "{token}",
        "Bearer " + "x" * 500,
    ],
)
def test_bad_credentials_are_401(post, device_token, auth):
    if isinstance(auth, str):
        auth = auth.format(token=device_token)
    before = _stored()
    response = post([make_event("e")], auth=auth)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "token" in response.json()["error"]
    assert _stored() == before


def test_bearer_scheme_is_case_insensitive(post, device_token):
    assert post([make_event("e")], auth=f"bearer {device_token}").status_code == 202


def test_revoked_token_is_401_and_same_answer_as_unknown(post, device, device_token):
    from streams.services import device_revoke

    assert post([make_event("before")]).status_code == 202
    device_revoke(device=device)
    before = _stored()
    revoked = post([make_event("after")])
    unknown = post([make_event("after")], token="mesh_dev_unknown")
    assert revoked.status_code == unknown.status_code == 401
    assert revoked.json() == unknown.json()
    assert revoked["WWW-Authenticate"] == unknown["WWW-Authenticate"]
    assert _stored() == before


def test_rotated_token_replaces_the_old_one(post, device, device_token):
    from streams.services import device_rotate_token

    new_token = device_rotate_token(device=device)
    assert post([make_event("a")], token=device_token).status_code == 401
    assert post([make_event("a")], token=new_token).status_code == 202


def test_auth_is_checked_before_body(post):
    response = post(body="{not json", auth="Bearer nope")
    assert response.status_code == 401


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_other_methods_are_405(client, device_token, method):
    response = getattr(client, method)(URL, HTTP_AUTHORIZATION=f"Bearer {device_token}")
    assert response.status_code == 405
    assert "POST" in response["Allow"]
    assert not InboundItem.objects.exists()


# --- duplicates ---------------------------------------------------------------------------------


def test_identical_duplicate_in_one_batch_is_stored_once(post, device):
    event = _phone_call("dup")
    response = post([event, dict(event), make_event("other")])
    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicate": 1, "received": 3}
    assert Activity.objects.filter(dedup_key=f"device:{device.pk}/dup").count() == 1
    assert InboundItem.objects.filter(external_id=f"{device.pk}/dup").count() == 1
    assert Activity.objects.count() == 2


def test_same_id_different_content_in_one_batch_is_400(post):
    before = _stored()
    response = post([make_event("dup"), make_event("x"), make_event("dup", type="call.missed")])
    _assert_rejected(response, before, index=2, field="id", fragment="also at index 0")


def test_string_and_integer_id_with_the_same_text_collide(post):
    before = _stored()
    response = post([make_event(5), make_event("5")])
    _assert_rejected(response, before, index=1, field="id", fragment="different content")


def test_same_batch_twice_second_is_all_duplicates(post, device):
    events = [_phone_call(), _mail_note(), make_event("third", type="battery", data={"battery": 3})]
    first = post(events)
    assert first.json() == {"accepted": 3, "duplicate": 0, "received": 3}
    after_first = _stored()
    contacts = Contact.objects.count()
    second = post(events)
    assert second.status_code == 202
    assert second.json() == {"accepted": 0, "duplicate": 3, "received": 3}
    assert _stored() == after_first
    assert Contact.objects.count() == contacts
    # A partly new batch: only the new event is accepted.
    third = post(events + [make_event("fourth")])
    assert third.json() == {"accepted": 1, "duplicate": 3, "received": 4}
    assert Activity.objects.count() == 4


def test_resending_after_lost_response_changes_no_counts(post, device):
    post([_phone_call()])
    contact = Identity.objects.get(kind="phone").contact
    contact.refresh_from_db()
    count = contact.activity_count
    device.refresh_from_db()
    device_count = device.activity_count
    post([_phone_call()])
    contact.refresh_from_db()
    device.refresh_from_db()
    assert (contact.activity_count, device.activity_count) == (count, device_count) == (1, 1)


# --- workspace isolation ------------------------------------------------------------------------


def test_device_of_another_workspace_writes_only_into_its_own(post, workspace, other_workspace, device):
    from streams.services import device_create

    other_device, other_token = device_create(workspace=other_workspace, name="Their phone")
    assert post([_phone_call("shared-id")]).status_code == 202
    response = post([_phone_call("shared-id"), _mail_note()], token=other_token)
    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicate": 0, "received": 2}

    ours = Activity.objects.filter(workspace=workspace)
    theirs = Activity.objects.filter(workspace=other_workspace)
    assert list(ours.values_list("dedup_key", flat=True)) == [f"device:{device.pk}/shared-id"]
    assert sorted(theirs.values_list("dedup_key", flat=True)) == sorted(
        [f"device:{other_device.pk}/shared-id", f"device:{other_device.pk}/mail-1"]
    )
    assert set(theirs.values_list("device_id", flat=True)) == {other_device.pk}
    assert set(InboundItem.objects.filter(device=other_device).values_list("workspace_id", flat=True)) == {
        other_workspace.pk
    }
    # Same phone number, two workspaces: two identities, two contacts, no crossing timelines.
    ours_phone = Identity.objects.get(workspace=workspace, kind="phone")
    theirs_phone = Identity.objects.get(workspace=other_workspace, kind="phone")
    assert ours_phone.contact_id != theirs_phone.contact_id
    assert theirs_phone.contact.workspace_id == other_workspace.pk
    assert not Identity.objects.filter(workspace=workspace, kind="email").exists()
    our_activity_ids = set(ours.values_list("pk", flat=True))
    for entry in TimelineEntry.objects.filter(kind="c", owner_id=ours_phone.contact_id):
        assert entry.activity_id in our_activity_ids
    assert not TimelineEntry.objects.filter(kind="d", owner_id=device.pk, activity__in=theirs).exists()


# --- JSONL file import of the same events -------------------------------------------------------


def _jsonl(path: Path, lines: list) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def _file_source(workspace, device, path, name="phone file"):
    from streams.services import source_create

    return source_create(
        workspace=workspace, connector="device", name=name, config={"path": str(path), "device": device.pk}
    )


def test_file_import_after_push_adds_nothing(post, workspace, device, tmp_path):
    from streams.services import source_sync

    events = [_phone_call(), _mail_note(), make_event(3, type="battery", data={"battery": 80})]
    assert post(events).json()["accepted"] == 3
    before = _stored()
    source = _file_source(workspace, device, _jsonl(tmp_path / "events.jsonl", events))
    run = source_sync(source=source)
    assert (run.fetched, run.new, run.duplicate, run.failed) == (3, 0, 3, 0)
    assert run.status == "ok"
    assert Activity.objects.count() == before[1]
    assert TimelineEntry.objects.count() == before[2]
    source.refresh_from_db()
    assert source.cursor["line"] == 3


def test_push_after_file_import_is_all_duplicates(post, workspace, device, tmp_path):
    from streams.services import source_sync

    events = [_phone_call(), _mail_note()]
    run = source_sync(source=_file_source(workspace, device, _jsonl(tmp_path / "events.jsonl", events)))
    assert run.new == 2
    response = post(events)
    # The raw items are new to the push path; the activities already exist.
    assert response.status_code == 202
    assert Activity.objects.count() == 2
    assert set(Activity.objects.values_list("dedup_key", flat=True)) == {
        f"device:{device.pk}/call-1", f"device:{device.pk}/mail-1"
    }


def test_file_import_bad_lines_become_failures_and_the_rest_imports(workspace, device, tmp_path):
    from streams.services import source_health, source_sync

    path = _jsonl(
        tmp_path / "mixed.jsonl",
        [
            _phone_call("good-1"),
            "{this is not json",
            make_event("bad-type", type="Not Valid"),
            "",
            {"type": "note", "occurred_at": "2026-05-01T10:00:00Z"},  # no id
            '{"id": "nan", "type": "location", "occurred_at": 1777629600, "data": {"lat": NaN}}',
            "[1, 2, 3]",
            make_event("good-2", occurred_at="2026-05-01T12:00:00Z"),
        ],
    )
    source = _file_source(workspace, device, path)
    run = source_sync(source=source)
    assert (run.new, run.failed, run.duplicate) == (2, 5, 0)
    assert run.status == "ok"
    assert set(Activity.objects.values_list("dedup_key", flat=True)) == {
        f"device:{device.pk}/good-1", f"device:{device.pk}/good-2"
    }
    failures = {f.external_id: f for f in ImportFailure.objects.filter(scope=f"source:{source.pk}")}
    assert set(failures) == {
        f"{device.pk}/line-2", f"{device.pk}/bad-type", f"{device.pk}/line-5", f"{device.pk}/line-6",
        f"{device.pk}/line-7",
    }
    assert "line 2" in failures[f"{device.pk}/line-2"].reason
    assert "invalid JSON" in failures[f"{device.pk}/line-2"].reason
    assert failures[f"{device.pk}/line-2"].payload["_text"] == "{this is not json"
    assert "type:" in failures[f"{device.pk}/bad-type"].reason
    assert failures[f"{device.pk}/bad-type"].payload["id"] == "bad-type"
    assert "id: required" in failures[f"{device.pk}/line-5"].reason
    assert "NaN" in failures[f"{device.pk}/line-6"].reason
    assert "line 7: event must be a JSON object" in failures[f"{device.pk}/line-7"].reason
    assert failures[f"{device.pk}/line-7"].payload["_value"] == [1, 2, 3]
    assert all(f.device_id == device.pk and f.source_id == source.pk for f in failures.values())
    health = source_health(source=source)
    assert not health["healthy"] and health["open_failures"] == 5

    # Running it again re-reads nothing (the cursor is at the end) and stores nothing twice.
    again = source_sync(source=source)
    assert (again.fetched, again.new, again.failed) == (0, 0, 0)
    assert Activity.objects.count() == 2


def test_file_import_needs_a_device(workspace, tmp_path):
    from connectors.base import ConfigError

    connector = DeviceConnector({"path": str(tmp_path / "x.jsonl")}, {})
    with pytest.raises(ConfigError, match="device"):
        list(connector.fetch(None))


# --- fixture payloads ---------------------------------------------------------------------------


def _load_fixture(name: str) -> dict:
    path = FIXTURES / name
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:  # fail fast, naming the file
        pytest.fail(f"fixture {path} is not valid JSON: {exc}", pytrace=False)


def _expected(device_id: int) -> dict[str, dict]:
    def draft(**fields):
        base = {
            "channel": "device", "direction": None, "subject": "", "text": "", "html": "", "url": "",
            "thread_key": "", "participants": [], "device": str(device_id), "visibility": "private",
            "attachments": [], "automated": False,
        }
        base.update(fields)
        base["participants"] = [{"avatar": "", **p} for p in base["participants"]]  # no device sends one
        return base

    return {
        "call__incoming.json": draft(
            verb="call",
            direction="in",
            occurred_at="2026-05-01T07:15:30+00:00",
            dedup_key=f"device:{device_id}/call-2026-05-01-0001",
            text="Incoming call, 3 min 4 s",
            participants=[{"role": "from", "kind": "phone", "value": "(415) 555-0100", "display": "Ana Lima"}],
            extra={"type": "call.incoming", "duration_s": 184, "answered": True,
                   "summary": "Incoming call, 3 min 4 s", "sim": 1},
        ),
        "location__owntracks_like.json": draft(
            verb="location",
            direction="none",
            occurred_at="2026-05-01T09:00:00+00:00",
            dedup_key=f"device:{device_id}/loc-1777626000",
            subject="Arrived home",
            visibility="public",
            extra={"type": "location", "_type": "location", "tid": "ph", "lat": 52.520008, "lon": 13.404954,
                   "accuracy": 12, "alt": 34, "batt": 81, "conn": "w", "place": "home",
                   "title": "Arrived home", "inregions": ["home"]},
        ),
        "battery.json": draft(
            verb="battery",
            direction="none",
            occurred_at="2026-05-01T10:00:00+00:00",
            dedup_key=f"device:{device_id}/battery-2026-05-01T10:00:00Z",
            subject="Battery low",
            text="17% remaining, about 1 h 20 min",
            extra={"type": "battery", "battery": 17, "charging": False, "title": "Battery low",
                   "text": "17% remaining, about 1 h 20 min"},
        ),
        "sms__sent.json": draft(
            verb="sms",
            direction="out",
            occurred_at="2026-05-01T11:30:00.250000+00:00",
            dedup_key=f"device:{device_id}/90210",
            text="Running 10 min late, sorry!",
            thread_key="thread-415-555-0100",
            participants=[{"role": "to", "kind": "tel", "value": "+1 415-555-0100", "display": "Ana"}],
            extra={"type": "sms.sent", "text": "Running 10 min late, sorry!", "thread": "thread-415-555-0100",
                   "parts": 1},
        ),
        "notification__email.json": draft(
            verb="notification",
            direction=None,  # has a sender: Mesh decides (self → out, else in)
            occurred_at="2026-05-02T11:45:00+00:00",
            dedup_key=f"device:{device_id}/notif-8c1f",
            subject="Contract draft v2",
            text="Ana: here is the second draft, comments welcome",
            participants=[
                {"role": "from", "kind": "email", "value": "Ana@Example.COM", "display": "Ana Lima"},
                {"role": "to", "kind": "email", "value": "me@example.org", "display": ""},
            ],
            extra={"type": "notification.mail", "app": "com.google.android.gm", "title": "Contract draft v2",
                   "text": "Ana: here is the second draft, comments welcome"},
        ),
    }


FIXTURE_NAMES = sorted(p.name for p in FIXTURES.glob("*.json"))


def test_every_fixture_is_valid_and_has_an_expectation():
    from connectors.device.schema import validate_event

    assert FIXTURE_NAMES, "no fixtures found"
    assert set(FIXTURE_NAMES) == set(_expected(1))
    for name in FIXTURE_NAMES:
        assert validate_event(_load_fixture(name)) == [], name


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_posts_and_normalizes_to_the_expected_draft(post, workspace, device, name):
    event = _load_fixture(name)
    response = post([event])
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 1, "duplicate": 0, "received": 1}

    item = InboundItem.objects.get(device=device)
    assert item.payload == event
    connector = DeviceConnector({}, {}, context={"device_id": device.pk})
    draft = connector.normalize(RawItem(item.external_id, item.payload))
    expected = _expected(device.pk)[name]
    assert draft.as_dict() == expected

    activity = Activity.objects.get(workspace=workspace, dedup_key=expected["dedup_key"])
    assert activity.occurred_at == dt.datetime.fromisoformat(expected["occurred_at"])
    assert (activity.verb, activity.subject, activity.text, activity.visibility, activity.thread_key) == (
        expected["verb"], expected["subject"], expected["text"], expected["visibility"], expected["thread_key"]
    )
    assert activity.direction == (expected["direction"] or "in")
    assert activity.extra == expected["extra"]
    assert activity.raw == event
    assert TimelineEntry.objects.filter(kind="d", owner_id=device.pk, activity=activity).exists()
    assert activity.participants.count() == len(expected["participants"])


def test_location_fixture_updates_device_state(post, device):
    post([_load_fixture("location__owntracks_like.json"), _load_fixture("battery.json")])
    device.refresh_from_db()
    assert device.state["lat"] == {"value": 52.520008, "at": "2026-05-01T09:00:00+00:00"}
    assert device.state["place"]["value"] == "home"
    assert device.state["battery"] == {"value": 17, "at": "2026-05-01T10:00:00+00:00"}


def test_data_type_key_does_not_override_the_event_type(device):
    connector = DeviceConnector({}, {}, context={"device_id": device.pk})
    event = make_event("t", type="battery", data={"type": "li-ion", "battery": 40})
    draft = connector.normalize(RawItem(f"{device.pk}/t", event))
    assert draft.extra["type"] == "battery"



def test_one_queued_ingest_task_per_scope_and_nothing_left_behind(workspace, device, django_capture_on_commit_callbacks):
    """inbound_kick: while a scope's task is queued (its kick is set) a new item queues no second
    task; the task clears the kick before it looks, takes every pending item of the scope in
    batches, and the next item kicks again."""
    from celery.signals import task_prerun
    from django.core.cache import cache

    from streams import services
    from streams.ingest import scope_for
    from streams.services import inbound_kick_key, inbound_process, inbound_store

    ran = []

    def count(sender=None, **kw):
        if sender is not None and sender.name == "streams.tasks.ingest_inbound":
            ran.append(kw.get("args"))

    task_prerun.connect(count)
    try:
        scope = scope_for(device=device)
        key = inbound_kick_key(scope)
        cache.set(key, 1, timeout=60)  # a task is queued and has not started yet
        stored = []
        for i in range(7):
            with django_capture_on_commit_callbacks(execute=True):
                ids, dup = inbound_store(workspace=workspace, connector="device", device=device,
                                         items=[RawItem(f"{device.pk}/k{i}", make_event(f"k{i}"))])
            stored += ids
        assert ran == [] and len(stored) == 7
        assert InboundItem.objects.filter(pk__in=stored, state="pending").count() == 7

        # The queued task runs (it names only the first item) and finds all seven, in batches.
        old_batch = services.INBOUND_BATCH
        services.INBOUND_BATCH = 3
        try:
            result = inbound_process(item_ids=stored[:1])
        finally:
            services.INBOUND_BATCH = old_batch
        assert result.new == 7
        assert cache.get(key) is None
        assert not InboundItem.objects.filter(state="pending").exists()
        assert device.activities.count() == 7

        # The next item kicks a task again (eager here: it runs at once and is ingested).
        with django_capture_on_commit_callbacks(execute=True):
            ids, _ = inbound_store(workspace=workspace, connector="device", device=device,
                                   items=[RawItem(f"{device.pk}/k7", make_event("k7"))])
        assert len(ran) == 1 and InboundItem.objects.get(pk=ids[0]).state == "done"
        assert device.activities.count() == 8
    finally:
        task_prerun.disconnect(count)


# --- hostile input at the door (issue 15.1, 15.2) -----------------------------------------------


def _fixture_body(name: str) -> str:
    """A request body exactly as a client sent it (escapes like \\u0000 kept as written); kept
    apart from the one-event fixtures above, which are all valid."""
    return (FIXTURES / "hostile" / name).read_text()


def test_deeply_nested_data_is_refused_with_a_400_naming_the_field(post, device):
    response = post(body=_fixture_body("batch__deep_data.json"))
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"index": 0, "id": "deep-1", "field": "data", "error": "nested deeper than 32 levels"}
    ]
    assert _stored() == (0, 0, 0)


def test_data_larger_than_the_per_event_limit_is_refused_naming_the_field(post, device):
    response = post([make_event("big", type="note", data={"blob": "x" * 70_000})])
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"index": 0, "id": "big", "field": "data", "error": "larger than 65536 bytes as JSON"}
    ]
    assert _stored() == (0, 0, 0)


def test_nul_and_lone_surrogates_anywhere_are_cleaned_and_the_batch_is_stored(post, workspace, device):
    body = _fixture_body("batch__nul_and_lone_surrogates.json")
    response = post(body=body)
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 2, "duplicate": 0, "received": 2}
    # The id is cleaned like every other string, and the cleaned id is the event's identity.
    item = InboundItem.objects.get(external_id=f"{device.pk}/nul-1")
    assert item.payload["data"] == {"text": "On my way \ufffd", "key": "v\ufffd", "thread": "t"}
    activity = Activity.objects.get(dedup_key=f"device:{device.pk}/nul-1")
    assert activity.text == "On my way \ufffd" and activity.extra["key"] == "v\ufffd"
    sender = Identity.objects.get(workspace=workspace, kind="phone", value="+14155550100")
    assert sender.contact.name == "An\ufffda"
    assert Activity.objects.filter(dedup_key=f"device:{device.pk}/plain-2").exists()
    # The same batch again, and the event under its cleaned id, are repeats.
    assert post(body=body).json() == {"accepted": 0, "duplicate": 2, "received": 2}
    again = post([make_event("nul-1", type="sms.received")]).json()
    assert again == {"accepted": 0, "duplicate": 1, "received": 1}
    assert Activity.objects.filter(device=device).count() == 2


def test_file_import_makes_deep_lines_failures_and_cleans_nul_and_surrogates(workspace, device, tmp_path):
    from streams.services import source_sync

    deep_event = json.loads(_fixture_body("batch__deep_data.json"))["events"][0]
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join([
        json.dumps(deep_event),
        r'{"id": "n\u0000ul", "type": "note", "occurred_at": "2026-05-01T10:00:00Z", "data": {"text": "a\u0000b \ud83d"}}',
        json.dumps(make_event("fine", type="note", data={"text": "fine"})),
    ]) + "\n")
    source = _file_source(workspace, device, path)
    run = source_sync(source=source)
    assert (run.new, run.failed) == (2, 1)
    failure = ImportFailure.objects.get(scope=f"source:{source.pk}")
    assert failure.external_id == f"{device.pk}/deep-1"
    assert failure.reason == "data: nested deeper than 32 levels"
    assert Activity.objects.get(dedup_key=f"device:{device.pk}/nul").text == "ab \ufffd"


def _deep(levels: int):
    value = "bottom"
    for _ in range(levels):
        value = {"n": value}
    return value


def test_an_item_stored_with_deep_data_before_the_door_refused_it_still_renders(client, member_client, workspace, device):
    from tests.factories import ingest_events

    ingest_events(workspace, device, [make_event("old", type="note", visibility="public",
                                                 data={"title": "Stored long ago", "place": "Home"})])
    # As old data would be: written before the door bounded depth.
    Activity.objects.filter(dedup_key=f"device:{device.pk}/old").update(
        extra={"type": _deep(700), "place": _deep(700), "list": [[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]})
    device.state = {"place": {"value": _deep(700), "at": "2026-05-01T10:00:00+00:00"}}
    device.save(update_fields=["state"])
    for url in (f"/devices/{device.pk}/", "/devices/", f"/devices/{device.pk}/?q=stored", "/search/?q=stored"):
        response = member_client.get(url)
        assert response.status_code == 200, url
        assert "n: n: n: n: n: n: n: n: " in response.content.decode() and "…" in response.content.decode(), url
    device_page = member_client.get(f"/devices/{device.pk}/").content.decode()
    assert "{&#x27;n&#x27;: {" not in device_page  # a type that is not a string is not shown as one
    lifestream = client.get(f"/@{workspace.slug}/")
    assert lifestream.status_code == 200 and "n: n: n:" in lifestream.content.decode()


_HOSTILE_CHARS = st.one_of(st.characters(), st.sampled_from(["\x00", "\x07", "\x1f", "\x7f", "\ud83d", "\udc00"]))
_HOSTILE_TEXT = st.text(_HOSTILE_CHARS, min_size=1, max_size=12)


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_id=_HOSTILE_TEXT, key=_HOSTILE_TEXT, value=_HOSTILE_TEXT, name=_HOSTILE_TEXT, phone=_HOSTILE_TEXT)
def test_any_text_in_any_field_is_stored_cleaned_or_refused_by_field_never_a_500(
    post, device, event_id, key, value, name, phone
):
    from connectors.text import clean_text

    event = make_event(event_id, type="note", data={key: value, "text": value},
                       participants=[{"kind": "phone", "value": phone, "role": "from", "name": name}])
    response = post(body=json.dumps({"events": [event]}))  # lone surrogates as \\ud83d escapes
    assert response.status_code in (202, 400), response.content
    if response.status_code == 400:
        assert {e["field"] for e in response.json()["errors"]} <= {"id", "participants[0].value"}
        return
    assert response.json()["accepted"] + response.json()["duplicate"] == 1
    assert InboundItem.objects.filter(external_id=f"{device.pk}/{clean_text(event_id)}").exists()


@pytest.mark.django_db(transaction=True)  # the sync API serves committed changes only
def test_a_deleted_device_s_activities_leave_the_replicas_of_the_devices_scope(workspace, tmp_path):
    """Deleting a device (the admin does; Mesh revokes) leaves its activities without a device,
    out of the ``devices`` scope: a replica of that scope gets their tombstones and ends equal
    to the server, through the reference client."""
    from streams.selectors.sync import sync_state
    from streams.sync import device_sync_scope_set
    from streams.sync_client import Replica
    from tests.factories import ingest_events, make_device
    from tests.fakes.sync_http import pull

    phone, _ = make_device(workspace, "Phone")
    laptop, laptop_token = make_device(workspace, "Laptop")
    device_sync_scope_set(device=laptop, scope="devices")
    ingest_events(workspace, phone, [make_event(f"p{i}", type="note", seq=i + 1) for i in range(3)])
    ingest_events(workspace, laptop, [make_event("l1", type="note")])
    replica = Replica(str(tmp_path / "laptop.sqlite3"))
    try:
        pull(replica, laptop_token)
        assert len(replica.state()) == 4
        phone.delete()
        result = pull(replica, laptop_token)
        assert result.changes == 3
        assert [i for _, i in replica.state()] == list(Activity.objects.filter(device=laptop).values_list("pk", flat=True))
        assert replica.state() == sync_state(device=laptop)
    finally:
        replica.close()
