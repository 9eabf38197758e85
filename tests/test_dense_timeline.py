"""The dense timeline (issue 18 §2): calls, meetings, battery, locations and automated mail as
one-line rows with human labels, runs of one device event folded, messages as full cards,
direction in words, and nothing the page already says. Plus the page's cost: no query per
row, and the height of 40 items in a real browser.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from streams.activity_rows import human_duration
from tests.factories import (
    ANA_EMAIL,
    ANA_NUMBER,
    ANA_PHONE,
    ME_EMAIL,
    PASSWORD,
    contact_for,
    ingest_drafts,
    ingest_events,
    make_event,
    make_member,
)
from tests.fakes.readers import page_activity_ids, text_of

pytestmark = pytest.mark.django_db

CHLOE = {"kind": "phone", "value": "+14155550102", "role": "from", "name": "Chloé Martin"}


def visible_text(body: str) -> str:
    """What a reader sees: the markup and its attributes gone."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


@pytest.mark.parametrize(("seconds", "words"), [
    (0, ""), (45, "45 s"), (560, "9 min 20 s"), (900, "15 min"), (3725, "1 h 2 min"), (7200, "2 h"),
    ("868", "14 min 28 s"), (None, ""), ("soon", ""),
])
def test_durations_read_as_people_say_them(seconds, words):
    assert human_duration(seconds) == words


def test_calls_and_meetings_are_one_line_rows_with_human_labels(member_client, workspace, device):
    ingest_events(workspace, device, [
        make_event("c1", type="call.missed", occurred_at="2026-05-01T09:00:00Z", data={"duration": 0},
                   participants=[ANA_PHONE]),
        make_event("c2", type="call.incoming", occurred_at="2026-05-01T10:00:00Z", data={"duration": 560},
                   participants=[ANA_PHONE]),
        make_event("c3", type="call.outgoing", occurred_at="2026-05-01T11:00:00Z", data={"duration": 868},
                   participants=[{**ANA_PHONE, "role": "to"}]),
        make_event("m1", type="meeting.attended", occurred_at="2026-05-01T12:00:00Z",
                   data={"title": "Design sync", "duration": 900, "direction": "none"},
                   participants=[{"kind": "phone", "value": ANA_NUMBER, "role": "to"}]),
    ])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    seen = visible_text(body)
    for label in ("Missed call", "Call · 9 min 20 s", "Call · 14 min 28 s", "Meeting · 15 min", "Design sync"):
        assert label in seen
    assert body.count('<article class="activity row ') == 4
    # Never the raw type, never a duration for a call nobody took.
    assert "call.missed" not in body and "meeting.attended" not in body and "0s" not in seen
    # Direction in words (an icon with its name), not an arrow alone.
    assert 'aria-label="Incoming"' in body and 'aria-label="Outgoing"' in body
    # Ana's own page does not say "from Ana" on each row.
    assert 'class="row-people"' not in body and '<span class="role">from</span>' not in body


def test_a_device_page_says_who_a_call_was_with(member_client, workspace, device):
    ingest_events(workspace, device, [
        make_event("c1", type="call.missed", occurred_at="2026-05-01T09:00:00Z", participants=[CHLOE]),
    ])
    chloe = contact_for(workspace, "phone", CHLOE["value"])
    body = text_of(member_client.get(f"/devices/{device.pk}/"))
    assert f'with <a href="/contacts/{chloe.pk}/"' in body and "<bdi>Chloé Martin</bdi>" in body


def test_a_run_of_battery_reports_folds_into_one_line(member_client, workspace, device):
    levels = [80, 64, 55, 47, 40, 35, 31]
    ingest_events(workspace, device, [
        make_event(f"b{i}", type="battery", occurred_at=f"2026-05-01T{8 + i:02d}:00:00Z", data={"battery": level})
        for i, level in enumerate(levels)
    ] + [
        # Another day: its two reports stay rows of their own.
        make_event("b-next1", type="battery", occurred_at="2026-05-02T08:00:00Z", data={"battery": 99, "charging": True}),
        make_event("b-next2", type="battery", occurred_at="2026-05-02T09:00:00Z", data={"battery": 98}),
    ])
    response = member_client.get(f"/devices/{device.pk}/")
    body = text_of(response)
    assert body.count('<details class="run">') == 1
    assert "Battery 31–80 % · 7 reports" in body
    assert '<time datetime="2026-05-01T08:00:00+00:00">08:00</time>–<time datetime="2026-05-01T14:00:00+00:00">14:00</time>' in body
    # Every report is still on the page (inside the run), and the short run is two rows.
    assert len(page_activity_ids(response)) == 9
    assert "Battery 99 % · charging" in body and "Battery 98 %" in body
    assert "<dt>battery</dt>" not in body.split('class="timeline"')[1]


