"""OwnTracks (issue 16 §2): each ``_type`` of the booklet (owntracks.org/booklet/tech/json/) as a
fixture normalized to the whole expected device event, the connector conformance kit over a
file of them (JSON lines and Recorder ``.rec`` lines), and ``POST /api/v1/owntracks`` as the app
calls it in HTTP mode: Basic credentials with the device token as password, ``[]`` back, a
resend stored once, unknown types kept raw as skip records, bad bodies refused plainly."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import pytest

from connectors.base import BadItem, RawItem
from connectors.owntracks.connector import OwnTracksConnector
from connectors.testing import ConnectorConformance, draft_dict
from streams.models import Activity, ImportFailure, InboundItem

FIXTURES = Path(__file__).parent / "fixtures" / "owntracks"
URL = "/api/v1/owntracks"
DEVICE = 7


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def digest(message: dict) -> str:
    """The content key of a message that carries no time: SHA-256 of its canonical JSON, the
    topic (how it travelled) left out."""
    canonical = json.dumps({k: v for k, v in message.items() if k != "topic"}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def at(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def expected(name: str, device: int = DEVICE) -> tuple[str, dict]:
    """(external id, whole draft) of each readable fixture, written from the booklet's fields."""
    def draft(key, verb, when, extra, text=""):
        return f"ot/{key}", draft_dict(
            channel="device", verb=verb, direction="none", occurred_at=at(when), dedup_key=f"owntracks:{device}/{key}",
            device=str(device), text=text, extra=extra)

    home_region = {"name": "Home", "latitude": 48.856826, "longitude": 2.292713, "radius": 80, "region_id": "6da9cf"}
    return {
        "location__ios_http": draft("location/1777636800", "location", 1777636800, {
            "type": "location", "lat": 48.856826, "lon": 2.292713, "accuracy": 12, "place": "Home",
            "inregions": ["Home", "Garden"], "region_ids": ["6da9cf", "3defa7"], "battery": 64, "charging": True,
            "network": "wifi", "altitude": 41, "velocity": 0, "trigger": "u", "tid": "JJ", "ssid": "mywifi",
            "bssid": "b0:f2:8:45:94:33"}, "At Home"),
        "location__android_ping": draft("location/1777640400", "location", 1777640400, {
            "type": "location", "lat": 37.7765, "lon": -122.3942, "accuracy": 35, "battery": 18, "charging": False,
            "network": "mobile", "velocity": 4, "trigger": "p", "tid": "an"}),
        "transition__enter": draft("transition/1777636700/enter/6da9cf", "location", 1777636700, {
            "type": "location.enter", "lat": 48.856826, "lon": 2.292713, "accuracy": 10, "place": "Home",
            "trigger": "c", "tid": "JJ", "region_id": "6da9cf", "region_created_at": at(1775000000)},
            "Arrived at Home"),
        "transition__leave": draft("transition/1777644000/leave/6da9cf", "location", 1777644000, {
            "type": "location.leave", "lat": 48.8574, "lon": 2.2951, "accuracy": 16, "place": "Home",
            "trigger": "c", "tid": "JJ", "region_id": "6da9cf", "region_created_at": at(1775000000)}, "Left Home"),
        "waypoint__home": draft("waypoint/1775000000", "place", 1775000000, {"type": "place.defined", **home_region},
                                "Place defined: Home"),
        "waypoints__export": draft(f"waypoints/{digest(fixture('waypoints__export'))}", "place", 1775100000, {
            "type": "place.defined", "places": [home_region, {
                "name": "Office", "latitude": 48.8738, "longitude": 2.295, "radius": 150, "region_id": "3defa7"}]},
            "Places defined: Home, Office"),
        "lwt__broker": draft("lwt/1777600000", "presence", 1777600000, {
            "type": "presence.offline", "presence": "offline", "connected_at": at(1777600000)}),
        "status__ios": draft(f"status/{digest(fixture('status__ios'))}", "status", 1777636900, {
            "type": "status", "iOS": fixture("status__ios")["iOS"]}),
        "card__friend": draft(f"card/{digest(fixture('card__friend'))}", "card", 1777636950, {
            "type": "card", "name": "Jane Jolie", "tid": "JJ"}, "Jane Jolie"),
    }[name]


# Fixtures Mesh keeps raw and skips, with the reason the skip record gives.
SKIPPED = {
    "beacon__ranging": "type 'beacon' is kept raw and not imported",
    "encrypted__payload": "encrypted .* turn encryption off in the app",
    "location__lat_out_of_range": "lat must be a number from -90 to 90, not 91.5",
}


