"""Outbound feeds: tokens, the four formats and their validity, tiers, paging, conditional GET,
tombstones, merges, the lifestream and device feeds, escaping.

Data is made through the real write path (``ingest_batch`` with the device connector or a small
in-test connector for the email/SMS channels, ``contact_merge``), never rows by hand.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import json
import re
import xml.etree.ElementTree as ET

import feedparser
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from connectors.base import RawItem
from connectors.device.connector import DeviceConnector
from streams.crypto import token_hash
from streams.feed_tokens import (
    activity_erase,
    feed_token_create,
    feed_token_revoke,
    feed_token_rotate,
)
from streams.feeds.entries import feed_guid
from streams.identity import identity_mark_self
from streams.ingest import ingest_batch
from streams.models import Activity, FeedToken, Identity
from streams.selectors import timeline_for_contact
from streams.services import contact_merge, contact_unmerge
from tests.factories import ANA_EMAIL, ME_EMAIL, ana, ingest_mail, mail, make_event
from tests.fakes.readers import FORMATS, feed_url, get

# Every test runs on both read paths of the feeds (the ``query_path`` fixture).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("query_path")]

ATOM = "{http://www.w3.org/2005/Atom}"
AT = "{http://purl.org/atompub/tombstones/1.0}"
# Mail the owner sent to Ana: the lifestream shows the text of what the owner wrote.
OWNER_WROTE = {"direction": "out", "participants": [{**ME_EMAIL, "role": "from"}, {**ANA_EMAIL, "role": "to"}]}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


# --- helpers -----------------------------------------------------------------------------------


def parse(response):
    assert response.status_code == 200, response.content[:300]
    parsed = feedparser.parse(response.content, response_headers={"content-type": response["Content-Type"]})
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def assert_json_feed_valid(doc):
    """JSON Feed 1.1 rules (feedparser 6.0 reads no JSON Feed): required keys and types, one of
    content_html/content_text per item, unique string ids, RFC 3339 dates, absolute URLs,
    attachments with url and mime_type, extensions only under keys starting with "_"."""
    known = {"version", "title", "home_page_url", "feed_url", "description", "user_comment", "next_url", "icon",
             "favicon", "authors", "language", "expired", "hubs", "items"}
    assert doc["version"] == "https://jsonfeed.org/version/1.1" and isinstance(doc["title"], str)
    assert all(k in known or k.startswith("_") for k in doc)
    for key in ("home_page_url", "feed_url", "next_url"):
        assert key not in doc or doc[key].startswith(("http://", "https://"))
    ids = [item["id"] for item in doc["items"]]
    assert all(isinstance(i, str) and i for i in ids) and len(ids) == len(set(ids))
    item_keys = {"id", "url", "external_url", "title", "content_html", "content_text", "summary", "image",
                 "banner_image", "date_published", "date_modified", "authors", "tags", "language", "attachments"}
    for item in doc["items"]:
        assert all(k in item_keys or k.startswith("_") for k in item)
        assert "content_html" in item or "content_text" in item
        for key in ("date_published", "date_modified"):
            assert key not in item or RFC3339.match(item[key])
        assert item["url"].startswith(("http://", "https://"))
        for att in item.get("attachments", []):
            assert att["url"].startswith(("http://", "https://")) and att["mime_type"]


def atom_tree(response):
    return ET.fromstring(response.content)


# --- tokens and the command ----------------------------------------------------------------------


def test_token_is_random_stored_hashed_and_bound_to_one_contact(workspace, ana_feed):
    contact, token = ana_feed
    row = FeedToken.objects.get(contact=contact)
    assert re.fullmatch(r"mf_[A-Za-z0-9_-]{43}", token)  # 256 random bits
    assert row.token_hash == token_hash(token) and token not in row.token_hash
    assert row.workspace_id == workspace.pk and row.tier == "full"
    _other, token2 = feed_token_create(workspace=workspace, contact=contact)
    assert token2 != token


def test_command_create_prints_token_and_absolute_urls(workspace, ana_feed, settings):
    contact, _ = ana_feed
    settings.MESH_PUBLIC_URL = "https://mesh.example.com"
    out = io.StringIO()
    call_command("mesh_feed_token", "create", str(contact.pk), "--tier", "subject", "--workspace", "acme", "--json",
                 stdout=out)
    doc = json.loads(out.getvalue())
    assert set(doc) == {"token", "urls"} and set(doc["urls"]) == {"rss", "atom", "json", "as2"}
    assert doc["urls"]["rss"] == f"https://mesh.example.com/feeds/{doc['token']}.rss"
    assert FeedToken.objects.get(token_hash=token_hash(doc["token"])).tier == "subject"


def test_command_defaults_to_local_url_and_rotate_and_revoke(workspace, ana_feed, client, settings):
    contact, old = ana_feed
    settings.MESH_PUBLIC_URL = ""
    out = io.StringIO()
    call_command("mesh_feed_token", "rotate", str(contact.pk), "--workspace", "acme", "--json", stdout=out)
    doc = json.loads(out.getvalue())
    assert doc["urls"]["atom"].startswith("http://127.0.0.1:8000/feeds/mf_")
    assert FeedToken.objects.get(token_hash=token_hash(doc["token"])).tier == "full"  # kept from the old token
    assert get(client, feed_url(old, "rss")).status_code == 404
    assert get(client, feed_url(doc["token"], "rss")).status_code == 200
    out = io.StringIO()
    call_command("mesh_feed_token", "revoke", str(contact.pk), "--workspace", "acme", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"revoked": 1}
    assert get(client, feed_url(doc["token"], "rss")).status_code == 404


def test_command_device_feed_and_errors(workspace, device):
    out = io.StringIO()
    call_command("mesh_feed_token", "create", "--device", str(device.pk), "--workspace", "acme", "--json", stdout=out)
    doc = json.loads(out.getvalue())
    assert FeedToken.objects.get(token_hash=token_hash(doc["token"])).device_id == device.pk
    with pytest.raises(CommandError):
        call_command("mesh_feed_token", "create", "999999", "--workspace", "acme", "--json", stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("mesh_feed_token", "create", "--workspace", "acme", "--json", stdout=io.StringIO())


# --- the formats ---------------------------------------------------------------------------------


def test_rss_is_valid_rss2_with_stable_guids_dates_and_links(client, workspace, ana_feed):
    contact, token = ana_feed
    response = get(client, feed_url(token, "rss"))
    assert response["Content-Type"] == "application/rss+xml; charset=utf-8"
    parsed = parse(response)
    assert parsed.version == "rss20"
    activities = {a.dedup_key: a for a in Activity.objects.filter(workspace=workspace)}
    assert [e.id for e in parsed.entries] == [
        f"tag:mesh,{workspace.created_at:%Y}:acme/email:m2", f"tag:mesh,{workspace.created_at:%Y}:acme/email:m1"
    ]
    first = parsed.entries[0]
    assert first.title == "Email from Ana: Contract signed"
    assert first.published_parsed[:6] == (2026, 5, 2, 10, 2, 0)
    assert first.tags[0].term == "email" and first.author == "Ana"
    assert first.link.startswith("http://testserver/contacts/") and first.link.endswith(f"#a{activities['email:m2'].pk}")
    root = ET.fromstring(response.content)
    channel = root.find("channel")
    for name in ("title", "link", "description"):  # required channel elements
        assert channel.findtext(name)
    for item in channel.findall("item"):
        assert item.find("guid").get("isPermaLink") == "false"
        email.utils.parsedate_to_datetime(item.findtext("pubDate"))  # RFC 822
        assert item.findtext("link").startswith("http://")
    selfs = [link for link in channel.findall(f"{ATOM}link") if link.get("rel") == "self"]
    assert len(selfs) == 1 and selfs[0].get("href") == f"http://testserver/feeds/{token}.rss"


def test_atom_follows_rfc4287(client, workspace, ana_feed):
    _contact, token = ana_feed
    response = get(client, feed_url(token, "atom"))
    assert response["Content-Type"] == "application/atom+xml; charset=utf-8"
    parsed = parse(response)
    assert parsed.version == "atom10" and len(parsed.entries) == 2
    root = atom_tree(response)
    assert root.findtext(f"{ATOM}id").startswith("tag:mesh,")
    assert root.findtext(f"{ATOM}title") and RFC3339.match(root.findtext(f"{ATOM}updated"))
    assert root.find(f"{ATOM}author/{ATOM}name").text
    links = root.findall(f"{ATOM}link")
    assert [link.get("href") for link in links if link.get("rel") == "self"] == [f"http://testserver/feeds/{token}.atom"]
    assert all(link.get("href").startswith("http") for link in links)
    ids = []
    for entry in root.findall(f"{ATOM}entry"):
        ids.append(entry.findtext(f"{ATOM}id"))
        assert entry.findtext(f"{ATOM}title")
        assert RFC3339.match(entry.findtext(f"{ATOM}updated")) and RFC3339.match(entry.findtext(f"{ATOM}published"))
        assert entry.find(f"{ATOM}link[@rel='alternate']").get("href").startswith("http://testserver/")
        assert entry.find(f"{ATOM}content").get("type") == "html"
    assert len(ids) == len(set(ids)) == 2
    assert "Signed copy attached." in parsed.entries[0].content[0].value


def test_json_feed_follows_version_1_1(client, workspace, ana_feed):
    _contact, token = ana_feed
    response = get(client, feed_url(token, "json"))
    assert response["Content-Type"] == "application/feed+json; charset=utf-8"
    doc = json.loads(response.content)
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert doc["title"] and doc["feed_url"] == f"http://testserver/feeds/{token}.json"
    assert doc["home_page_url"].startswith("http://testserver/contacts/")
    assert "next_url" not in doc
    assert [i["id"] for i in doc["items"]] == [f"tag:mesh,{_year(workspace)}:acme/email:m2",
                                                f"tag:mesh,{_year(workspace)}:acme/email:m1"]
    for item in doc["items"]:
        assert isinstance(item["id"], str) and ("content_html" in item or "content_text" in item)
        assert RFC3339.match(item["date_published"]) and RFC3339.match(item["date_modified"])
        assert item["tags"] == ["email"] and item["authors"] == [{"name": "Ana"}]
    assert doc["items"][0]["date_published"] == "2026-05-02T10:02:00Z"
    assert_json_feed_valid(doc)


def test_as2_is_an_ordered_collection_page(client, workspace, ana_feed):
    _contact, token = ana_feed
    response = get(client, feed_url(token, "as2"))
    assert response["Content-Type"].startswith("application/activity+json")
    doc = json.loads(response.content)
    assert doc["@context"][0] == "https://www.w3.org/ns/activitystreams"
    assert doc["type"] == "OrderedCollectionPage" and doc["id"] == f"http://testserver/feeds/{token}.as2"
    assert doc["partOf"] == doc["id"]
    items = doc["orderedItems"]
    assert [i["type"] for i in items] == ["Create", "Create"]
    assert items[0]["id"].endswith("acme/email:m2") and items[0]["actor"] == {"type": "Person", "name": "Ana"}
    assert RFC3339.match(items[0]["published"]) and items[0]["mediaType"] == "text/html"


def _year(workspace):
    return f"{workspace.created_at:%Y}"


# --- tiers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["metadata", "subject", "full"])
def test_a_token_shows_no_more_than_its_tier(client, workspace, tier):
    ingest_mail(workspace, [mail(1, subject="Secret merger", text="Body with the numbers 4711",
                           attachments=[{"name": "deal.pdf", "type": "application/pdf", "size": 1200,
                                         "url": "https://files.example.com/deal.pdf"}])])
    _row, token = feed_token_create(workspace=workspace, contact=ana(workspace), tier=tier)
    for fmt in FORMATS:
        body = get(client, feed_url(token, fmt)).content.decode()
        assert "Email from Ana" in body  # who, when, channel: every tier
        assert ("Secret merger" in body) == (tier in ("subject", "full")), (fmt, tier)
        assert ("4711" in body) == (tier == "full"), (fmt, tier)
        assert ("deal.pdf" in body) == (tier == "full"), (fmt, tier)


def test_full_tier_has_enclosures_for_attachments_with_urls(client, workspace):
    ingest_mail(workspace, [mail(1, attachments=[{"name": "deal.pdf", "type": "application/pdf", "size": 1200,
                                             "url": "https://files.example.com/deal.pdf"}, {"name": "local.txt"}])])
    _row, token = feed_token_create(workspace=workspace, contact=ana(workspace), tier="full")
    rss = parse(get(client, feed_url(token, "rss")))
    assert rss.entries[0].enclosures[0]["href"] == "https://files.example.com/deal.pdf"
    assert rss.entries[0].enclosures[0]["length"] == "1200"
    doc = json.loads(get(client, feed_url(token, "json")).content)
    assert doc["items"][0]["attachments"] == [{"url": "https://files.example.com/deal.pdf",
                                               "mime_type": "application/pdf", "title": "deal.pdf",
                                               "size_in_bytes": 1200}]
    as2 = json.loads(get(client, feed_url(token, "as2")).content)
    assert [a["name"] for a in as2["orderedItems"][0]["attachment"]] == ["deal.pdf", "local.txt"]


# --- paging, errors ------------------------------------------------------------------------------


def test_newest_50_then_rfc5005_next_pages(client, workspace):
    ingest_mail(workspace, [mail(n, day=1 + n // 60) for n in range(120)])
    _row, token = feed_token_create(workspace=workspace, contact=ana(workspace))
    seen = []
    url = feed_url(token, "atom")
    pages = 0
    while url:
        response = get(client, url)
        root = atom_tree(response)
        pages += 1
        ids = [e.findtext(f"{ATOM}id") for e in root.findall(f"{ATOM}entry")]
        seen += ids
        nxt = root.find(f"{ATOM}link[@rel='next']")
        url = nxt.get("href").removeprefix("http://testserver") if nxt is not None else None
        if pages == 1:
            assert len(ids) == 50 and root.find(f"{ATOM}link[@rel='first']").get("href").endswith(".atom")
    assert pages == 3 and len(seen) == len(set(seen)) == 120
    expected = list(Activity.objects.order_by("-occurred_at", "-id").values_list("dedup_key", flat=True))
    assert [s.split("/", 1)[1] for s in seen] == expected
    doc = json.loads(get(client, feed_url(token, "json")).content)
    second = json.loads(get(client, doc["next_url"].removeprefix("http://testserver")).content)
    assert len(doc["items"]) == 50 and second["items"][0]["id"] == seen[50]
    as2 = json.loads(get(client, feed_url(token, "as2")).content)
    assert as2["next"] == doc["next_url"].replace(".json", ".as2")
    rss = atom_tree(get(client, feed_url(token, "rss")))
    assert rss.find(f"channel/{ATOM}link[@rel='next']") is not None


def test_unknown_revoked_and_malformed_tokens_are_the_same_404(client, workspace, ana_feed):
    contact, token = ana_feed
    unknown = "mf_" + "A" * 43
    feed_token_revoke(workspace=workspace, contact=contact)
    bodies = set()
    for bad in (unknown, token, "nonsense", "mf_short", "%00", token + "x"):
        response = get(client, f"/feeds/{bad}.rss")
        assert response.status_code == 404, bad
        bodies.add(response.content)
    assert len(bodies) == 1


def test_garbage_before_is_400_but_bad_token_still_404(client, workspace, ana_feed):
    _contact, token = ana_feed
    for fmt in FORMATS:
        assert get(client, feed_url(token, fmt, before="garbage")).status_code == 400
    assert get(client, feed_url(token, "rss") + "?before=").status_code == 400
    assert get(client, "/feeds/" + "mf_" + "B" * 43 + ".rss?before=garbage").status_code == 404
    assert get(client, reverse("lifestream-feed", kwargs={"workspace": "acme", "fmt": "atom"}) + "?before=x_y"
               ).status_code == 400


def test_only_get_and_head(client, workspace, ana_feed):
    _contact, token = ana_feed
    assert client.post(feed_url(token, "rss")).status_code == 405
    assert client.head(feed_url(token, "rss")).status_code == 200


# --- conditional GET -----------------------------------------------------------------------------


def test_etag_and_last_modified_give_304_with_empty_body(client, workspace, ana_feed):
    _contact, token = ana_feed
    for fmt in FORMATS:
        first = get(client, feed_url(token, fmt))
        etag, modified = first["ETag"], first["Last-Modified"]
        assert re.fullmatch(r'"[0-9a-f]{40}"', etag)  # strong
        assert first["Cache-Control"] == "private"
        again = get(client, feed_url(token, fmt), **{"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
        assert get(client, feed_url(token, fmt), **{"If-Modified-Since": modified}).status_code == 304
        assert get(client, feed_url(token, fmt), **{"If-None-Match": '"other"'}).status_code == 200
        # If-None-Match decides when both are sent.
        both = get(client, feed_url(token, fmt), **{"If-None-Match": '"other"', "If-Modified-Since": modified})
        assert both.status_code == 200


def test_etag_changes_with_new_updated_erased_items_and_tier(client, workspace, ana_feed):
    contact, token = ana_feed
    url = feed_url(token, "atom")
    tags = [get(client, url)["ETag"]]
    ingest_mail(workspace, [mail(3, day=3)])  # a new item
    tags.append(get(client, url)["ETag"])
    m1 = Activity.objects.get(dedup_key="email:m1")
    Activity.objects.filter(pk=m1.pk).update(updated_at=m1.updated_at + dt.timedelta(minutes=5))  # as reprocess does
    tags.append(get(client, url)["ETag"])
    activity_erase(activity=Activity.objects.get(dedup_key="email:m2"))
    tags.append(get(client, url)["ETag"])
    _row, subject_token = feed_token_create(workspace=workspace, contact=contact, tier="subject")
    tags.append(get(client, feed_url(subject_token, "atom"))["ETag"])
    assert len(set(tags)) == len(tags)
    assert get(client, url, **{"If-None-Match": tags[0]}).status_code == 200


def test_item_updated_after_publication_carries_a_bumped_updated_date(client, workspace, ana_feed):
    _contact, token = ana_feed
    m1 = Activity.objects.get(dedup_key="email:m1")
    later = (m1.updated_at + dt.timedelta(days=40)).replace(hour=12, minute=0, second=0, microsecond=0)
    Activity.objects.filter(pk=m1.pk).update(updated_at=later)  # a delivery state changed
    parsed = parse(get(client, feed_url(token, "atom")))
    entry = next(e for e in parsed.entries if e.id.endswith("email:m1"))
    assert entry.updated_parsed[:6] == later.utctimetuple()[:6]
    assert entry.published_parsed[:6] == (2026, 5, 1, 10, 1, 0)
    doc = json.loads(get(client, feed_url(token, "json")).content)
    assert next(i for i in doc["items"] if i["id"].endswith("email:m1"))["date_modified"] == later.strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert parse(get(client, feed_url(token, "atom"))).feed.updated_parsed[:6] == later.utctimetuple()[:6]


def test_cached_body_is_served_until_the_head_changes(client, workspace, ana_feed, monkeypatch):
    from streams.feeds import views as feeds

    _contact, token = ana_feed
    store: dict[str, bytes] = {}
    monkeypatch.setattr(feeds._Cache, "get", classmethod(lambda cls, key: store.get(key)))
    monkeypatch.setattr(feeds._Cache, "set", classmethod(lambda cls, key, body: store.__setitem__(key, body)))
    first = get(client, feed_url(token, "rss")).content
    renders = []
    original = feeds.TimelineFeed.get_feed
    monkeypatch.setattr(feeds.TimelineFeed, "get_feed", lambda self, obj, req: renders.append(1) or original(self, obj, req))
    assert get(client, feed_url(token, "rss")).content == first and renders == []
    ingest_mail(workspace, [mail(3, day=3)])
    assert get(client, feed_url(token, "rss")).content != first and renders == [1]


def test_redis_cache_round_trip(settings):
    from streams.feeds import views as feeds

    if not settings.REDIS_URL:
        pytest.skip("no REDIS_URL")
    key = f"mesh:feed:test:{dt.datetime.now().timestamp()}"
    feeds._Cache.set(key, b"<rss/>")
    assert feeds._Cache.get(key) == b"<rss/>"


# --- merges, tombstones --------------------------------------------------------------------------


def test_after_a_merge_the_old_token_shows_the_survivors_whole_history(client, workspace):
    ingest_mail(workspace, [mail(1, day=1)])
    ingest_mail(workspace, [("s1", {"channel": "sms", "verb": "message", "occurred_at": "2026-05-03T09:00:00+00:00",
                               "text": "On my way", "participants": [
                                   {"kind": "phone", "value": "+14155550100", "role": "from", "display": "Ana"}]})])
    email_contact = ana(workspace)
    phone_contact = Identity.objects.get(workspace=workspace, kind="phone").contact
    _row, phone_token = feed_token_create(workspace=workspace, contact=phone_contact, tier="subject")
    before = parse(get(client, feed_url(phone_token, "rss")))
    assert [e.id.split("/")[-1] for e in before.entries] == ["sms:s1"]
    contact_merge(workspace=workspace, target=email_contact, other=phone_contact)
    after = parse(get(client, feed_url(phone_token, "rss")))
    assert [e.id.split("/")[-1] for e in after.entries] == ["sms:s1", "email:m1"]
    assert after.entries[0].id == before.entries[0].id  # GUIDs survive the merge
    assert after.entries[0].title == "SMS from Ana: On my way"
    # Revoking the survivor's tokens revokes those of what was merged into it.
    assert feed_token_revoke(workspace=workspace, contact=email_contact) == 1
    assert get(client, feed_url(phone_token, "rss")).status_code == 404


def test_after_an_unmerge_the_old_token_shows_its_own_contact_again(client, workspace):
    ingest_mail(workspace, [mail(1, day=1)])
    ingest_mail(workspace, [("s1", {"channel": "sms", "verb": "message", "occurred_at": "2026-05-03T09:00:00+00:00",
                               "participants": [{"kind": "phone", "value": "+14155550100", "role": "from"}]})])
    email_contact = ana(workspace)
    phone_contact = Identity.objects.get(workspace=workspace, kind="phone").contact
    _row, token = feed_token_create(workspace=workspace, contact=phone_contact)
    contact_merge(workspace=workspace, target=email_contact, other=phone_contact)
    merged_etag = get(client, feed_url(token, "atom"))["ETag"]
    contact_unmerge(workspace=workspace, contact=phone_contact)
    response = get(client, feed_url(token, "atom"), **{"If-None-Match": merged_etag})
    assert response.status_code == 200
    assert [e.id.split("/")[-1] for e in parse(response).entries] == ["sms:s1"]


def test_if_modified_since_before_a_change_gets_the_new_feed(client, workspace, ana_feed):
    _contact, token = ana_feed
    modified = get(client, feed_url(token, "rss"))["Last-Modified"]
    m1 = Activity.objects.get(dedup_key="email:m1")
    Activity.objects.filter(pk=m1.pk).update(updated_at=m1.updated_at + dt.timedelta(hours=2))
    response = get(client, feed_url(token, "rss"), **{"If-Modified-Since": modified})
    assert response.status_code == 200 and response["Last-Modified"] != modified


def test_erased_item_is_a_tombstone_for_30_days(client, workspace, ana_feed):
    contact, token = ana_feed
    m2 = Activity.objects.get(dedup_key="email:m2")
    guid = f"tag:mesh,{_year(workspace)}:acme/email:m2"
    activity_erase(activity=m2)
    m2.refresh_from_db()
    assert m2.erased_at and m2.text == "" and m2.subject == "" and m2.timeline_entries.exists()
    atom = get(client, feed_url(token, "atom"))
    root = atom_tree(atom)
    deleted = root.findall(f"{AT}deleted-entry")
    assert [d.get("ref") for d in deleted] == [guid] and RFC3339.match(deleted[0].get("when"))
    assert guid not in [e.findtext(f"{ATOM}id") for e in root.findall(f"{ATOM}entry")]
    assert parse(atom).bozo == 0
    rss = get(client, feed_url(token, "rss"))
    assert [d.get("ref") for d in ET.fromstring(rss.content).findall(f"channel/{AT}deleted-entry")] == [guid]
    as2 = json.loads(get(client, feed_url(token, "as2")).content)
    assert as2["orderedItems"][0] == {"type": "Tombstone", "id": guid, "formerType": "Create",
                                      "deleted": deleted[0].get("when")}
    doc = json.loads(get(client, feed_url(token, "json")).content)
    assert doc["_mesh"]["deleted"][0]["id"] == guid and [i["id"] for i in doc["items"]] == [guid.replace("m2", "m1")]
    # Pages and other readers skip it.
    assert [a.dedup_key for a in timeline_for_contact(contact=contact).activities] == ["email:m1"]
    # After 30 days the tombstone is gone.
    Activity.objects.filter(pk=m2.pk).update(erased_at=m2.erased_at - dt.timedelta(days=31))
    assert atom_tree(get(client, feed_url(token, "atom"))).findall(f"{AT}deleted-entry") == []


def test_erased_item_is_not_brought_back_by_a_reimport(workspace, ana_feed):
    activity_erase(activity=Activity.objects.get(dedup_key="email:m1"))
    result = ingest_mail(workspace, [mail(1, day=1)])
    assert result.new == 0
    assert Activity.objects.get(dedup_key="email:m1").text == ""


# --- lifestream and device feeds -----------------------------------------------------------------


def test_lifestream_feed_has_public_items_only(client, workspace):
    identity_mark_self(workspace=workspace, kind="email", value=ME_EMAIL["value"])
    ingest_mail(workspace, [
        mail(1, subject="Public talk", visibility="public", **OWNER_WROTE),
        mail(2, subject="Private matter", text="secret", **OWNER_WROTE),
        mail(3, subject="Another public", visibility="public", day=3, **OWNER_WROTE),
    ])
    for fmt in FORMATS:
        response = get(client, reverse("lifestream-feed", kwargs={"workspace": "acme", "fmt": fmt}))
        body = response.content.decode()
        assert "Public talk" in body and "Another public" in body
        assert "Private matter" not in body and "secret" not in body
    parsed = parse(get(client, "/@acme/feed.atom"))
    public = {a.dedup_key: feed_guid(a, public=True) for a in Activity.objects.select_related("workspace")}
    assert [e.id for e in parsed.entries] == [public["email:m3"], public["email:m1"]]
    assert parsed.feed.link == "http://testserver/@acme/"
    assert client.get("/@acme/").status_code == 200
    activity_erase(activity=Activity.objects.get(dedup_key="email:m3"))
    root = atom_tree(get(client, "/@acme/feed.atom"))
    assert [d.get("ref") for d in root.findall(f"{AT}deleted-entry")] == [public["email:m3"]]
    assert [e.findtext(f"{ATOM}id") for e in root.findall(f"{ATOM}entry")] == [public["email:m1"]]
    assert get(client, "/@nobody/feed.rss").status_code == 404


def test_device_feed_follows_the_device_timeline(client, workspace, device):
    connector = DeviceConnector({}, {}, context={"device_id": device.pk, "region": workspace.region})
    events = [make_event("c-1", participants=[{"kind": "phone", "value": "+14155550100", "role": "from", "name": "Ana"}]),
              make_event("b-1", type="battery", occurred_at="2026-05-01T11:00:00Z", data={"battery": 80})]
    ingest_batch(workspace=workspace, connector=connector, device=device,
                 items=[RawItem(f"{device.pk}/{e['id']}", e) for e in events])
    _row, token = feed_token_create(workspace=workspace, device=device)
    parsed = parse(get(client, feed_url(token, "atom")))
    assert [e.title for e in parsed.entries] == ["Battery", "Call from Ana"]
    assert parsed.feed.link == f"http://testserver/devices/{device.pk}/"


# --- escaping ------------------------------------------------------------------------------------

XSS_SUBJECT = '<script>alert("s")</script><img src=x onerror=alert(1)>'
XSS_HTML = '<p>Hi</p><script>alert("b")</script><img src="https://track.example/p.gif"><a href="javascript:alert(2)">x</a>'


def _assert_safe_html(html):
    assert "<script" not in html and "javascript:" not in html and "<img" not in html
    assert not re.search(r"<[^>]*\son\w+\s*=", html)  # no event handler attributes in any tag


def test_xss_in_subjects_and_bodies_is_escaped_or_sanitized_in_every_format(client, workspace):
    identity_mark_self(workspace=workspace, kind="email", value=ME_EMAIL["value"])
    ingest_mail(workspace, [mail(1, subject=XSS_SUBJECT, text="<b onmouseover=alert(3)>t</b>", html=XSS_HTML,
                           visibility="public", **OWNER_WROTE),
                       mail(0, subject="plain", text="<b onmouseover=alert(3)>t</b>", visibility="public",
                            **OWNER_WROTE)])
    _row, token = feed_token_create(workspace=workspace, contact=ana(workspace), tier="full")
    # Titles are plain text with the markup neutralized (feed_text), in every format.
    shown_subject = XSS_SUBJECT.replace("<", "\u2039").replace(">", "\u203a")
    for url in [feed_url(token, fmt) for fmt in FORMATS] + [f"/@acme/feed.{fmt}" for fmt in FORMATS]:
        response = get(client, url)
        body = response.content.decode()
        if url.endswith((".json", ".as2")):
            assert "<" not in body  # < > & are \u-escaped: the raw document holds no markup at all
            doc = json.loads(body)
            items = doc.get("items") or doc["orderedItems"]
            for item in items:
                _assert_safe_html(item.get("content_html") or item.get("content"))
            assert items[1]["content_html" if "items" in doc else "content"] == "<p>&lt;b onmouseover=alert(3)&gt;t&lt;/b&gt;</p>"
            assert "<p>Hi</p>" in (items[0].get("content_html") or items[0].get("content"))
            if "items" in doc:  # JSON Feed titles are plain text
                assert items[0]["title"].endswith(f": {shown_subject}")
            else:  # AS2 summary is HTML, name plain text
                assert items[0]["summary"] == shown_subject and items[0]["name"].endswith(f": {shown_subject}")
            continue
        parse(response)
        root = ET.fromstring(response.content)
        assert all(el.tag != "script" for el in root.iter())
        if url.endswith(".rss"):
            item = root.find("channel/item")
            assert item.findtext("title").endswith(f": {shown_subject}")  # no markup for readers that render it
            _assert_safe_html(item.findtext("description"))
        else:
            entry = root.find(f"{ATOM}entry")
            assert entry.find(f"{ATOM}title").get("type") in (None, "text")  # text construct
            assert entry.findtext(f"{ATOM}title").endswith(f": {shown_subject}")
            _assert_safe_html(entry.findtext(f"{ATOM}content"))
            assert entry.findtext(f"{ATOM}summary") == shown_subject  # type="html", and nothing to escape
    page = client.get("/@acme/").content.decode()
    assert "<script>alert" not in page and "javascript:" not in page and "onmouseover=alert" not in page.replace("&lt;b onmouseover=alert(3)&gt;", "")


# --- the contact page ----------------------------------------------------------------------------


def test_contact_page_creates_rotates_and_revokes_tokens(member_client, workspace, outsider, client):
    ingest_mail(workspace, [mail(1)])
    contact = ana(workspace)
    url = reverse("contact-feed-tokens", args=[contact.pk])
    # Each POST redirects to the page, which shows a new token once (tests/test_feed_tokens_page.py).
    response = member_client.post(url, {"action": "create", "tier": "subject"}, follow=True)
    token = re.search(r">(mf_[A-Za-z0-9_-]{43})<", response.content.decode()).group(1)
    assert FeedToken.objects.get(token_hash=token_hash(token)).tier == "subject"
    assert token not in member_client.get(url).content.decode()  # shown once
    response = member_client.post(url, {"action": "rotate"}, follow=True)
    rotated = re.search(r">(mf_[A-Za-z0-9_-]{43})<", response.content.decode()).group(1)
    assert rotated != token and FeedToken.objects.filter(contact=contact, revoked_at=None).count() == 1
    assert "1 token revoked" in member_client.post(url, {"action": "revoke"}, follow=True).content.decode()
    client.force_login(outsider)
    assert client.post(url, {"action": "create"}).status_code == 404


def test_rotate_keeps_tier_unless_told(workspace, ana_feed):
    contact, _ = ana_feed
    row, _t = feed_token_rotate(workspace=workspace, contact=contact)
    assert row.tier == "full"
    row, _t = feed_token_rotate(workspace=workspace, contact=contact, tier="metadata")
    assert row.tier == "metadata"
    assert FeedToken.objects.filter(contact=contact, revoked_at=None).count() == 1


def test_a_304_costs_one_or_two_indexed_queries(client, workspace, ana_feed, django_assert_num_queries, query_path):
    _contact, token = ana_feed
    etag = get(client, feed_url(token, "atom"))["ETag"]  # also records last use (once an hour)
    # ORM: the token, then the head. Prepared (persistent connections): both in one statement,
    # prepared by the first GET on this connection.
    with django_assert_num_queries(2 if query_path == "orm" else 1):
        assert get(client, feed_url(token, "atom"), **{"If-None-Match": etag}).status_code == 304


def test_a_merged_contacts_token_is_polled_on_the_survivors_timeline(client, workspace):
    ingest_mail(workspace, [mail(1, day=1)])
    ingest_mail(workspace, [("s1", {"channel": "sms", "verb": "message", "occurred_at": "2026-05-03T09:00:00+00:00",
                               "participants": [{"kind": "phone", "value": "+14155550100", "role": "from"}]})])
    phone_contact = Identity.objects.get(workspace=workspace, kind="phone").contact
    _row, token = feed_token_create(workspace=workspace, contact=phone_contact)
    contact_merge(workspace=workspace, target=ana(workspace), other=phone_contact)
    first = get(client, feed_url(token, "atom"))
    assert len(parse(first).entries) == 2
    assert get(client, feed_url(token, "atom"), **{"If-None-Match": first["ETag"]}).status_code == 304


def test_rendering_a_full_page_costs_a_fixed_number_of_queries(client, workspace, settings, django_assert_max_num_queries):
    settings.MESH_FEED_CACHE = False
    ingest_mail(workspace, [mail(n, day=1 + n // 60) for n in range(60)])
    _row, token = feed_token_create(workspace=workspace, contact=ana(workspace), tier="full")
    get(client, feed_url(token, "json"))  # records last use
    with django_assert_max_num_queries(4):  # token, head, activities, participants
        doc = json.loads(get(client, feed_url(token, "json")).content)
    assert len(doc["items"]) == 50


def test_erasing_a_pushed_event_blanks_its_stored_raw_body(workspace, device):
    from streams.models import InboundItem
    from streams.services import inbound_process, inbound_store

    event = make_event("c-9", data={"text": "private words"},
                       participants=[{"kind": "phone", "value": "+14155550100", "role": "from"}])
    ids, _ = inbound_store(workspace=workspace, connector="device", device=device,
                           items=[RawItem(f"{device.pk}/c-9", event)])
    inbound_process(item_ids=ids)
    activity = Activity.objects.get(dedup_key__endswith="/c-9")
    activity_erase(activity=activity)
    assert InboundItem.objects.get(pk=ids[0]).payload == {}
    assert "private words" not in json.dumps(Activity.objects.filter(pk=activity.pk).values().get(), default=str)
