"""Places on the public lifestream (issue 16 §3): only from devices whose places are public
(``places_public``, off by default), coarsened to ``MESH_LIFESTREAM_PLACE_PRECISION`` decimal
places. A private place never reaches the lifestream page or any of its four feed formats,
whatever the event's own visibility; a public one shows no exact coordinate anywhere."""

from __future__ import annotations

import json

import pytest

from connectors.owntracks.connector import OwnTracksConnector
from connectors.owntracks.messages import raw_item
from streams.ingest import ingest_batch
from streams.models import Activity
from streams.places import device_places_public_set
from tests.factories import ingest_events, make_event
from tests.fakes.readers import FORMATS, get

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("query_path")]

# A fix at the Pont des Arts, to the metre, with what else narrows it down.
EXACT = {"lat": 48.858432, "lon": 2.337517, "accuracy": 8, "place": "Pont des Arts", "ssid": "cafe-wifi",
         "text": "Sunset over the river"}
EXACT_TRACES = ["48.858432", "2.337517", "48.8584", "2.3375", "48.858", "2.338", "cafe-wifi"]


def lifestream_outputs(client) -> dict[str, str]:
    """The lifestream page and its four feeds, each as one text (JSON decoded as well, since it
    escapes what it writes)."""
    outputs = {"page": client.get("/@acme/").content.decode()}
    for fmt in FORMATS:
        body = get(client, f"/@acme/feed.{fmt}").content.decode()
        outputs[fmt] = body + (json.dumps(json.loads(body), ensure_ascii=False) if fmt in ("json", "as2") else "")
    return outputs


@pytest.fixture
def fixes(workspace, device):
    """A public fix with exact coordinates, a private one, and a public call (not a place)."""
    ingest_events(workspace, device, [
        make_event("loc-public", type="location", occurred_at="2026-05-01T18:00:00Z", visibility="public",
                   data=dict(EXACT)),
        make_event("loc-private", type="location", occurred_at="2026-05-01T19:00:00Z", visibility="private",
                   data={"lat": 48.8611, "lon": 2.3358, "place": "Louvre", "text": "Private evening"}),
        make_event("call-1", type="call.outgoing", occurred_at="2026-05-01T17:00:00Z", visibility="public",
                   data={"duration": 30}),
    ])
    return device


def test_a_device_with_private_places_shows_none_of_them_anywhere(client, fixes):
    assert not fixes.places_public  # the default
    for name, text in lifestream_outputs(client).items():
        assert "Sunset over the river" not in text and "Pont des Arts" not in text, name
        assert "Louvre" not in text and "Private evening" not in text, name
        assert [t for t in EXACT_TRACES if t in text] == [], name
    call = Activity.objects.get(dedup_key=f"device:{fixes.pk}/call-1")
    assert f'id="a{call.pk}"' in lifestream_outputs(client)["page"]  # the lifestream is there: only places went


def test_a_public_place_is_coarsened_and_a_private_fix_still_never_shows(client, fixes):
    device_places_public_set(device=fixes, public=True)
    outputs = lifestream_outputs(client)
    assert "Pont des Arts, near 48.86, 2.34" in outputs["page"]  # two decimal places: about a kilometre
    assert "Sunset over the river" in outputs["atom"]
    for name, text in outputs.items():
        assert [t for t in EXACT_TRACES if t in text] == [], name
        assert "Louvre" not in text and "Private evening" not in text, name


def test_the_precision_is_a_setting(client, fixes, settings):
    device_places_public_set(device=fixes, public=True)
    settings.MESH_LIFESTREAM_PLACE_PRECISION = 1
    page = lifestream_outputs(client)["page"]
    assert "Pont des Arts, near 48.9, 2.3" in page and "48.86" not in page


def test_owntracks_fixes_follow_the_device_setting_and_turning_it_off_hides_them_all(client, workspace, device):
    def ingest(message):
        connector = OwnTracksConnector({}, {}, context={"device_id": device.pk,
                                                        "places_public": device.places_public})
        assert ingest_batch(workspace=workspace, connector=connector, device=device,
                            items=[raw_item(message)]).new == 1

    ingest({"_type": "location", "lat": 48.858432, "lon": 2.337517, "acc": 8, "tst": 1777658400,
            "inregions": ["Quai"], "SSID": "cafe-wifi"})
    assert all("Quai" not in text for text in lifestream_outputs(client).values())  # sent while private
    device_places_public_set(device=device, public=True)
    ingest({"_type": "transition", "event": "enter", "desc": "Jardin", "lat": 48.8462, "lon": 2.3372, "acc": 12,
            "tst": 1777662000, "wtst": 1775000000})
    outputs = lifestream_outputs(client)
    assert "Jardin, near 48.85, 2.34" in outputs["page"] and "Arrived at Jardin" in outputs["rss"]
    assert "48.8462" not in outputs["page"]
    assert all("Quai" not in text for text in outputs.values())  # not published after the fact
    device_places_public_set(device=device, public=False)
    for name, text in lifestream_outputs(client).items():
        assert "Jardin" not in text and "48.85" not in text, name