def connector(device: int = DEVICE, **context) -> OwnTracksConnector:
    return OwnTracksConnector({}, {}, context={"device_id": device, **context})


def test_every_fixture_has_an_expectation():
    names = {p.stem for p in FIXTURES.glob("*.json")}
    readable = names - set(SKIPPED)
    assert {n.split("__")[0] for n in names} >= {"location", "transition", "waypoint", "waypoints", "lwt", "status",
                                                 "card"}
    for name in readable:
        expected(name)  # a KeyError names a fixture without its expected draft


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json") if p.stem not in SKIPPED))
def test_fixture_normalizes_to_the_whole_expected_event(name):
    from connectors.owntracks.messages import raw_item

    external_id, draft = expected(name)
    item = raw_item(fixture(name))
    assert item.external_id == external_id
    normalized = connector().normalize(item)
    normalized.validate()
    assert normalized.as_dict() == draft


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_unreadable_fixture_is_a_skip_record_with_its_reason(name):
    from connectors.owntracks.messages import raw_item

    with pytest.raises(BadItem, match=SKIPPED[name]):
        connector().normalize(raw_item(fixture(name)))


def test_a_device_with_public_places_publishes_its_fixes_and_transitions_only():
    from connectors.owntracks.messages import raw_item

    public = connector(places_public=True)
    assert public.normalize(raw_item(fixture("location__ios_http"))).visibility == "public"
    assert public.normalize(raw_item(fixture("transition__enter"))).visibility == "public"
    assert public.normalize(raw_item(fixture("card__friend"))).visibility == "private"
    assert connector().normalize(raw_item(fixture("location__ios_http"))).visibility == "private"


def test_mqtt_message_is_the_item_the_http_door_stores():
    payload = json.dumps(fixture("location__android_ping")).encode()
    item = OwnTracksConnector.mqtt_message("owntracks/ana/pixel", payload)
    assert item.external_id == "ot/location/1777640400"
    assert item.payload["topic"] == "owntracks/ana/pixel"
    event = OwnTracksConnector.mqtt_message("owntracks/ana/pixel/event", json.dumps(fixture("transition__enter")).encode())
    assert event.payload["topic"] == "owntracks/jane/phone/event"  # the app's own topic is kept
    assert OwnTracksConnector.mqtt_message("owntracks/ana/pixel", b"") is None  # a retained message cleared
    with pytest.raises(ValueError, match="not valid JSON"):
        OwnTracksConnector.mqtt_message("owntracks/ana/pixel", b"{nope")
    will = OwnTracksConnector.mqtt_message("owntracks/ana/pixel", json.dumps(fixture("lwt__broker")).encode())
    assert OwnTracksConnector.mqtt_will(will) and not OwnTracksConnector.mqtt_will(item)
    assert OwnTracksConnector.mqtt_device_topic("owntracks/ana/pixel/event") == "owntracks/ana/pixel"


# --- the conformance kit over a file import -------------------------------------------------------

FILE_ORDER = ["location__ios_http", "beacon__ranging", "transition__enter", "location__android_ping",
              "waypoint__home", "location__lat_out_of_range", "transition__leave", "waypoints__export",
              "lwt__broker", "status__ios", "card__friend"]


class TestOwnTracksConformance(ConnectorConformance):
    connector_key = "owntracks"

    def make_source(self, workspace, tmp_path):
        from streams.services import device_create, source_create

        device, _ = device_create(workspace=workspace, name="Phone")
        lines = []
        for i, name in enumerate(FILE_ORDER):
            text = json.dumps(fixture(name))
            # Every other line as the OwnTracks Recorder writes it: time, tag, message.
            lines.append(f"2026-05-01T12:00:{i:02d}Z\t*                 \t{text}" if i % 2 and name != "lwt__broker"
                         else text)
        lines.insert(3, "{not json")
        path = tmp_path / "phone.rec"
        path.write_text("\n".join(lines) + "\n")
        type(self).expected_drafts = dict(expected(name, device.pk) for name in FILE_ORDER if name not in SKIPPED)
        type(self).bad_external_ids = {"line-4", f"ot/beacon/{digest(fixture('beacon__ranging'))}",
                                       "ot/location/1777636900"}
        return source_create(workspace=workspace, connector="owntracks", name="phone file",
                             config={"path": str(path), "device": str(device.pk), "batch_size": "3"})