def test_a_run_of_locations_names_its_places(member_client, workspace, device):
    places = ["Home", "Café Réveille", "Office", "Home"]
    ingest_events(workspace, device, [
        make_event(f"l{i}", type="location", occurred_at=f"2026-05-01T{9 + i:02d}:00:00Z",
                   data={"lat": 37.77, "lon": -122.41, "place": place})
        for i, place in enumerate(places)
    ])
    body = text_of(member_client.get(f"/devices/{device.pk}/"))
    assert "Location · 4 updates" in body and "Home, Café Réveille, Office" in body
    assert body.split('class="timeline"')[1].count("openstreetmap.org") == 4  # each update keeps its map link


def test_automated_mail_is_a_row_and_a_message_stays_a_card(member_client, workspace):
    ingest_drafts(workspace, [
        ("news", {"occurred_at": "2026-05-01T09:00:00+00:00", "subject": "Your weekly digest", "automated": True,
                  "text": "Lots of news"}),
        ("note", {"occurred_at": "2026-05-01T10:00:00+00:00", "subject": "Lunch?", "text": "Friday at noon?"}),
    ], channel="email", verb="receive", direction="in", participants=[ANA_EMAIL, ME_EMAIL])
    ana = contact_for(workspace, "email", ANA_EMAIL["value"])
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    assert "Automated mail" in body and "Your weekly digest" in body
    # Its text waits behind "Show message", inside the row.
    row = re.search(r'<article class="activity row ch-email[^"]*".*?</article>', body, re.S).group(0)
    assert "<summary>Show message</summary>" in row and "Lots of news" in row.split("<summary>")[1]
    assert '<h3 class="subject" dir="auto">Lunch?</h3>' in body
    assert '<span class="verb">received</span>' in body


def test_contact_page_queries_do_not_grow_with_its_items(member_client, workspace, device):
    """Rows, runs, avatars and formatted identities are computed from what the page's one
    statement read: 40 items cost the queries 4 do."""
    ana = None

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert member_client.get(f"/contacts/{ana.pk}/").status_code == 200
        return len(queries)

    base = dt.datetime(2026, 5, 1, 8, tzinfo=dt.UTC)
    kinds = [("call.incoming", {"duration": 60}), ("battery", {"battery": 50}), ("location", {"place": "Home"}),
             ("call.missed", {})]

    def events(start, n):
        return [make_event(f"e{i}", type=kinds[i % 4][0], data=kinds[i % 4][1],
                           occurred_at=(base + dt.timedelta(minutes=7 * i)).isoformat(),
                           participants=[ANA_PHONE, CHLOE])
                for i in range(start, start + n)]

    ingest_events(workspace, device, events(0, 4))
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    # Each first view after an import does one-off work (the session, the heat strip's cache,
    # other pages' summaries): count the second.
    count_queries()
    few = count_queries()
    ingest_events(workspace, device, events(4, 36))
    count_queries()
    assert count_queries() == few


@pytest.mark.django_db(transaction=True)
def test_forty_items_take_a_fraction_of_the_height_they_did(live_server, workspace, monkeypatch):
    """Playwright at 1280 px: a contact's 40 items of a typical day mix (calls, battery,
    locations, mail, texts). Before the dense timeline the same 40 took ~8,300 px (issue 18)."""
    from tests.fakes.browser import headless_chromium

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    make_member(workspace, "dana", role="owner")
    from streams.services import device_create

    device, _ = device_create(workspace=workspace, name="Phone", kind="phone")
    base = dt.datetime(2026, 5, 1, 7, tzinfo=dt.UTC)
    at = [(base + dt.timedelta(hours=3 * i)).isoformat() for i in range(40)]
    events = []
    for i in range(32):
        kind = ["call.incoming", "call.missed", "battery", "location", "call.outgoing", "battery", "location",
                "meeting.attended"][i % 8]
        data = {"call.incoming": {"duration": 560}, "call.outgoing": {"duration": 125}, "battery": {"battery": 40 + i},
                "location": {"lat": 37.77, "lon": -122.41, "place": "Home"},
                "meeting.attended": {"title": "Design sync", "duration": 900, "direction": "none"}}.get(kind, {})
        events.append(make_event(f"d{i}", type=kind, occurred_at=at[i], data=data,
                                 participants=[{**ANA_PHONE, "role": "to" if kind == "call.outgoing" else "from"}]))
    ingest_events(workspace, device, events)
    ingest_drafts(workspace, [
        (f"t{i}", {"channel": "sms" if i % 2 else "email", "verb": "receive", "direction": "in", "occurred_at": at[32 + i],
                   "subject": "" if i % 2 else "Renewal", "text": "Thanks, see you then.",
                   "participants": [{"role": "from", "kind": "phone", "value": ANA_NUMBER}]})
        for i in range(8)
    ])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(10_000)
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", "dana")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/contacts/")
        page.goto(f"{live_server.url}/contacts/{ana.pk}/")
        assert page.locator("section.timeline article.activity").count() == 40
        height = page.evaluate("document.querySelector('section.timeline').getBoundingClientRect().height")
        print(f"40 items: timeline {height:.0f} px, page {page.evaluate('document.documentElement.scrollHeight')} px")
        assert height < 4000
