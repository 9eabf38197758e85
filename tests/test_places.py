"""Places (issue 16 §3): visits from fixes (stay points, accuracy taken into account) and from
OwnTracks transitions, named from defined regions, ``inregions`` or the data's place; the
device page shows them with the track as inline SVG with a text alternative and a map link;
the per-device ``places_public`` setting from the page and from ``mesh_device``."""

from __future__ import annotations

import datetime as dt
import io
import json
import math

import pytest
from django.core.management import call_command
from django.test import Client

from connectors.owntracks.connector import OwnTracksConnector
from connectors.owntracks.messages import raw_item
from streams.ingest import ingest_batch
from streams.places import Fix, Region, Transition, distance_m, stay_points, visits

T0 = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)
HOME = (48.856826, 2.292713)
OFFICE = (48.8738, 2.295)
M_PER_DEG_LAT = 111_195.0  # the haversine's metres per degree of latitude (R = 6,371 km)


def north(point: tuple[float, float], metres: float) -> tuple[float, float]:
    return point[0] + metres / M_PER_DEG_LAT, point[1]


def fix(minutes: float, point: tuple[float, float], accuracy: float = 10.0, places=()) -> Fix:
    return Fix(T0 + dt.timedelta(minutes=minutes), point[0], point[1], accuracy, tuple(places))


def commute() -> list[Fix]:
    """30 minutes at home (fixes within 40 m), a drive north in 1 km steps, 15 minutes at the
    office, then one fix on the way out."""
    home = [fix(m, north(HOME, d)) for m, d in ((0, 0), (5, 20), (10, -15), (20, 40), (30, 10))]
    drive = [fix(32 + i * 2, north(HOME, 1000 * (i + 1))) for i in range(2)]
    office = [fix(m, north(OFFICE, d)) for m, d in ((40, 0), (45, 30), (55, -20))]
    return [*home, *drive, *office, fix(60, north(OFFICE, 900))]


def test_distance_is_the_great_circle():
    assert distance_m(*HOME, *north(HOME, 1000)) == pytest.approx(1000, abs=1)
    assert distance_m(0, 0, 0, 1) == pytest.approx(2 * math.pi * 6_371_000 / 360, rel=1e-6)


def test_stays_of_ten_minutes_within_100_m_are_visits_from_first_to_last_fix():
    found = stay_points(commute())
    assert [(v.arrival, v.departure, v.fixes) for v in found] == [
        (T0, T0 + dt.timedelta(minutes=30), 5),
        (T0 + dt.timedelta(minutes=40), T0 + dt.timedelta(minutes=55), 3),
    ]
    assert distance_m(found[0].lat, found[0].lon, *HOME) < 40
    assert found[0].duration == dt.timedelta(minutes=30)


def test_a_pause_shorter_than_ten_minutes_is_no_visit():
    fixes = [fix(0, HOME), fix(4, north(HOME, 10)), fix(9, north(HOME, 20)), fix(11, north(HOME, 2000))]
    assert stay_points(fixes) == []


def test_the_stay_still_going_on_has_no_departure():
    fixes = [fix(0, north(HOME, 3000)), fix(10, HOME), fix(25, north(HOME, 30))]
    [stay] = stay_points(fixes)
    assert (stay.arrival, stay.departure) == (T0 + dt.timedelta(minutes=10), None)


def test_a_fix_far_off_but_imprecise_does_not_break_a_stay():
    fixes = [fix(0, HOME), fix(5, north(HOME, 150), accuracy=80), fix(15, north(HOME, 10)),
             fix(16, north(HOME, 5000))]
    [stay] = stay_points(fixes)
    assert (stay.fixes, stay.departure) == (3, T0 + dt.timedelta(minutes=15))
    # The same fix reported as precise is somewhere else: the stay breaks before ten minutes.
    precise = [fixes[0], fix(5, north(HOME, 150), accuracy=5), *fixes[2:]]
    assert stay_points(precise) == []


def test_fixes_days_apart_are_not_one_stay_but_a_night_is():
    days = [fix(0, HOME), fix(4 * 24 * 60, north(HOME, 10)), fix(4 * 24 * 60 + 1, north(HOME, 3000))]
    assert stay_points(days) == []
    night = [fix(0, HOME), fix(10 * 60, north(HOME, 10)), fix(10 * 60 + 1, north(HOME, 3000))]
    assert [(v.arrival, v.departure) for v in stay_points(night)] == [(T0, T0 + dt.timedelta(hours=10))]


def test_a_cell_tower_fix_is_ignored():
    fixes = [fix(0, HOME), fix(5, north(HOME, 2500), accuracy=3000), fix(12, north(HOME, 20)),
             fix(13, north(HOME, 4000))]
    [stay] = stay_points(fixes)
    assert (stay.fixes, stay.departure) == (2, T0 + dt.timedelta(minutes=12))


def test_transitions_are_visits_and_a_stay_inside_one_is_the_same_visit():
    transitions = [Transition(T0 - dt.timedelta(minutes=5), "enter", "Home", *HOME),
                   Transition(T0 + dt.timedelta(minutes=31), "leave", "Home", *HOME),
                   Transition(T0 + dt.timedelta(minutes=70), "leave", "Gym"),  # no enter: nothing known
                   Transition(T0 + dt.timedelta(minutes=80), "enter", "Gym")]
    found = visits(commute(), transitions, now=T0 + dt.timedelta(hours=2))
    assert [(v.place, v.arrival, v.departure, v.origin) for v in found] == [
        ("Gym", T0 + dt.timedelta(minutes=80), None, "transition"),
        ("", T0 + dt.timedelta(minutes=40), T0 + dt.timedelta(minutes=55), "fixes"),
        ("Home", T0 - dt.timedelta(minutes=5), T0 + dt.timedelta(minutes=31), "transition"),
    ]