# --- POST /api/v1/owntracks -----------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def post(client, device_token, django_capture_on_commit_callbacks):
    """POST as the app does; the after-commit ingest runs (eagerly, or by processing here)."""
    from mesh_site.celery import app

    def _post(message=None, *, body=None, auth=None, **headers):
        body = json.dumps(message) if body is None else body
        auth = basic("jane", device_token) if auth is None else auth
        if auth:
            headers["HTTP_AUTHORIZATION"] = auth
        eager = bool(app.conf.task_always_eager)
        with django_capture_on_commit_callbacks(execute=eager):
            response = client.post(URL, data=body, content_type="application/json", **headers)
        if not eager:
            from streams.services import inbound_process

            inbound_process(item_ids=list(InboundItem.objects.filter(state="pending").values_list("pk", flat=True)))
        return response

    return _post


def test_the_app_posts_a_location_with_basic_credentials_and_gets_an_empty_list(post, device):
    response = post(fixture("location__ios_http"), HTTP_X_LIMIT_U="jane", HTTP_X_LIMIT_D="phone")
    assert response.status_code == 200 and response.json() == []
    stored = InboundItem.objects.get()
    assert (stored.connector, stored.device_id, stored.external_id) == ("owntracks", device.pk, "ot/location/1777636800")
    activity = Activity.objects.get()
    assert (activity.dedup_key, activity.verb, activity.text) == (f"owntracks:{device.pk}/location/1777636800",
                                                                  "location", "At Home")
    assert activity.extra["battery"] == 64 and activity.device_id == device.pk
    device.refresh_from_db()
    assert device.state["battery"]["value"] == 64 and device.state["place"]["value"] == "Home"
    assert device.last_seen_at is not None


def test_a_device_that_may_see_the_other_devices_gets_their_cards_and_last_locations(post, device, workspace):
    """issue 16 §2: the answer is the friends' messages the app shows, for a device whose sync
    scope reaches past its own; the others (revoked, or never placed) are left out."""
    from streams.devices import device_revoke, device_set_mqtt_topic
    from streams.sync import device_sync_scope_set
    from tests.factories import make_device

    fixed = "2026-05-01T10:00:00+00:00"
    placed = {"lat": {"value": 52.52, "at": fixed}, "lon": {"value": 13.405, "at": fixed},
              "battery": {"value": 71.6, "at": fixed}}
    tablet, _ = make_device(workspace, "Tablet")
    ipad, _ = make_device(workspace, "iPad")
    device_set_mqtt_topic(device=ipad, topic="owntracks/jane/ipad")
    gone, _ = make_device(workspace, "Old phone")
    make_device(workspace, "Never placed")
    for other in (tablet, ipad, gone):
        type(other).objects.filter(pk=other.pk).update(state=placed)
    device_revoke(device=gone)
    assert post(fixture("location__android_ping")).json() == []  # the default scope: its own only

    device_sync_scope_set(device=device, scope="devices")
    tst = int(dt.datetime.fromisoformat(fixed).timestamp())
    friends = post(fixture("location__ios_http")).json()
    assert friends == [
        {"_type": "card", "topic": f"owntracks/mesh/device-{tablet.pk}", "tid": "TA", "name": "Tablet"},
        {"_type": "location", "topic": f"owntracks/mesh/device-{tablet.pk}", "tid": "TA", "lat": 52.52,
         "lon": 13.405, "tst": tst, "batt": 72},
        {"_type": "card", "topic": "owntracks/jane/ipad", "tid": "IP", "name": "iPad"},
        {"_type": "location", "topic": "owntracks/jane/ipad", "tid": "IP", "lat": 52.52, "lon": 13.405, "tst": tst,
         "batt": 72},
    ]


def test_a_resend_is_stored_once(post):
    for _ in range(3):
        assert post(fixture("location__android_ping")).status_code == 200
    assert (InboundItem.objects.count(), Activity.objects.count()) == (1, 1)


def test_bearer_token_works_and_the_headers_name_the_topic(post, device_token):
    message = fixture("location__android_ping")
    assert post(message, auth=f"Bearer {device_token}", HTTP_X_LIMIT_U="ana", HTTP_X_LIMIT_D="pixel").status_code == 200
    assert InboundItem.objects.get().payload["topic"] == "owntracks/ana/pixel"


@pytest.mark.parametrize("auth", ["", "Basic !!!", "Bearer nope", None])
def test_missing_or_wrong_credentials_are_refused_asking_for_basic(post, device_token, auth):
    auth = basic("jane", "mesh_dev_wrong") if auth is None else auth
    response = post(fixture("location__android_ping"), auth=auth)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")
    assert InboundItem.objects.count() == 0


