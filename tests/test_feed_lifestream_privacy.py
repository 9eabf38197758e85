"""The public lifestream feeds name no one but the owner (issue 15, point 6): public calls,
messages and locations with named counterparts show no counterpart's name, number, email or
handle anywhere in any of the four formats, and an item's text only where the owner wrote it."""

from __future__ import annotations

import json

import feedparser
import pytest

from connectors.base import RawItem
from connectors.device.connector import DeviceConnector
from streams.identity import identity_mark_self
from streams.ingest import ingest_batch
from streams.places import device_places_public_set
from tests.factories import ingest_mail, make_event
from tests.fakes.readers import FORMATS, get

# Every test runs on both read paths of the feeds (the ``query_path`` fixture).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("query_path")]

OWNER_PHONE = "+14155550100"
ZELDA = {"kind": "phone", "value": "+14155550123", "name": "Zelda Quint"}
YORICK = {"kind": "phone", "value": "+14155550188", "name": "Yorick Vance"}
XAVIER = {"kind": "email", "value": "xavier@friends.example", "name": "Xavier Wu"}
WANDA = {"kind": "phone", "value": "+14155550177", "display": "Wanda Oduya"}
VERA = {"kind": "x", "value": "998877", "display": "@vera_handle"}
# Every way a counterpart could be named: whole and partial names, numbers as stored and as
# digits, the email and its local part, the handle with and without its "@".
COUNTERPART_TRACES = [
    "Zelda", "Quint", "+14155550123", "4155550123", "555-0123", "Yorick", "Vance", "+14155550188", "4155550188",
    "Xavier", "xavier@friends.example", "friends.example", "Wanda", "Oduya", "+14155550177", "4155550177",
    "vera_handle", "998877",
]


def lifestream(client, fmt):
    response = get(client, f"/@acme/feed.{fmt}")
    assert response.status_code == 200, response.content[:300]
    return response


@pytest.fixture
def public_items(workspace, device):
    """Public calls (in and out), a shared location, a received and a sent SMS and an X post
    with a mention: each with a named counterpart; the device event ids carry the numbers."""
    identity_mark_self(workspace=workspace, kind="phone", value=OWNER_PHONE)
    identity_mark_self(workspace=workspace, kind="x", value="111", display="@owner")
    device_places_public_set(device=device, public=True)  # its places may be public (test_places_privacy.py)
    connector = DeviceConnector({}, {}, context={"device_id": device.pk, "region": workspace.region})
    events = [
        make_event("call-+14155550123", type="call.incoming", visibility="public",
                   data={"duration": 61, "text": "Missed call from Zelda Quint"},
                   participants=[{**ZELDA, "role": "from"}]),
        make_event("call-+14155550188", type="call.outgoing", occurred_at="2026-05-01T10:05:00Z", visibility="public",
                   data={"duration": 30}, participants=[{**YORICK, "role": "to"}]),
        make_event("loc-xavier@friends.example", type="location", occurred_at="2026-05-01T10:10:00Z",
                   visibility="public", data={"lat": 48.85, "lon": 2.35, "text": "At the park with Xavier Wu"},
                   participants=[{**XAVIER, "role": "to"}]),
        make_event("loc-alone", type="location", occurred_at="2026-05-01T10:20:00Z", visibility="public",
                   data={"lat": 48.86, "lon": 2.34, "text": "Sunset over the river"}),
    ]
    ingest_batch(workspace=workspace, connector=connector, device=device,
                 items=[RawItem(f"{device.pk}/{e['id']}", e) for e in events])
    owner = {"kind": "phone", "value": OWNER_PHONE}
    ingest_mail(workspace, [
        ("sms-in-+14155550177", {"channel": "sms", "direction": "in", "visibility": "public",
                                 "occurred_at": "2026-05-01T11:00:00+00:00", "text": "Hi, Wanda Oduya here, call me",
                                 "participants": [{**WANDA, "role": "from"}, {**owner, "role": "to"}]}),
        ("sms-out-+14155550177", {"channel": "sms", "direction": "out", "visibility": "public",
                                  "occurred_at": "2026-05-01T11:05:00+00:00", "text": "On my way to the concert",
                                  "participants": [{**owner, "role": "from"}, {**WANDA, "role": "to"}]}),
        ("x-post-1", {"channel": "twitter", "verb": "post", "direction": "out", "visibility": "public",
                      "occurred_at": "2026-05-01T12:00:00+00:00", "text": "Great talk today",
                      "participants": [{"kind": "x", "value": "111", "display": "@owner", "role": "author"},
                                       {**VERA, "role": "mention"}]}),
    ])


def test_public_items_name_no_counterpart_in_any_lifestream_format(client, public_items):
    for fmt in FORMATS:
        body = lifestream(client, fmt).content.decode()
        # JSON writes < > & as \u escapes: search the decoded document's text too.
        texts = [body, json.dumps(json.loads(body), ensure_ascii=False)] if fmt in ("json", "as2") else [body]
        for text in texts:
            leaked = [trace for trace in COUNTERPART_TRACES if trace.lower() in text.lower()]
            assert leaked == [], f"{fmt}: {leaked}"


def test_lifestream_titles_say_what_and_which_way_and_show_only_the_owners_own_text(client, public_items):
    parsed = feedparser.parse(lifestream(client, "atom").content)
    assert [e.title for e in parsed.entries] == [
        "Post: Great talk today",
        "SMS sent: On my way to the concert",
        "SMS received",  # Wanda's words are hers: not published by the owner's lifestream
        "Location: Sunset over the river",  # the owner's own, with no one else in it
        "Location",  # shared with someone: the device's text about it is not shown
        "Call made",
        "Call received",
    ]
    assert all("author" not in e for e in parsed.entries)  # the feed's author is the workspace
    assert parsed.feed.author == "Acme"
    doc = json.loads(lifestream(client, "as2").content)
    assert all("actor" not in item and "to" not in item for item in doc["orderedItems"])
    items = json.loads(lifestream(client, "json").content)["items"]
    assert [i.get("content_text") for i in items] == [
        "Great talk today", "On my way to the concert", "SMS received", "Sunset over the river", "Location",
        "Call made", "Call received",
    ]
