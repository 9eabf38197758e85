"""The web issue's pages and actions: timeline filters and full-text search, the heat strip,
per-channel rendering (email iframe, SMS delivery, X DMs), threads, live updates, the public
lifestream, merge/unmerge with previews, renaming, reply by SMS, "sync now", device status,
and hostile content.

Data goes through the real write path (``ingest_batch`` with a small in-test connector whose
payload is the draft; the device connector; ``source_sync``; the services)."""

from __future__ import annotations

import base64
import datetime as dt
import re
import zlib

import pytest
from django.core.cache import cache
from django.test import override_settings

from connectors.base import RawItem
from streams.ingest import ingest_batch
from streams.models import Activity, Contact, Source
from streams.places import device_places_public_set
from tests.factories import (
    ANA_NUMBER,
    ANA_PHONE,
    DraftConnector,
    contact_for,
    from_ana,
    ingest_drafts,
    ingest_events,
    make_event,
    mixed_history,
)
from tests.fakes.readers import page_activity_ids, text_of
from tests.fakes.ticker import ticker_source

pytestmark = pytest.mark.django_db



@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def subjects_and_texts(response) -> list[str]:
    body = text_of(response)
    return re.findall(r'<(?:h3 class="subject"|div class="bubble [^"]+"|p class="tweet") dir="auto">(.*?)</', body)


# --- filters and search ------------------------------------------------------------------------


def test_contact_timeline_filters_by_channel_direction_and_dates(member_client, workspace):
    ana = mixed_history(workspace)
    url = f"/contacts/{ana.pk}/"

    assert len(page_activity_ids(member_client.get(url))) == 5
    sms = member_client.get(url, {"channel": "sms"})
    assert subjects_and_texts(sms) == ["On my way", "Running late"]  # two days: two conversations, newest first
    assert '<option value="sms" selected>sms</option>' in text_of(sms)
    assert subjects_and_texts(member_client.get(url, {"direction": "out"})) == ["On my way"]
    dated = member_client.get(url, {"since": "2026-04-01", "until": "2026-04-11"})
    assert len(page_activity_ids(dated)) == 2  # "until" includes its whole day
    assert 'value="2026-04-01"' in text_of(dated)
    bad = member_client.get(url, {"since": "yesterday"})
    assert bad.status_code == 200 and "since: not a date (YYYY-MM-DD)" in text_of(bad)
    assert len(page_activity_ids(bad)) == 5
    empty = member_client.get(url, {"channel": "sms", "since": "2027-01-01"})
    assert "Nothing matches these filters." in text_of(empty)


def test_older_paging_keeps_the_filters(member_client, workspace, device):
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ingest_drafts(workspace, [
        (f"s{i}", from_ana(channel="sms" if i % 2 else "email", occurred_at=(base + dt.timedelta(hours=i)).isoformat(),
                           text=f"message {i}", subject=f"subject {i}"))
        for i in range(130)
    ])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    url = f"/contacts/{ana.pk}/"
    seen, query, pages = [], {"channel": "sms"}, 0
    while query is not None:
        response = member_client.get(url, query)
        ids = page_activity_ids(response)
        seen += ids
        pages += 1
        m = re.search(r'<a rel="next" class="older" href="\?([^"]+)"', text_of(response))
        query = dict(part.split("=", 1) for part in m.group(1).replace("&amp;", "&").split("&")) if m else None
        if query:
            assert query["channel"] == "sms"
    expected = list(Activity.objects.filter(channel="sms").order_by("-occurred_at", "-id").values_list("pk", flat=True))
    assert sorted(seen) == sorted(expected) and len(seen) == 65 and pages == 2


def test_full_text_search_on_the_contact_page_and_across_the_workspace(member_client, workspace):
    ana = mixed_history(workspace)
    ingest_drafts(workspace, [
        ("b1", {"channel": "email", "occurred_at": "2026-05-02T09:00:00+00:00", "subject": "Quote for Ben",
                "text": "Another quote", "direction": "in",
                "participants": [{"role": "from", "kind": "email", "value": "ben@example.com"}]}),
    ])
    body = text_of(member_client.get(f"/contacts/{ana.pk}/", {"q": "quote"}))
    # Words match in subject or text, case-insensitively; only this contact's items.
    assert re.findall(r'id="a(\d+)"', body).__len__() == 2
    assert "<mark>quote</mark>" in body and "Quote for Ben" not in body
    assert 'value="quote"' in body
    # Phrases and exclusions (websearch syntax) work and never error.
    assert len(page_activity_ids(member_client.get(f"/contacts/{ana.pk}/", {"q": '"renewal quote"'}))) == 1
    assert len(page_activity_ids(member_client.get(f"/contacts/{ana.pk}/", {"q": "quote -renewal"}))) == 1
    for odd in ("&|!(", "'", "or", "-", "a:b:c"):
        assert member_client.get(f"/contacts/{ana.pk}/", {"q": odd}).status_code == 200

    response = member_client.get("/search/", {"q": "quote"})
    assert response.status_code == 200
    assert len(page_activity_ids(response)) == 3
    assert "Quote for Ben" in text_of(response).replace("<mark>", "").replace("</mark>", "")
    assert len(page_activity_ids(member_client.get("/search/", {"q": "quote", "channel": "twitter"}))) == 1
    assert "Nothing matches “zebra”." in text_of(member_client.get("/search/", {"q": "zebra"}))


