"""Titles, names and descriptions in every feed format are plain text, escaped once (issue 13
point 10, issue 15 point 7): feedparser (RSS, Atom) and a JSON reader (JSON Feed, AS2) see the
intended characters — an apostrophe, an ampersand, quotes, non-ASCII — never ``&#x27;`` or
``&amp;``; and ``<`` / ``>`` are look-alikes (``‹`` / ``›``), so a reader that renders a title
as HTML finds no markup in it. HTML fields (RSS description, Atom and AS2 summary) render to
the same text."""

from __future__ import annotations

import html
import json

import feedparser
import pytest

from connectors.base import RawItem
from connectors.device.connector import DeviceConnector
from streams.feed_tokens import feed_token_create
from streams.ingest import ingest_batch
from tests.factories import ana, ingest_mail, mail, make_event
from tests.fakes.readers import FORMATS, feed_url, get

# Every test runs on both read paths of the feeds (the ``query_path`` fixture).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("query_path")]

NAME = "O'Brien & \"Sons\" <img src=x onerror=alert(1)> Zoë 東京"
SUBJECT = "Who's \"there\" & <b>why</b> — café ✓"


def shown(text: str) -> str:
    """What every reader must show for a plain-text field: the text, markup neutralized."""
    return text.replace("<", "\u2039").replace(">", "\u203a")


def feed(client, url, fmt):
    response = get(client, url)
    assert response.status_code == 200, response.content[:300]
    if fmt in ("json", "as2"):
        return json.loads(response.content)
    parsed = feedparser.parse(response.content, response_headers={"content-type": response["Content-Type"]})
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


@pytest.fixture
def named_feed(workspace):
    """A subject-tier feed of a contact whose name and subject hold every awkward character."""
    ingest_mail(workspace, [mail(1, subject=SUBJECT, participants=[
        {"kind": "email", "value": "ana@example.com", "role": "from", "display": NAME},
        {"kind": "email", "value": "me@mesh.example", "role": "to", "display": "Me"},
    ])])
    contact = ana(workspace)
    contact.name = NAME
    contact.save(update_fields=["name"])
    _row, token = feed_token_create(workspace=workspace, contact=contact, tier="subject")
    return token


@pytest.mark.parametrize("fmt", FORMATS)
def test_titles_names_and_descriptions_read_as_the_intended_text(client, named_feed, fmt):
    doc = feed(client, feed_url(named_feed, fmt), fmt)
    title = f"{shown(NAME)} — Acme"
    description = f"Activity with {shown(NAME)} in Mesh (subject feed)."
    item_title = f"Email from {shown(NAME)}: {shown(SUBJECT)}"
    if fmt == "json":
        assert (doc["title"], doc["description"]) == (title, description)
        [item] = doc["items"]
        assert (item["title"], item["summary"], item["authors"]) == (item_title, shown(SUBJECT), [{"name": shown(NAME)}])
    elif fmt == "as2":
        assert (doc["name"], html.unescape(doc["summary"])) == (title, description)
        [item] = doc["orderedItems"]
        assert (item["name"], html.unescape(item["summary"])) == (item_title, shown(SUBJECT))
        assert item["actor"]["name"] == shown(NAME)
    else:
        assert doc.feed.title == title
        if fmt == "rss":  # Atom has no place for the description (Django writes no subtitle)
            assert doc.feed.subtitle == description
        [entry] = doc.entries
        assert (entry.title, entry.author) == (item_title, shown(NAME))
        assert entry.title_detail.type == "text/plain"  # no markup found in it
        assert html.unescape(entry.summary) == shown(SUBJECT)  # an HTML field: renders to the text


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_device_name_in_the_channel_title_is_plain_text(client, workspace, device, fmt):
    device.name = NAME
    device.save(update_fields=["name"])
    connector = DeviceConnector({}, {}, context={"device_id": device.pk, "region": workspace.region})
    event = make_event("b-1", type="battery", data={"battery": 80})
    ingest_batch(workspace=workspace, connector=connector, device=device, items=[RawItem(f"{device.pk}/b-1", event)])
    _row, token = feed_token_create(workspace=workspace, device=device)
    doc = feed(client, feed_url(token, fmt), fmt)
    title = f"{shown(NAME)} (device) — Acme"
    if fmt == "json":
        assert doc["title"] == title
    elif fmt == "as2":
        assert doc["name"] == title
    else:
        assert doc.feed.title == title


def test_a_guid_holds_no_markup_even_when_the_source_id_does(client, workspace, device):
    """A device event's id is the client's string, and the GUID is made from it: characters a
    URI may not hold are percent-encoded, so no reader finds markup in an id."""
    connector = DeviceConnector({}, {}, context={"device_id": device.pk, "region": workspace.region})
    event = make_event("<img src=x onerror=alert(1)>", type="battery", data={"battery": 80})
    ingest_batch(workspace=workspace, connector=connector, device=device,
                 items=[RawItem(f"{device.pk}/{event['id']}", event)])
    _row, token = feed_token_create(workspace=workspace, device=device)
    guid = f"tag:mesh,2026:acme/device:{device.pk}/%3Cimg%20src=x%20onerror=alert(1)%3E"
    assert feed(client, feed_url(token, "rss"), "rss").entries[0].id == guid
    assert feed(client, feed_url(token, "json"), "json")["items"][0]["id"] == guid


def test_an_apostrophe_in_an_rss_item_title_reads_as_an_apostrophe(client, workspace):
    """Escaped twice, feedparser showed ``Who&#x27;s``."""
    ingest_mail(workspace, [mail(1, subject="Who's there? Tom & Jerry")])
    _row, token = feed_token_create(workspace=workspace, contact=ana(workspace), tier="subject")
    assert feed(client, feed_url(token, "rss"), "rss").entries[0].title == "Email from Ana: Who's there? Tom & Jerry"