def test_visits_are_named_by_region_then_by_what_the_fixes_say():
    fixes = [fix(0, HOME, places=["Maison"]), fix(15, HOME, places=["Maison"]), fix(16, north(HOME, 900)),
             fix(20, OFFICE, places=["Work"]), fix(40, OFFICE, places=["Work"]), fix(41, north(OFFICE, 900))]
    regions = [Region("Home", *HOME, 80), Region("Far away", 0.0, 0.0, 500)]
    found = visits(fixes, regions=regions, now=T0 + dt.timedelta(hours=1))
    assert [v.place for v in found] == ["Work", "Home"]


# --- stored events, the device page -----------------------------------------------------------------


def owntracks_messages() -> list[dict]:
    """A morning as the app reports it: a region defined, fixes at home, the drive, the office."""
    base = int(T0.timestamp())
    messages = [{"_type": "waypoint", "desc": "Office", "lat": OFFICE[0], "lon": OFFICE[1], "rad": 120,
                 "tst": base - 86400}]
    for f in commute():
        messages.append({"_type": "location", "lat": f.lat, "lon": f.lon, "acc": int(f.accuracy), "tst": int(f.at.timestamp()),
                         "batt": 80, "inregions": ["Home"] if f.at < T0 + dt.timedelta(minutes=31) else []})
    messages.append({"_type": "transition", "event": "enter", "desc": "Gym", "tst": base + 90 * 60, "lat": 48.86,
                     "lon": 2.30, "acc": 20, "wtst": base - 86400})
    return messages


@pytest.fixture
def morning(workspace, device):
    connector = OwnTracksConnector({}, {}, context={"device_id": device.pk})
    result = ingest_batch(workspace=workspace, connector=connector, device=device,
                          items=[raw_item(m) for m in owntracks_messages()])
    assert (result.new, result.failed) == (len(owntracks_messages()), 0)
    return device


def test_visits_of_a_device_are_read_from_its_stored_events(morning):
    from streams.places import device_visits

    found, fixes = device_visits(device=morning, now=T0 + dt.timedelta(hours=2))
    assert len(fixes) == len(commute())
    assert [(v.place, v.arrival, v.departure) for v in found] == [
        ("Gym", T0 + dt.timedelta(minutes=90), None),
        ("Office", T0 + dt.timedelta(minutes=40), T0 + dt.timedelta(minutes=55)),  # named by the region
        ("Home", T0, T0 + dt.timedelta(minutes=30)),  # named by inregions
    ]


def test_an_erased_fix_leaves_the_visits(morning):
    from streams.models import Activity
    from streams.places import device_visits

    Activity.objects.filter(device=morning, verb="place").update(erased_at=T0)
    found, _ = device_visits(device=morning, now=T0 + dt.timedelta(hours=2))
    assert [v.place for v in found] == ["Gym", "", "Home"]  # the region's definition is gone


def test_the_device_page_shows_visits_and_the_track_as_svg_with_a_text_alternative(member_client, morning):
    page = member_client.get(f"/devices/{morning.pk}/").content.decode()
    assert "<h2 id=\"places-heading\">Places</h2>" in page
    assert page.count('class="visit"') == 3
    assert "Office" in page and "Gym" in page and "still there" in page and "15 min" in page
    start = page.index('<svg class="track-svg"')
    svg = page[start:page.index("</svg>", start)]
    assert 'role="img"' in svg and 'aria-labelledby="track-title track-desc"' in svg
    assert '<title id="track-title">Track of the last 11 location fixes</title>' in svg
    assert '<desc id="track-desc">From 2026-05-01 08:00 to 2026-05-01 09:00' in svg
    assert len(svg.split('points="')[1].split('"')[0].split()) == 11
    assert "https://www.openstreetmap.org/" in page and "Open this area on OpenStreetMap" in page
    assert "<script" not in svg and "tile" not in svg  # drawn here, no map tiles


def test_a_device_without_fixes_says_so(member_client, device):
    page = member_client.get(f"/devices/{device.pk}/").content.decode()
    assert "No location fixes yet." in page and "track-svg" not in page


def test_places_public_is_set_from_the_device_page_by_members_only(member_client, device, outsider):
    response = member_client.post(f"/devices/{device.pk}/places/public", {"public": "1"})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.places_public
    assert "Make places private" in member_client.get(f"/devices/{device.pk}/").content.decode()
    stranger = Client()
    stranger.force_login(outsider)
    assert stranger.post(f"/devices/{device.pk}/places/public", {"public": "0"}).status_code == 404
    device.refresh_from_db()
    assert device.places_public
    member_client.post(f"/devices/{device.pk}/places/public", {"public": "0"})
    device.refresh_from_db()
    assert not device.places_public


def test_mesh_device_places_sets_the_setting(device):
    out = io.StringIO()
    call_command("mesh_device", "places", str(device.pk), "public", "--workspace", "acme", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"id": device.pk, "places_public": True}
    device.refresh_from_db()
    assert device.places_public