def test_workspace_search_is_isolated(client, outsider, workspace):
    mixed_history(workspace)
    client.force_login(outsider)
    body = text_of(client.get("/search/", {"q": "quote"}))
    assert "Renewal quote" not in body and "Nothing matches" in body


def test_search_index_is_used_for_the_match(workspace):
    """Once indexed, a word's candidates come from the GIN index on the search documents (with
    sequential scans off, nothing else could serve that lookup), and the page is right."""
    from django.db import connection

    from streams.search import search_index_pending
    from streams.selectors.search import (
        _TSQ,
        CANDIDATES_MAX,
        DOCUMENTS_TABLE,
        _candidates,
        workspace_search_page,
    )

    mixed_history(workspace)
    assert search_index_pending() == 5
    with connection.cursor() as cur:
        cur.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'searchdocument_gin_idx'")
        (indexdef,) = cur.fetchone()
    assert "gin" in indexdef and "(document)" in indexdef
    with connection.cursor() as cur:
        cur.execute("SET enable_seqscan = off")
        try:
            cur.execute(f"EXPLAIN SELECT activity_id FROM {DOCUMENTS_TABLE} WHERE document @@ {_TSQ} LIMIT %s",
                        ["lunch", CANDIDATES_MAX + 1])
            plan = "\n".join(r[0] for r in cur.fetchall())
        finally:
            cur.execute("SET enable_seqscan = on")
    assert "searchdocument_gin_idx" in plan
    lunch = Activity.objects.get(subject="Lunch")
    assert _candidates("lunch") == [lunch.pk]
    assert [a.subject for a in workspace_search_page(workspace=workspace, q="lunch").activities] == ["Lunch"]


# --- heat strip --------------------------------------------------------------------------------


def test_heat_strip_counts_weeks_and_follows_new_items(member_client, workspace, device):
    now = dt.datetime.now(dt.UTC)
    ingest_events(workspace, device, [
        make_event(f"h{i}", occurred_at=(now - dt.timedelta(days=7 * (i % 3), minutes=i)).isoformat(), participants=[ANA_PHONE])
        for i in range(9)
    ])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    svg = re.search(r'<svg class="heat".*?</svg>', body, re.S).group(0)
    assert 'aria-label="9 items in the last 52 weeks"' in svg
    assert svg.count("<rect") == 52
    assert svg.count(": 3 items</title>") == 3  # this week and the two before
    assert "<script" not in svg
    # Each busy week links to the timeline filtered to it, named for screen readers; with links
    # the strip is a group of them (as an img they would be Tab stops nobody can hear).
    assert re.search(r'<a href="\?since=\d{4}-\d\d-\d\d&amp;until=\d{4}-\d\d-\d\d" aria-label="Week of [^"]+: 3 items"><rect', svg)
    assert svg.startswith('<svg class="heat" role="group"')
    # A new item changes the contact's summary, so the cached strip is not reused.
    ingest_events(workspace, device, [make_event("h-new", occurred_at=now.isoformat(), participants=[ANA_PHONE])])
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    assert 'aria-label="10 items in the last 52 weeks"' in body


def test_heat_weeks_are_monday_weeks_and_levels_scale():
    from streams.heatmap import _levels, heat_svg, heat_weeks, week_start

    assert week_start(dt.date(2026, 11, 25)) == dt.date(2026, 11, 23)
    assert _levels([0, 1, 4, 100]) == [0, 1, 1, 4]
    assert _levels([0, 0]) == [0, 0]
    weeks = heat_weeks(kind="c", owner_id=-1, now=dt.datetime(2026, 11, 25, tzinfo=dt.UTC))
    assert len(weeks) == 52 and weeks[-1].start == dt.date(2026, 11, 23) and weeks[0].start == dt.date(2025, 12, 1)
    assert "0 items in the last 52 weeks" in heat_svg(weeks)


def test_heat_strip_for_a_large_timeline_is_one_grouped_query(workspace, django_assert_num_queries):
    from streams.heatmap import heat_weeks

    with django_assert_num_queries(1):
        heat_weeks(kind="c", owner_id=123456, summary=(5, "x"))
    with django_assert_num_queries(0):  # cached under the summary
        heat_weeks(kind="c", owner_id=123456, summary=(5, "x"))