def test_basic_credentials_are_rate_limited_per_token(post, settings, workspace):
    from streams.services import device_create

    settings.MESH_DEVICE_API_RATE_PER_MINUTE = 2
    for tst in (1777640400, 1777640460):
        assert post({**fixture("location__android_ping"), "tst": tst}).status_code == 200
    refused = post({**fixture("location__android_ping"), "tst": 1777640520})
    assert refused.status_code == 429 and "too many requests for this device token" in refused.json()["error"]
    _, other = device_create(workspace=workspace, name="Tablet")
    assert post(fixture("location__android_ping"), auth=basic("jane", other)).status_code == 200


def test_a_revoked_device_is_refused(post, device):
    from streams.services import device_revoke

    device_revoke(device=device)
    assert post(fixture("location__android_ping")).status_code == 401


@pytest.mark.parametrize(("body", "message"), [
    ("not json", "body is not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"lat": 1}', "no _type"),
    ('{"_type": "location", "lat": NaN}', "not valid JSON"),
])
def test_a_body_that_is_not_an_owntracks_message_is_a_clear_400(post, body, message):
    response = post(body=body)
    assert response.status_code == 400 and message in response.json()["error"]
    assert InboundItem.objects.count() == 0


def test_a_huge_body_is_413(post, settings):
    settings.MESH_INGEST_MAX_BYTES = 1000
    response = post({**fixture("location__android_ping"), "pad": "x" * 2000})
    assert response.status_code == 413 and InboundItem.objects.count() == 0


def test_an_empty_body_is_answered_and_stores_nothing(post):
    response = post(body="")
    assert response.status_code == 200 and response.json() == []
    assert InboundItem.objects.count() == 0


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_a_message_mesh_cannot_use_is_kept_raw_with_a_skip_record_and_no_error_answer(post, name):
    response = post(fixture(name))
    assert response.status_code == 200 and response.json() == []
    assert InboundItem.objects.get().payload["_type"] == fixture(name)["_type"]
    failure = ImportFailure.objects.get()
    assert re.search(SKIPPED[name], failure.reason) and failure.connector == "owntracks"
    assert Activity.objects.count() == 0


def test_a_configuration_dump_is_stored_without_its_secrets(post, device_token):
    post({"_type": "configuration", "mode": 3, "url": "https://mesh.example/api/v1/owntracks", "username": "jane",
          "password": device_token, "encryptionKey": "s3cret"})
    payload = InboundItem.objects.get().payload
    assert payload["password"] == payload["encryptionKey"] == "(removed)"
    assert device_token not in json.dumps(payload) and "s3cret" not in json.dumps(payload)


def test_api_events_and_owntracks_messages_of_one_device_are_each_read_by_their_own_connector(device):
    """Both doors store under the device's scope; one ingest pass takes them together."""
    from streams.services import device_events_store, inbound_process
    from tests.factories import make_event

    now = dt.datetime.now(dt.UTC)
    api = RawItem(f"{device.pk}/b1", make_event("b1", type="battery", data={"battery": 50}), now)
    ours = RawItem("ot/location/1777640400", fixture("location__android_ping"), now)
    first, _ = device_events_store(device=device, items=[api], at=now)
    second, _ = device_events_store(device=device, items=[ours], at=now, connector="owntracks")
    result = inbound_process(item_ids=first)  # the task of the first item drains the scope
    assert (result.new, result.failed) == (2, 0)
    assert set(Activity.objects.values_list("dedup_key", flat=True)) == {
        f"device:{device.pk}/b1", f"owntracks:{device.pk}/location/1777640400"}
    assert not InboundItem.objects.filter(state="pending").exists()


def test_mesh_import_reads_a_recorder_file_once(tmp_path, device):
    """``mesh_import owntracks FILE --device ID``: the Recorder's lines; a second import is all
    duplicates."""
    import io

    from django.core.management import call_command

    path = tmp_path / "2026-05.rec"
    path.write_text("".join(f"2026-05-01T12:00:{i:02d}Z\t*                 \t{json.dumps(fixture(name))}\n"
                            for i, name in enumerate(["location__ios_http", "transition__enter", "beacon__ranging"])))
    runs = []
    for _ in range(2):
        out = io.StringIO()
        try:
            call_command("mesh_import", "owntracks", str(path), "--device", str(device.pk), "--workspace", "acme",
                         "--json", stdout=out)
        except SystemExit:  # exit 1 when items failed and none was stored (the second run): JSON all the same
            pass
        runs.append(json.loads(out.getvalue()))
    assert [(r["fetched"], r["new"], r["duplicate"], r["failed"]) for r in runs] == [(3, 2, 0, 1), (3, 0, 2, 1)]
    assert Activity.objects.filter(device=device, dedup_key__startswith=f"owntracks:{device.pk}/").count() == 2