# --- per-channel rendering -----------------------------------------------------------------------

TRACKER = '<img src="https://tracker.example/p.gif" width="1" height="1">'
HOSTILE_HTML = (
    '<p onclick="alert(1)">Hello <b>Ana</b></p><script>alert(2)</script>'
    '<a href="javascript:alert(3)">click</a><div style="position:fixed;top:0">overlay</div>'
    '<img src="https://images.example/logo.png" alt="logo"><style>body{display:none}</style>'
)


def raw_message(html: str) -> str:
    msg = ("From: Ana <ana@example.com>\r\nTo: me@mesh.example\r\nSubject: Hello\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html)
    return base64.b64encode(zlib.compress(msg.encode())).decode()


class StoredByMbox(DraftConnector):
    """Stores the draft as given (HTML a connector should not have stored) under the mbox
    connector's key, so the page asks the real mbox connector, through the registry, to render
    the original."""

    key = "mbox"


def test_email_snippet_attachments_and_sandboxed_message(member_client, workspace):
    stored_html = '<p onclick="alert(1)">Hello <b>Ana</b></p><a href="javascript:alert(3)">click</a>'
    ingest_batch(workspace=workspace, connector=StoredByMbox({}, {}, context={"region": workspace.region}), items=[
        RawItem("e1", {**from_ana(channel="email", occurred_at="2026-05-02T09:00:00+00:00", subject="Hello",
                           text="Hello Ana\n\nOn Monday, Ben wrote:\n> old stuff", html=stored_html,
                           attachments=[{"name": "plan.pdf", "content_type": "application/pdf", "size": 2048},
                                        {"name": "logo.png", "content_type": "image/png", "size": 10, "content_id": "logo@x"}],
                           extra={"snippet": "Hello Ana", "remote_images_blocked": 2, "tracking_pixels": 1}),
                "rfc822_zb64": raw_message(HOSTILE_HTML + TRACKER)}),
    ])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    activity = Activity.objects.get(dedup_key="email:e1")
    assert activity.connector == "mbox"
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    assert '<p class="snippet" dir="auto">Hello Ana</p>' in body
    assert "plan.pdf" in body and "application/pdf" in body and "2.0 KB" in body and "(inline)" in body
    iframe = re.search(r"<iframe [^>]*>", body).group(0)
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in iframe  # no scripts, no same-origin
    assert f'data-src="/activities/{activity.pk}/body"' in iframe
    assert "2 remote images blocked (1 tracking pixel)" in body
    assert f'href="/activities/{activity.pk}/body?images=1"' in body
    assert "onclick" not in body  # the HTML itself is never in the page

    response = member_client.get(f"/activities/{activity.pk}/body")
    assert response.status_code == 200
    doc = text_of(response)
    assert "Hello <b>Ana</b>" in doc
    assert "onclick" not in doc and "javascript:" not in doc and "<script" not in doc
    csp = response["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "img-src data:;" in csp and "sandbox" in csp
    assert "script-src" not in csp  # falls back to default-src 'none': no script at all
    assert "frame-ancestors 'self'" in csp and response["X-Frame-Options"] == "SAMEORIGIN"

    # Remote images only when asked: read from the raw message, still sanitized.
    response = member_client.get(f"/activities/{activity.pk}/body", {"images": "1"})
    doc = text_of(response)
    assert 'src="https://images.example/logo.png"' in doc and "tracker.example" in doc
    assert "<script" not in doc and "onclick" not in doc and "javascript:" not in doc
    assert "position" not in doc and "display:none" not in doc
    assert "img-src data: https: http:" in response["Content-Security-Policy"]


def test_email_body_is_scoped_to_the_workspace(client, outsider, workspace):
    ingest_drafts(workspace, [("e1", from_ana(channel="email", occurred_at="2026-05-02T09:00:00+00:00", subject="s", html="<p>x</p>"))])
    activity = Activity.objects.get(dedup_key="email:e1")
    client.force_login(outsider)
    assert client.get(f"/activities/{activity.pk}/body").status_code == 404
    client.logout()
    assert client.get(f"/activities/{activity.pk}/body").status_code == 302


def test_email_thread_reads_as_one(member_client, workspace):
    ingest_drafts(workspace, [
        ("t1", from_ana(channel="email", occurred_at="2026-05-01T09:00:00+00:00", subject="Plan", text="first", thread_key="th-1")),
        ("o1", from_ana(channel="sms", occurred_at="2026-05-01T10:00:00+00:00", text="between")),
        ("t2", from_ana(channel="email", occurred_at="2026-05-01T11:00:00+00:00", subject="Re: Plan", text="second", thread_key="th-1")),
        ("t3", from_ana(channel="email", occurred_at="2026-05-01T12:00:00+00:00", subject="Re: Plan", text="third", thread_key="th-1")),
    ])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    thread = re.search(r'<section class="thread".*?</section>', body, re.S).group(0)
    assert "· 3 messages" in thread
    assert thread.index("first") < thread.index("second") < thread.index("third")
    assert body.index("third") < body.index("between")  # the thread sits where its newest message is


def test_sms_bubbles_show_delivery_state(member_client, workspace):
    to_ana = [{"role": "to", "kind": "phone", "value": ANA_NUMBER}]
    ingest_drafts(workspace, [
        ("d1", {"channel": "sms", "occurred_at": "2026-05-01T09:00:00+00:00", "text": "delivered one", "direction": "out",
                "participants": to_ana, "extra": {"delivery": {"state": "delivered", "error_code": None}}}),
        ("d2", {"channel": "sms", "occurred_at": "2026-05-01T09:01:00+00:00", "text": "failed one", "direction": "out",
                "participants": to_ana, "extra": {"delivery": {"state": "undelivered", "error_code": 30003}}}),
        ("d3", {"channel": "sms", "occurred_at": "2026-05-01T09:02:00+00:00", "text": "queued one", "direction": "out",
                "participants": to_ana, "extra": {"delivery": {"state": "queued"}}}),
    ])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    assert '<section class="conversation"' in body
    assert "✓✓ delivered" in body
    assert '<p class="delivery bad"' in body and "not delivered" in body and "(error 30003)" in body
    assert 'class="delivery state-queued"' in body and ">queued</p>" in body


def test_x_posts_and_direct_messages(member_client, workspace):
    ingest_drafts(workspace, [
        ("p1", from_ana(channel="twitter", verb="post", occurred_at="2026-05-01T09:00:00+00:00", text="a public post",
                        url="https://x.com/ana/status/9")),
        ("dm1", from_ana(channel="twitter", verb="message", occurred_at="2026-05-01T10:00:00+00:00", text="a private DM")),
    ])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    assert '<p class="tweet" dir="auto">a public post</p>' in body and 'href="https://x.com/ana/status/9"' in body
    assert 'aria-hidden="true" focusable="false"><path d="M5 4l14 16M19 4 5 20"/></svg>X DM</span>' in body
    assert '<div class="bubble bubble-in" dir="auto">a private DM</div>' in body


# --- live updates --------------------------------------------------------------------------------


def test_live_endpoint_returns_items_newer_than_the_page(member_client, workspace, device):
    ingest_events(workspace, device, [make_event("l1", occurred_at="2026-05-01T10:00:00Z", participants=[ANA_PHONE])])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    live = re.search(r'data-live-url="([^"]+)" data-live-after="([^"]+)" data-live-poll="(\d+)"', body)
    assert live and live.group(1) == f"/contacts/{ana.pk}/since" and live.group(3) == "10000"
    after = live.group(2)

    data = member_client.get(live.group(1), {"after": after}).json()
    assert data == {"count": 0, "after": after, "html": "", "reload": False}

    ingest_events(workspace, device, [
        make_event("l2", occurred_at="2026-05-01T11:00:00Z", participants=[ANA_PHONE], data={"text": "<b>new</b> one"}),
        make_event("l3", occurred_at="2026-04-01T11:00:00Z", participants=[ANA_PHONE]),  # older than the page: not "new"
    ])
    data = member_client.get(live.group(1), {"after": after}).json()
    assert data["count"] == 1 and data["reload"] is False
    new = Activity.objects.get(dedup_key=f"device:{device.pk}/l2")
    assert f'id="a{new.pk}"' in data["html"] and "live-new" in data["html"]
    assert "&lt;b&gt;new&lt;/b&gt; one" in data["html"]
    assert member_client.get(live.group(1), {"after": data["after"]}).json()["count"] == 0
    assert member_client.get(live.group(1), {"after": "garbage"}).status_code == 400
    # Filtered or older pages do not poll.
    assert "data-live-url" not in text_of(member_client.get(f"/contacts/{ana.pk}/", {"channel": "sms"}))


def test_live_endpoint_is_scoped(client, outsider, workspace, device):
    ingest_events(workspace, device, [make_event("l1", participants=[ANA_PHONE])])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    client.force_login(outsider)
    assert client.get(f"/contacts/{ana.pk}/since").status_code == 404


# --- lifestream ----------------------------------------------------------------------------------


def lifestream_history(workspace, device):
    base = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)
    events = [
        make_event(f"loc{i}", type="location", occurred_at=(base + dt.timedelta(minutes=10 * i)).isoformat(),
                   data={"lat": 37.77, "lon": -122.41, "place": f"Spot {i}"}, visibility="public")
        for i in range(14)
    ]
    events += [
        make_event("pub-note", type="note", occurred_at="2026-05-01T12:00:00Z", data={"text": "Shipped v2 today!"},
                   visibility="public"),
        make_event("secret", type="note", occurred_at="2026-05-01T12:30:00Z",
                   data={"text": "PRIVATE diary entry"}, participants=[ANA_PHONE]),
        make_event("yday", type="note", occurred_at="2026-04-30T12:00:00Z", data={"text": "Yesterday in public"},
                   visibility="public"),
    ]
    ingest_events(workspace, device, events)
    device_places_public_set(device=device, public=True)  # its places reach the lifestream (test_places_privacy.py)
    ingest_drafts(workspace, [
        ("priv-mail", from_ana(channel="email", occurred_at="2026-05-01T13:00:00+00:00", subject="PRIVATE mail subject")),
        ("pub-post", {"channel": "twitter", "verb": "post", "direction": "out", "occurred_at": "2026-05-01T14:00:00+00:00",
                      "text": "A public post", "visibility": "public"}),
    ])


def test_lifestream_shows_public_items_grouped_and_aggregated(client, workspace, device):
    lifestream_history(workspace, device)
    response = client.get(f"/@{workspace.slug}/")  # no login needed
    assert response.status_code == 200
    body = text_of(response)
    assert "PRIVATE" not in body and "+14155550100" not in body
    assert "<b>14 location updates</b> from <bdi>Phone</bdi>" in body
    assert "Shipped v2 today!" in body and "A public post" in body and "Yesterday in public" in body
    assert body.index("A public post") < body.index("Shipped v2 today!") < body.index("14 location updates")
    assert body.index("Friday 1 May 2026") < body.index("Thursday 30 April 2026") < body.index("Yesterday in public")
    assert f'<link rel="alternate" type="application/rss+xml" title="Acme (RSS)" href="/@{workspace.slug}/feed.rss">' in body
    assert f'href="/@{workspace.slug}/feed.rss">RSS</a>' in body
    assert 'name="viewport"' in body
    assert "Log out" not in body


def test_lifestream_never_shows_a_private_item(client, workspace, device):
    lifestream_history(workspace, device)
    private_ids = set(Activity.objects.filter(workspace=workspace).exclude(visibility="public").values_list("pk", flat=True))
    assert private_ids
    url, shown = f"/@{workspace.slug}/", []
    while url:
        body = text_of(client.get(url))
        shown += [int(x) for x in re.findall(r'id="a(\d+)"', body)]
        m = re.search(r'<a rel="next" class="older" href="(\?[^"]+)"', body)
        url = f"/@{workspace.slug}/{m.group(1)}" if m else None
    assert shown and not (set(shown) & private_ids)
    assert set(shown) == set(Activity.objects.filter(workspace=workspace, visibility="public").values_list("pk", flat=True))


def test_lifestream_page_shows_neither_text_nor_counterpart_of_a_received_sms(client, workspace):
    """The page follows the feeds' rule (docs/feeds.md, "the lifestream names no one"): a public
    text someone sent is their words, so it shows as a received SMS and its time, nothing of it
    or of them; the owner's own text is shown, still without whom it went to."""
    ana = {"kind": "phone", "value": ANA_NUMBER, "display": "Ana Lopez"}
    ingest_drafts(workspace, [
        ("sms-in", {"channel": "sms", "direction": "in", "occurred_at": "2026-05-01T11:00:00+00:00", "visibility": "public",
                    "text": "Hi, it is me, call me back", "participants": [{**ana, "role": "from"}]}),
        ("sms-out", {"channel": "sms", "direction": "out", "occurred_at": "2026-05-01T11:05:00+00:00", "visibility": "public",
                     "text": "On my way to the concert", "participants": [{**ana, "role": "to"}]}),
    ])
    received = Activity.objects.get(dedup_key="sms:sms-in")
    body = text_of(client.get(f"/@{workspace.slug}/"))
    assert f'id="a{received.pk}"' in body
    assert "On my way to the concert" in body
    for trace in ("call me back", "Ana", "Lopez", ANA_NUMBER, "4155550100"):
        assert trace not in body


def test_lifestream_of_an_unknown_workspace_is_404_and_empty_one_says_so(client, workspace, other_workspace):
    assert client.get("/@nope/").status_code == 404
    assert "Nothing public yet." in text_of(client.get(f"/@{other_workspace.slug}/"))
    assert client.get(f"/@{workspace.slug}/", {"before": "garbage"}).status_code == 400


def test_lifestream_run_aggregation_needs_three_similar_items(workspace, device):
    from streams.presenters import lifestream_entries

    lifestream_history(workspace, device)
    acts = list(Activity.objects.filter(visibility="public").order_by("-occurred_at", "-id"))
    from streams.presenters import decorate_activities

    for a in acts:
        a.persons = []
    entries = lifestream_entries(decorate_activities(acts))
    assert [len(e.items) for e in entries] == [1, 1, 14, 1]


# --- merge, unmerge, rename ----------------------------------------------------------------------


def test_merge_with_preview_then_unmerge(member_client, workspace, device):
    ingest_events(workspace, device, [
        make_event("e1", participants=[ANA_PHONE]),
        make_event("e2", participants=[{"kind": "email", "value": "ana@work.example", "role": "from", "name": "Ana W."}]),
        make_event("e3", participants=[ANA_PHONE, {"kind": "email", "value": "ana@work.example", "role": "cc"}]),
    ])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    work = contact_for(workspace, "email", "ana@work.example")

    body = text_of(member_client.get(f"/contacts/{ana.pk}/merge/", {"q": "work.example"}))
    assert f'href="/contacts/{ana.pk}/merge/?other={work.pk}">Preview merge</a>' in body
    body = text_of(member_client.get(f"/contacts/{ana.pk}/merge/", {"other": work.pk}))
    assert "<bdi>ana@work.example</bdi>" in body
    assert "<dt>activities</dt><dd>2 (1 already on both timelines)</dd>" in body
    assert "<dd>3 activities on <bdi>Ana</bdi>" in body
    assert Contact.objects.get(pk=work.pk).merged_into_id is None  # a preview changes nothing

    response = member_client.post(f"/contacts/{ana.pk}/merge/", {"other": work.pk})
    assert response.status_code == 302 and response["Location"] == f"/contacts/{ana.pk}/"
    assert Contact.objects.get(pk=work.pk).merged_into_id == ana.pk
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    assert "Merged “Ana W.” into “Ana”; its page lists the merge, to undo it." in body
    assert len(page_activity_ids(member_client.get(f"/contacts/{ana.pk}/"))) == 3

    body = text_of(member_client.get(f"/contacts/{ana.pk}/unmerge/"))
    assert ('<b><bdi>Ana W.</bdi></b> becomes a contact of its own again, with '
            '<span class="ident ident-email" title="email:ana@work.example">') in body
    response = member_client.post(f"/contacts/{ana.pk}/unmerge/")
    assert response.status_code == 302
    assert Contact.objects.get(pk=work.pk).merged_into_id is None
    assert len(page_activity_ids(member_client.get(f"/contacts/{ana.pk}/"))) == 2
    # Refusals are messages, not errors.
    member_client.post(f"/contacts/{ana.pk}/merge/", {"other": ana.pk})
    assert "Not merged: cannot merge a contact into itself." in text_of(member_client.get(f"/contacts/{ana.pk}/"))


def test_merge_and_rename_are_scoped_and_need_post(client, member_client, outsider, workspace, other_workspace, device):
    from streams.services import device_create

    ingest_events(workspace, device, [make_event("e1", participants=[ANA_PHONE])])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    other_device, _ = device_create(workspace=other_workspace, name="G")
    ingest_events(other_workspace, other_device, [make_event("g1", participants=[
        {"kind": "email", "value": "gus@globex.example", "role": "from", "name": "Gus"}])])
    gus = contact_for(other_workspace, "email", "gus@globex.example")
    # A contact of another workspace cannot be merged in, nor previewed.
    assert member_client.get(f"/contacts/{ana.pk}/merge/", {"other": gus.pk}).status_code == 404
    assert member_client.post(f"/contacts/{ana.pk}/merge/", {"other": gus.pk}).status_code == 404
    assert member_client.get(f"/contacts/{ana.pk}/name/").status_code == 405
    client.force_login(outsider)
    for url in (f"/contacts/{ana.pk}/name/", f"/contacts/{ana.pk}/merge/", f"/contacts/{ana.pk}/unmerge/",
                f"/contacts/{ana.pk}/sms/"):
        assert client.post(url, {"name": "pwned", "other": gus.pk, "body": "x"}).status_code == 404
    assert Contact.objects.get(pk=ana.pk).name == "Ana"


def test_rename_contact(member_client, workspace, device):
    ingest_events(workspace, device, [make_event("e1", participants=[ANA_PHONE])])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    response = member_client.post(f"/contacts/{ana.pk}/name/", {"name": "  Ana \u202eSouza\u202c  "})
    assert response.status_code == 302
    assert Contact.objects.get(pk=ana.pk).name == "Ana Souza"  # bidi controls and spaces dropped
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    assert "<h1><bdi>Ana Souza</bdi></h1>" in body and "Name saved." in body
    member_client.post(f"/contacts/{ana.pk}/name/", {"name": "   "})
    assert Contact.objects.get(pk=ana.pk).name == "Ana Souza"
    assert "Not renamed: the name is empty." in text_of(member_client.get(f"/contacts/{ana.pk}/"))


# --- reply by SMS --------------------------------------------------------------------------------


def test_reply_by_sms_without_a_twilio_source_says_how_to_add_one(member_client, workspace, device):
    ingest_events(workspace, device, [make_event("e1", participants=[ANA_PHONE])])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    assert "Reply by SMS" in body and "No Twilio SMS source in this workspace" in body
    assert f'action="/contacts/{ana.pk}/sms/"' not in body
    member_client.post(f"/contacts/{ana.pk}/sms/", {"body": "hi"})
    assert "Not sent: no Twilio SMS source" in text_of(member_client.get(f"/contacts/{ana.pk}/"))


def test_reply_by_sms_sends_through_twilio_and_lands_on_the_timeline(member_client, workspace, device, monkeypatch):
    from streams.services import source_create
    from tests.fakes.twilio import ACCOUNT, TOKEN, FakeTwilio, install_fake_twilio

    fake = install_fake_twilio(monkeypatch, FakeTwilio())
    source_create(workspace=workspace, connector="twilio_sms", name="Support",
                  config={"account_sid": ACCOUNT, "numbers": "+14155550199"}, secrets={"auth_token": TOKEN})
    ingest_events(workspace, device, [make_event("e1", participants=[ANA_PHONE])])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    assert f'action="/contacts/{ana.pk}/sms/"' in text_of(member_client.get(f"/contacts/{ana.pk}/"))
    with override_settings(MESH_PUBLIC_URL="https://mesh.example.com"):
        response = member_client.post(f"/contacts/{ana.pk}/sms/", {"body": "See you at 3"})
    sent = Activity.objects.get(channel="sms", text="See you at 3")
    assert response.status_code == 302 and response["Location"] == f"/contacts/{ana.pk}/#a{sent.pk}"
    assert len(fake.requests) == 1
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    assert "Text sent (queued)." in body
    assert '<div class="bubble bubble-out" dir="auto">See you at 3</div>' in body


# --- sources, devices ----------------------------------------------------------------------------


@pytest.mark.usefixtures("ticker")
def test_sync_now_button_runs_the_source(member_client, workspace):
    # A polled source (file imports get no "Sync now": tests/test_sources_web.py).
    source = ticker_source(workspace, "Export", count=3)
    body = text_of(member_client.get("/sources/"))
    assert f'<form method="post" action="/sources/{source.pk}/sync/" class="sync-now">' in body
    assert member_client.get(f"/sources/{source.pk}/sync/").status_code == 405
    response = member_client.post(f"/sources/{source.pk}/sync/")
    assert response.status_code == 302 and response["Location"] == f"/sources/#source-{source.pk}"
    assert source.runs.get().trigger == "web"
    body = text_of(member_client.get("/sources/"))
    assert "Synced “Export”: 3 new, 0 duplicate, 0 failed." in body
    assert "<dt>imported</dt><dd>3 items in 1 run</dd>" in body


def test_sync_now_is_scoped(client, outsider, workspace, device, tmp_path):
    from streams.services import source_create

    source = source_create(workspace=workspace, connector="device", name="Export",
                           config={"device": device.pk, "path": str(tmp_path / "x.jsonl")})
    client.force_login(outsider)
    assert client.post(f"/sources/{source.pk}/sync/").status_code == 404
    assert not Source.objects.get(pk=source.pk).runs.exists()


def test_device_page_shows_presence_battery_and_last_location(member_client, workspace, device):
    now = dt.datetime.now(dt.UTC)
    ingest_events(workspace, device, [
        make_event("b1", type="battery", occurred_at=(now - dt.timedelta(hours=1)).isoformat(),
                   data={"battery": 42, "charging": True}),
        make_event("l1", type="location", occurred_at=(now - dt.timedelta(hours=2)).isoformat(),
                   data={"lat": 52.52, "lon": 13.405, "place": "Berlin"}),
    ])
    from streams.models import Device

    Device.objects.filter(pk=device.pk).update(last_seen_at=now)
    body = text_of(member_client.get(f"/devices/{device.pk}/"))
    assert '<li class="presence presence-online">' in body
    assert 'value="42"' in body and "42%" in body and "charging" in body
    assert "<bdi>Berlin</bdi>" in body and "52.52, 13.405" in body
    assert 'href="https://www.openstreetmap.org/?mlat=52.52000&amp;mlon=13.40500' in body
    assert '<svg class="heat"' in body
    Device.objects.filter(pk=device.pk).update(last_seen_at=now - dt.timedelta(days=2))
    assert '<li class="presence presence-offline">' in text_of(member_client.get(f"/devices/{device.pk}/"))


def test_contact_list_filters_by_channel(member_client, workspace, device):
    mixed_history(workspace)
    ingest_events(workspace, device, [make_event("e1", participants=[
        {"kind": "email", "value": "ben@example.com", "role": "from", "name": "Ben"}])])
    names = lambda body: re.findall(r'class="contact-name" href="/contacts/\d+/">([^<]+)</a>', body)  # noqa: E731
    assert set(names(text_of(member_client.get("/contacts/")))) == {"Ana", "Ben"}
    body = text_of(member_client.get("/contacts/", {"channel": "sms"}))
    assert names(body) == ["Ana"] and '<option value="sms" selected>sms</option>' in body
    assert names(text_of(member_client.get("/contacts/", {"channel": "device"}))) == ["Ben"]
    assert set(names(text_of(member_client.get("/contacts/", {"channel": "bogus"})))) == {"Ana", "Ben"}


# --- hostile content -----------------------------------------------------------------------------

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "<a href=\"javascript:alert(1)\">x</a>",
    "<style>*{display:none}</style>",
    "<div style=\"position:fixed;inset:0;background:red\">",
    "\u202eevil.exe\u202c",
    "{{ 7|add:7 }}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_content_is_inert_on_every_page(member_client, workspace, device, payload):
    ingest_drafts(workspace, [
        ("h1", {"channel": "email", "occurred_at": "2026-05-01T09:00:00+00:00", "subject": payload, "text": payload,
                "html": f"<p>{payload}</p>", "url": payload, "direction": "in", "visibility": "public",
                "attachments": [{"name": payload, "content_type": payload, "size": 1}],
                "participants": [{"role": "from", "kind": "email", "value": "evil@example.com", "display": payload}]}),
        # Sent by the owner, so the lifestream shows its text (a received one shows no text there).
        ("h2", {"channel": "sms", "occurred_at": "2026-05-01T09:01:00+00:00", "text": payload, "direction": "out",
                "visibility": "public", "extra": {"delivery": {"state": payload, "error_code": payload}},
                "participants": [{"role": "to", "kind": "email", "value": "evil@example.com"}]}),
    ])
    evil = contact_for(workspace, "email", "evil@example.com")
    activity = Activity.objects.get(dedup_key="email:h1")
    pages = [f"/contacts/{evil.pk}/", "/contacts/", f"/@{workspace.slug}/", f"/contacts/{evil.pk}/merge/?q=evil",
             "/search/?q=alert", f"/contacts/{evil.pk}/?q=alert"]
    for url in pages:
        response = member_client.get(url)
        assert response.status_code == 200, url
        body = text_of(response)
        for bad in ("<script>alert", "<img src=x", 'href="javascript:', "<style>*", '<div style="position:fixed',
                    "<a href=\"javascript", "\"><img"):
            assert bad not in body, (url, bad)
        if payload == "{{ 7|add:7 }}" and url in pages[:3]:
            assert "{{ 7|add:7 }}" in body, url  # shown as typed, never evaluated
        csp = response["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    doc = text_of(member_client.get(f"/activities/{activity.pk}/body")).split("<body>", 1)[1]
    assert "<script" not in doc and "<style" not in doc
    assert not re.search(r"<[^>]*\son\w+=", doc)  # no event handler attribute on any tag
    assert not re.search(r"<[^>]*(href|src)=\"?\s*javascript:", doc, re.I)
    assert not re.search(r"<[^>]*style=\"[^\"]*position", doc)


def test_rtl_override_in_a_name_is_isolated(member_client, workspace, device):
    ingest_events(workspace, device, [make_event("e1", participants=[{**ANA_PHONE, "name": "Ana \u202egnp.exe"}])])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    assert "<h1><bdi>Ana \u202egnp.exe</bdi></h1>" in body
    css = (
        __import__("pathlib").Path(__file__).parent.parent / "streams" / "static" / "streams" / "mesh.css"
    ).read_text()
    assert "unicode-bidi: isolate" in css and ".contact-name" in css


def test_pages_send_a_strict_csp(member_client, workspace, device):
    ingest_events(workspace, device, [make_event("e1", participants=[ANA_PHONE])])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    for url in ("/contacts/", f"/contacts/{ana.pk}/", f"/devices/{device.pk}/", "/sources/", "/search/",
                f"/@{workspace.slug}/"):
        response = member_client.get(url)
        csp = response["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "object-src 'none'" in csp, url
        assert "frame-ancestors 'none'" in csp
        body = text_of(response)
        assert "<script>" not in body and " onclick=" not in body and " onload=" not in body


def test_a_page_reads_the_users_workspaces_once(member_client, member, workspace, other_workspace):
    """The view's member_workspace and the navigation's switch (context_processors.workspaces)
    share one read of the user's workspaces."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from streams.services import workspace_add_member

    workspace_add_member(workspace=other_workspace, user=member)
    for url in ("/contacts/", "/contacts/?sort=strength", "/cold/"):
        with CaptureQueriesContext(connection) as queries:
            page = member_client.get(url).content.decode()
        reads = [q["sql"] for q in queries.captured_queries
                 if q["sql"].startswith('SELECT "streams_workspace"."id"') and '"streams_membership"' in q["sql"]]
        assert len(reads) == 1, url
        assert '<option value="acme" selected>Acme</option>' in page and '<option value="globex">Globex</option>' in page
