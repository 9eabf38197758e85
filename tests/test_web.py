"""Server-rendered pages: what they show, who may see them, paging, escaping.

Data is made through the real write path (``ingest_batch`` with the device connector, or with
a small in-test connector for the email/SMS/X channels; ``source_sync`` for sources;
``contact_merge`` for merges), never by creating rows by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.urls import reverse

from tests.factories import ANA_PHONE, contact_for, ingest_drafts, ingest_events, make_event
from tests.fakes.readers import page_activity_ids, text_of

pytestmark = pytest.mark.django_db

BEN = {"kind": "email", "value": "ben@example.com", "role": "to", "name": "Ben Ortiz"}


# --- helpers -----------------------------------------------------------------------------------


def older_link(response) -> str | None:
    m = re.search(r'<a rel="next" class="older" href="\?before=([^"]+)"', text_of(response))
    return m.group(1) if m else None


# --- login and layout --------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/contacts/", "/contacts/1/", "/devices/", "/devices/1/", "/sources/"])
def test_anonymous_is_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_login_page_and_logging_in(client, member):
    response = client.get("/accounts/login/?next=/sources/")
    assert response.status_code == 200
    body = text_of(response)
    assert '<form method="post" action="/accounts/login/">' in body
    assert 'name="username"' in body and 'name="password"' in body
    assert 'name="next" value="/sources/"' in body
    assert "Log out" not in body  # no nav for anonymous users
    response = client.post("/accounts/login/", {"username": "alice", "password": "wrong", "next": "/sources/"})
    assert response.status_code == 200
    assert 'role="alert"' in text_of(response)
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "correct horse battery", "next": "/sources/"}
    )
    assert response.status_code == 302 and response["Location"] == "/sources/"


def test_layout_nav_logout_and_static_assets(member_client, member):
    body = text_of(member_client.get("/contacts/"))
    assert '<a class="brand" href="/contacts/">Mesh</a>' in body
    assert '<a href="/contacts/" aria-current="page">Contacts</a>' in body
    assert '<a href="/devices/">Devices</a>' in body
    assert '<a href="/sources/">Sources</a>' in body
    assert "/admin/" not in body  # not staff
    assert '<form class="logout" method="post" action="/accounts/logout/">' in body
    assert 'name="csrfmiddlewaretoken"' in body
    assert "/static/streams/mesh.css" in body and "/static/streams/mesh.js" in body
    assert "<script>" not in body  # the CSP allows no inline script
    assert 'name="viewport"' in body
    member.is_staff = True
    member.save()
    assert '<a href="/admin/">Admin</a>' in text_of(member_client.get("/contacts/"))


def test_logout_is_a_post(member_client):
    response = member_client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert member_client.get("/contacts/").status_code == 302


def test_workspace_switcher(member_client, member, workspace, other_workspace, device):
    from streams.services import device_create, workspace_add_member

    workspace_add_member(workspace=other_workspace, user=member)
    ingest_events(workspace, device, [make_event("e1", participants=[ANA_PHONE])])
    other_device, _ = device_create(workspace=other_workspace, name="Globex laptop")
    ingest_events(other_workspace, other_device, [make_event("g1", participants=[
        {"kind": "email", "value": "gus@globex.example", "role": "from", "name": "Gus"}])])

    body = text_of(member_client.get("/contacts/"))
    assert '<select id="ws-select" name="ws" data-autosubmit>' in body
    assert '<option value="acme" selected>Acme</option>' in body
    assert '<option value="globex">Globex</option>' in body
    assert ">Ana<" in body and "Gus" not in body

    body = text_of(member_client.get("/contacts/?ws=globex"))
    assert ">Gus<" in body and "Ana" not in body
    assert '<option value="globex" selected>Globex</option>' in body
    # The choice sticks for the other pages.
    body = text_of(member_client.get("/devices/"))
    assert "Globex laptop" in body and ">Phone<" not in body
    # A slug the user is not a member of is ignored, not an error.
    member_client.get("/contacts/?ws=nope")
    assert member_client.session["mesh_workspace"] == "globex"


# --- contact list ------------------------------------------------------------------------------


def test_contact_list_sorted_with_counts_identities_and_time(member_client, workspace, device):
    ingest_events(workspace, device, [
        make_event("e1", occurred_at="2026-05-01T10:00:00Z", participants=[ANA_PHONE]),
        make_event("e2", occurred_at="2026-05-02T10:00:00Z", participants=[ANA_PHONE]),
        make_event("e3", occurred_at="2026-05-03T09:00:00Z", participants=[BEN]),
    ])
    ingest_drafts(workspace, [
        ("m1", {"channel": "email", "occurred_at": "2026-04-01T08:00:00+00:00", "subject": "Hi",
                "participants": [{"role": "from", "kind": "email", "value": "Ana@Example.com", "display": "Ana"}]}),
    ])
    ana = contact_for(workspace, "phone", "+14155550100")
    ben = contact_for(workspace, "email", "ben@example.com")

    response = member_client.get("/contacts/")
    assert response.status_code == 200
    body = text_of(response)
    # Ben was active last, so he comes first.
    assert body.index(f'href="/contacts/{ben.pk}/">Ben Ortiz</a>') < body.index(f'href="/contacts/{ana.pk}/">Ana</a>')
    assert "<bdi>(415) 555-0100</bdi>" in body  # identities as people read them (tests/test_people_display.py)
    assert "<bdi>ben@example.com</bdi>" in body
    assert '<li class="chip ch-device">device <b>2</b></li>' in body
    assert '<li class="chip ch-device">device <b>1</b></li>' in body
    assert 'datetime="2026-05-03T09:00:00+00:00"' in body
    # The second "Ana" (an email identity) is a contact of her own until merged.
    assert "<bdi>ana@example.com</bdi>" in body
    assert '<li class="chip ch-email">email <b>1</b></li>' in body


def test_contact_list_search(member_client, workspace, device):
    ingest_events(workspace, device, [
        make_event("e1", participants=[ANA_PHONE]),
        make_event("e2", participants=[BEN]),
        make_event("e3", participants=[{"kind": "x", "value": "783214", "role": "from", "name": "@cleo"}]),
    ])

    def names(q):
        body = text_of(member_client.get("/contacts/", {"q": q}))
        return set(re.findall(r'class="contact-name" href="/contacts/\d+/">([^<]+)</a>', body))

    assert names("") == {"Ana", "Ben Ortiz", "@cleo"}
    assert names("ortiz") == {"Ben Ortiz"}
    assert names("BEN@EXAMPLE") == {"Ben Ortiz"}
    assert names("+14155550100") == {"Ana"}
    assert names("(415) 555-0100") == {"Ana"}
    assert names("cleo") == {"@cleo"}
    assert names("783214") == {"@cleo"}
    body = text_of(member_client.get("/contacts/", {"q": "nobody-here"}))
    assert "No contact matches “nobody-here”." in body
    assert 'value="nobody-here"' in body


def test_contact_list_keyset_paging(member_client, workspace, device):
    base = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    events = [
        make_event(f"e{i}", occurred_at=(base + dt.timedelta(hours=i)).isoformat(),
                   participants=[{"kind": "phone", "value": f"+1415555{i:04d}", "role": "from", "name": f"P{i:03d}"}])
        for i in range(60)
    ]
    ingest_events(workspace, device, events)
    names_seen = []
    url = "/contacts/"
    pages = 0
    while url:
        body = text_of(member_client.get(url))
        names_seen += re.findall(r'class="contact-name" href="/contacts/\d+/">([^<]+)</a>', body)
        m = re.search(r'<a rel="next" class="older" href="\?before=([^"]+)"', body)
        url = f"/contacts/?before={m.group(1)}" if m else None
        pages += 1
    assert pages == 2
    assert names_seen == [f"P{i:03d}" for i in reversed(range(60))]
    assert member_client.get("/contacts/?before=garbage").status_code == 400


# --- contact page ------------------------------------------------------------------------------


def test_contact_page_renders_each_channel(member_client, workspace, device):
    me = {"kind": "phone", "value": "+14155559999", "role": "to"}
    ingest_events(workspace, device, [
        make_event("call1", type="call.incoming", occurred_at="2026-05-01T10:00:00Z",
                   data={"duration": 192}, participants=[ANA_PHONE, me]),
        make_event("bat1", type="battery", occurred_at="2026-05-01T11:00:00Z",
                   data={"battery": 81, "charging": True, "lat": 37.7749, "lon": -122.4194},
                   participants=[{**ANA_PHONE, "role": "subject"}]),
    ])
    long_text = "Dear Ana, " + "blah " * 200 + "THE END"
    ingest_drafts(workspace, [
        ("mail1", {"channel": "email", "verb": "receive", "direction": "in",
                   "occurred_at": "2026-05-02T09:00:00+00:00", "subject": "Quarterly numbers",
                   "text": "Here are the numbers you asked for.",
                   "attachments": [{"name": "q2.pdf", "mediaType": "application/pdf", "size": 20480}],
                   "participants": [{"role": "from", "kind": "phone", "value": "+14155550100"},
                                    {"role": "cc", "kind": "email", "value": "ben@example.com", "display": "Ben"}]}),
        ("mail2", {"channel": "email", "verb": "send", "direction": "out",
                   "occurred_at": "2026-05-02T09:30:00+00:00", "subject": "",
                   "text": long_text,
                   "participants": [{"role": "to", "kind": "phone", "value": "+14155550100"}]}),
        ("sms1", {"channel": "sms", "verb": "send", "direction": "out",
                  "occurred_at": "2026-05-03T12:00:00+00:00", "text": "See you at 6?",
                  "participants": [{"role": "to", "kind": "phone", "value": "(415) 555-0100"}]}),
        ("sms2", {"channel": "sms", "verb": "receive", "direction": "in",
                  "occurred_at": "2026-05-03T12:05:00+00:00", "text": "Yes!",
                  "participants": [{"role": "from", "kind": "phone", "value": "+1 415 555 0100"}]}),
        ("x1", {"channel": "twitter", "verb": "mention", "direction": "in",
                "occurred_at": "2026-05-04T08:00:00+00:00", "text": "@me great talk today",
                "url": "https://x.com/ana/status/1",
                "participants": [{"role": "author", "kind": "phone", "value": "+14155550100"}]}),
        ("x2", {"channel": "twitter", "verb": "post", "direction": "in",
                "occurred_at": "2026-05-04T08:01:00+00:00", "text": "bad link", "url": "javascript:alert(1)",
                "participants": [{"role": "author", "kind": "phone", "value": "+14155550100"}]}),
    ])
    ana = contact_for(workspace, "phone", "+14155550100")
    ben = contact_for(workspace, "email", "ben@example.com")

    response = member_client.get(f"/contacts/{ana.pk}/")
    assert response.status_code == 200
    body = text_of(response)
    assert "<h1><bdi>Ana</bdi>" in body
    assert "<bdi>(415) 555-0100</bdi>" in body
    for chip in ('device <b>2</b>', 'email <b>2</b>', 'sms <b>2</b>', 'twitter <b>2</b>'):
        assert chip in body
    ids = page_activity_ids(response)
    assert len(ids) == 8
    # Newest first, grouped by day.
    assert body.index("@me great talk today") < body.index("See you at 6?") < body.index("Quarterly numbers")
    assert "Monday 4 May 2026" in body and "Friday 1 May 2026" in body
    # Device events: one line each with a human label (tests/test_dense_timeline.py), a map
    # link where they have a place, the device they came from.
    assert '<span class="row-label">Call · 3 min 12 s</span>' in body
    assert '<span class="row-label">Battery 81 % · charging</span>' in body
    assert "https://www.openstreetmap.org/?mlat=37.77490&amp;mlon=-122.41940" in body
    assert f'on <a href="/devices/{device.pk}/">Phone</a>' in body
    # Email: subject and a snippet; long text truncated with the full text behind <details>.
    assert '<h3 class="subject" dir="auto">Quarterly numbers</h3>' in body
    assert '<p class="snippet" dir="auto">Here are the numbers you asked for.</p>' in body
    assert '<h3 class="subject" dir="auto">(no subject)</h3>' in body
    assert "<summary>Full text</summary>" in body and "THE END" in body
    assert "q2.pdf" in body and "20.0 KB" in body
    # SMS bubbles, by direction.
    assert '<div class="bubble bubble-out" dir="auto">See you at 6?</div>' in body
    assert '<div class="bubble bubble-in" dir="auto">Yes!</div>' in body
    # X: text and a link, but only http(s) links.
    assert '<p class="tweet" dir="auto">@me great talk today</p>' in body
    assert 'href="https://x.com/ana/status/1"' in body
    assert "javascript:" not in body
    # Direction icons named in words, and participants (role + name, linked to their contact)
    # other than Ana, whose page this is.
    assert 'aria-label="Incoming"' in body and 'aria-label="Outgoing"' in body
    assert '<span class="role">cc</span>' in body
    assert f'<a href="/contacts/{ben.pk}/" title="email:ben@example.com"><bdi>Ben</bdi></a>' in body
    assert '<span class="role">from</span>' not in body
    # No older page.
    assert older_link(response) is None


def test_contact_page_keyset_paging_has_no_gap_and_no_overlap(member_client, workspace, device):
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    events = [
        # Some events share a timestamp: the id breaks the tie.
        make_event(f"e{i:03d}", occurred_at=(base + dt.timedelta(minutes=i - i % 3)).isoformat(), participants=[ANA_PHONE])
        for i in range(120)
    ]
    result = ingest_events(workspace, device, events)
    assert result.new == 120
    ana = contact_for(workspace, "phone", "+14155550100")
    url = reverse("contact-detail", args=[ana.pk])

    first = member_client.get(url)
    page1 = page_activity_ids(first)
    cursor = older_link(first)
    assert len(page1) == 50 and cursor
    second = member_client.get(url, {"before": cursor})
    assert second.status_code == 200
    page2 = page_activity_ids(second)
    cursor2 = older_link(second)
    assert len(page2) == 50 and cursor2
    third = member_client.get(url, {"before": cursor2})
    page3 = page_activity_ids(third)
    assert len(page3) == 20
    assert older_link(third) is None
    assert "« Newest" in text_of(third)

    from streams.models import Activity

    expected = list(
        Activity.objects.filter(workspace=workspace).order_by("-occurred_at", "-id").values_list("pk", flat=True)
    )
    assert page1 + page2 + page3 == expected  # newest first, no overlap, no gap
    assert len(set(page1 + page2 + page3)) == 120


def test_older_items_for_the_script_are_the_items_and_the_next_link_only(
        member_client, workspace, device, django_assert_max_num_queries):
    """mesh.js asks for an older page with ``X-Mesh-More: 1`` and appends the answer: the same
    items as the whole older page, the next "older" link, and nothing of the page around them
    (no header, identities, heat strip or forms); the response varies on that header."""
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ingest_events(workspace, device, [
        make_event(f"m{i:03d}", occurred_at=(base + dt.timedelta(minutes=i)).isoformat(), participants=[ANA_PHONE])
        for i in range(120)
    ])
    ana = contact_for(workspace, "phone", "+14155550100")
    url = reverse("contact-detail", args=[ana.pk])
    first = member_client.get(url)
    assert 'data-more' in text_of(first) and "X-Mesh-More" in first["Vary"]
    cursor = older_link(first)
    whole = member_client.get(url, {"before": cursor})
    with django_assert_max_num_queries(6):
        more = member_client.get(url, {"before": cursor}, HTTP_X_MESH_MORE="1")
    assert more.status_code == 200 and "X-Mesh-More" in more["Vary"]
    body = text_of(more)
    assert page_activity_ids(more) == page_activity_ids(whole) and len(page_activity_ids(more)) == 50
    assert older_link(more) == older_link(whole)
    for absent in ("<html", "<h1", "Identities", "heat", "<form", "« Newest"):
        assert absent not in body
    assert body.lstrip().startswith('<h2 class="day">')
    # The last page: its items and no further link.
    last = member_client.get(url, {"before": older_link(more)}, HTTP_X_MESH_MORE="1")
    assert len(page_activity_ids(last)) == 20 and older_link(last) is None
    # Without a cursor the header changes nothing (the first page is always the whole page).
    assert "<h1" in text_of(member_client.get(url, HTTP_X_MESH_MORE="1"))
    # The device page answers the same way.
    dev = member_client.get(f"/devices/{device.pk}/", {"before": cursor}, HTTP_X_MESH_MORE="1")
    assert dev.status_code == 200 and "<h1" not in text_of(dev) and page_activity_ids(dev)


@pytest.mark.parametrize("cursor", ["garbage", "20260101T000000.000000Z_x", "x_1", "2026-01-01_5"])
def test_bad_cursor_is_400(member_client, workspace, device, cursor):
    ingest_events(workspace, device, [make_event("e1", participants=[ANA_PHONE])])
    ana = contact_for(workspace, "phone", "+14155550100")
    assert member_client.get(f"/contacts/{ana.pk}/", {"before": cursor}).status_code == 400
    assert member_client.get(f"/devices/{device.pk}/", {"before": cursor}).status_code == 400


def test_user_content_is_escaped(member_client, workspace, device):
    ingest_events(workspace, device, [
        make_event("x1", type="note", participants=[{**ANA_PHONE, "name": "<script>alert(1)</script>"}],
                   data={"text": "<img src=x onerror=alert(1)>", "title": "<b>bold</b>",
                         "place": "<iframe src=//evil>"}),
    ])
    ingest_drafts(workspace, [
        ("m1", {"channel": "email", "occurred_at": "2026-05-02T09:00:00+00:00", "direction": "in",
                "subject": "<svg onload=alert(2)>", "html": "<p>hi</p><script>alert(3)</script>",
                "participants": [{"role": "from", "kind": "phone", "value": "+14155550100"}]}),
        ("s1", {"channel": "sms", "occurred_at": "2026-05-02T09:01:00+00:00", "direction": "in",
                "text": "<a href=javascript:alert(4)>x</a>",
                "participants": [{"role": "from", "kind": "phone", "value": "+14155550100"}]}),
    ])
    ana = contact_for(workspace, "phone", "+14155550100")
    for url in (f"/contacts/{ana.pk}/", f"/devices/{device.pk}/", "/contacts/"):
        body = text_of(member_client.get(url))
        assert "<script>alert" not in body
        assert "<img src=x" not in body
        assert "<svg onload" not in body and "<iframe src=//evil" not in body and "<a href=javascript" not in body
    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "&lt;b&gt;bold&lt;/b&gt;" in body
    assert "&lt;svg onload=alert(2)&gt;" in body
    assert "&lt;a href=javascript:alert(4)&gt;x&lt;/a&gt;" in body
    assert "alert(3)" in body and "&lt;script&gt;alert(3)" not in body  # html shown as text only
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text_of(member_client.get("/contacts/"))


def test_merged_contact_shows_the_survivor(member_client, workspace, device):
    from streams.services import contact_merge

    ingest_events(workspace, device, [
        make_event("e1", participants=[ANA_PHONE]),
        make_event("e2", participants=[{"kind": "email", "value": "ana@work.example", "role": "from", "name": "Ana W."}]),
    ])
    ana = contact_for(workspace, "phone", "+14155550100")
    work = contact_for(workspace, "email", "ana@work.example")
    contact_merge(workspace=workspace, target=ana, other=work)

    response = member_client.get(f"/contacts/{work.pk}/")
    assert response.status_code == 200
    body = text_of(response)
    assert f'This contact was merged into <a href="/contacts/{ana.pk}/">Ana</a>' in body
    assert 'class="timeline"' not in body and page_activity_ids(response) == []

    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    assert "<bdi>ana@work.example</bdi>" in body and "<bdi>(415) 555-0100</bdi>" in body
    assert f'<li><a href="/contacts/{work.pk}/"><bdi>Ana W.</bdi></a>' in body  # under "Merged here:"
    assert f'<a class="undo-merge" href="/contacts/{work.pk}/unmerge/">undo this merge</a>' in body
    assert len(page_activity_ids(member_client.get(f"/contacts/{ana.pk}/"))) == 2
    # The list shows only the survivor.
    body = text_of(member_client.get("/contacts/"))
    assert f'href="/contacts/{ana.pk}/"' in body and f'href="/contacts/{work.pk}/"' not in body


# --- devices -----------------------------------------------------------------------------------


def test_device_list_and_page(member_client, workspace, device):
    from streams.services import device_create, device_revoke

    ingest_events(workspace, device, [
        make_event("b1", type="battery", occurred_at="2026-05-01T10:00:00Z", data={"battery": 90}),
        make_event("b2", type="battery", occurred_at="2026-05-01T12:00:00Z", data={"battery": 81, "charging": False}),
        make_event("l1", type="location", occurred_at="2026-05-01T11:00:00Z",
                   data={"lat": 52.52, "lon": 13.405, "place": "Berlin"}),
        make_event("c1", type="call.outgoing", occurred_at="2026-05-01T13:00:00Z",
                   data={"duration": 3725}, participants=[{**ANA_PHONE, "role": "to"}]),
    ])
    old, _ = device_create(workspace=workspace, name="Old laptop", kind="laptop")
    device_revoke(device=old)

    body = text_of(member_client.get("/devices/"))
    assert f'<a class="contact-name" href="/devices/{device.pk}/">Phone</a>' in body
    assert f'<a class="contact-name" href="/devices/{old.pk}/">Old laptop</a>' in body
    assert "<li>battery: 81%</li>" in body
    assert body.count('<span class="chip bad">revoked</span>') == 1
    assert "4 events" in body
    assert '<a href="/devices/" aria-current="page">Devices</a>' in body

    response = member_client.get(f"/devices/{device.pk}/")
    assert response.status_code == 200
    body = text_of(response)
    assert "<h1>Phone <span class=\"chip\">phone</span></h1>" in body
    assert '<span class="chip good">active</span>' in body
    assert "<dt>battery</dt><dd>81%" in body
    assert "<dt>charging</dt><dd>no" in body
    assert "<dt>place</dt><dd>Berlin" in body
    assert "<dt>lat</dt><dd>52.52" in body and "<dt>lon</dt><dd>13.405" in body
    assert "<dt>events</dt><dd>4</dd>" in body
    assert '<span class="row-label">Call · 1 h 2 min</span>' in body and 'aria-label="Outgoing"' in body
    assert '<span class="row-label">Location</span>' in body and '<span class="row-detail" dir="auto">Berlin</span>' in body
    assert '<span class="row-label">Battery 81 %</span>' in body
    assert len(page_activity_ids(response)) == 4
    assert 'on <a href="/devices/' not in body  # the device page does not link to itself per item

    body = text_of(member_client.get(f"/devices/{old.pk}/"))
    assert '<span class="chip bad">revoked</span>' in body
    assert "Nothing reported yet." in body and "No activity yet." in body


def test_device_page_paging(member_client, workspace, device):
    base = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    ingest_events(workspace, device, [
        make_event(f"p{i}", type="ping", occurred_at=(base + dt.timedelta(minutes=i)).isoformat()) for i in range(55)
    ])
    first = member_client.get(f"/devices/{device.pk}/")
    page1 = page_activity_ids(first)
    second = member_client.get(f"/devices/{device.pk}/", {"before": older_link(first)})
    page2 = page_activity_ids(second)
    assert (len(page1), len(page2)) == (50, 5)
    assert not set(page1) & set(page2)
    assert older_link(second) is None


# --- sources -----------------------------------------------------------------------------------


def test_source_list_shows_health_runs_and_failures(member_client, workspace, device, tmp_path):
    from streams.services import source_create, source_sync

    path = tmp_path / "events.jsonl"
    lines = [json.dumps(make_event(f"s{i}", type="ping", occurred_at=f"2026-05-01T10:0{i}:00Z")) for i in range(3)]
    lines.append("{this is not json")
    lines.append(json.dumps({"id": "bad-type", "type": "Not A Type", "occurred_at": "2026-05-01T10:00:00Z"}))
    path.write_text("\n".join(lines) + "\n")
    source = source_create(
        workspace=workspace, connector="device", name="Phone export <2026>",
        config={"device": device.pk, "path": str(path)},
    )
    source_sync(source=source)
    source_sync(source=source, fresh=True)

    response = member_client.get("/sources/")
    assert response.status_code == 200
    body = text_of(response)
    assert "<h2>Phone export &lt;2026&gt;</h2>" in body
    assert '<span class="chip">device</span>' in body
    assert '<span class="chip status-ok">Ok</span>' in body
    assert "✗ needs a look" in body  # failures count against health
    assert "2 item(s) failed to import" in body
    assert body.count('<tr class="run-ok">') == 2
    # First run: 5 fetched, 3 new, 2 failed; second: 5 fetched, 3 duplicates, 2 failed.
    runs = re.findall(
        r'<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>',
        body,
    )
    assert runs == [("5", "0", "3", "2"), ("5", "3", "0", "2")]
    assert f"<code>{device.pk}/line-4</code>" in body and "invalid JSON" in body
    assert f"<code>{device.pk}/bad-type</code>" in body and "type: must be a lowercase name" in body
    assert "(2 unresolved)" in body
    assert "last success</dt><dd><time" in body


def test_source_list_empty_and_healthy_wording(member_client):
    body = text_of(member_client.get("/sources/"))
    assert "No sources yet." in body


# --- isolation ---------------------------------------------------------------------------------


def test_outsider_sees_nothing_of_another_workspace(client, outsider, workspace, device):
    ingest_events(workspace, device, [make_event("e1", participants=[ANA_PHONE])])
    ana = contact_for(workspace, "phone", "+14155550100")
    client.force_login(outsider)

    assert client.get(f"/contacts/{ana.pk}/").status_code == 404
    assert client.get(f"/devices/{device.pk}/").status_code == 404
    assert client.get(f"/contacts/{ana.pk}/", {"before": "garbage"}).status_code == 404
    body = text_of(client.get("/contacts/"))
    assert "Ana" not in body and "+14155550100" not in body
    assert "No contacts yet" in body
    body = text_of(client.get("/contacts/", {"q": "Ana"}))
    assert "No contact matches “Ana”." in body and 'class="contact-name"' not in body
    # Asking for the other workspace by slug changes nothing.
    body = text_of(client.get("/contacts/?ws=acme"))
    assert "Ana" not in body and client.session.get("mesh_workspace") != "acme"
    assert '<span class="ws-name" title="Workspace">Globex</span>' in body
    assert "Phone" not in text_of(client.get("/devices/?ws=acme"))


def test_teammate_sees_the_workspace(client, teammate, workspace, device):
    ingest_events(workspace, device, [make_event("e1", participants=[ANA_PHONE])])
    ana = contact_for(workspace, "phone", "+14155550100")
    client.force_login(teammate)
    assert client.get(f"/contacts/{ana.pk}/").status_code == 200
    assert ">Ana<" in text_of(client.get("/contacts/"))


def test_user_without_workspace(client, django_user_model):
    user = django_user_model.objects.create_user("loner", password="x" * 12)
    client.force_login(user)
    for url in ("/contacts/", "/devices/", "/sources/"):
        response = client.get(url)
        assert response.status_code == 200
        assert "not a member of any workspace" in text_of(response)


def test_pages_do_a_bounded_number_of_queries(member_client, workspace, device, django_assert_max_num_queries):
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ingest_events(workspace, device, [
        make_event(f"e{i}", occurred_at=(base + dt.timedelta(minutes=i)).isoformat(),
                   participants=[ANA_PHONE, {"kind": "phone", "value": f"+1415555{i:04d}", "role": "to"}])
        for i in range(80)
    ])
    ana = contact_for(workspace, "phone", "+14155550100")
    # Session, user, workspaces, the object, its identities, merged children, the page (entries,
    # activities, participants), the heat strip's weekly counts (cached after this), whether an
    # SMS source exists: the same number for 5 or 50 rows. The first page of a session also
    # reads the time zones and keeps them in the session (streams.timezones: a select, and the
    # session's save in a savepoint).
    with django_assert_max_num_queries(15):
        assert len(page_activity_ids(member_client.get(f"/contacts/{ana.pk}/"))) == 50
    with django_assert_max_num_queries(8):
        assert len(page_activity_ids(member_client.get(f"/devices/{device.pk}/"))) == 50
    with django_assert_max_num_queries(7):
        body = text_of(member_client.get("/contacts/"))
        assert body.count('class="contact-name"') == 50


def test_timeline_pages_from_prepared_statements_equal_the_plain_ones(workspace, device, settings):
    """Where connections persist, the first and the older page are server-side prepared
    statements; they return exactly what the plain statement does, for contact and device."""
    from django.db import connection

    from streams.selectors import timeline_for_contact, timeline_for_device

    base = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    ingest_events(workspace, device, [
        make_event(f"pp{i}", occurred_at=(base + dt.timedelta(minutes=i - i % 4)).isoformat(), participants=[ANA_PHONE])
        for i in range(70)
    ])
    ana = contact_for(workspace, "phone", "+14155550100")

    def pages(prepared):
        settings.MESH_FEED_PREPARED = prepared
        out = []
        for fn, kw in ((timeline_for_contact, {"contact": ana}), (timeline_for_device, {"device": device})):
            first = fn(**kw, limit=30)
            older = fn(**kw, limit=30, before=first.next_cursor)
            for page in (first, older):
                out.append([(a.pk, a.occurred_at, a.text, a.extra, a.device_id, [p.label for p in a.persons])
                            for a in page.activities])
                out.append(page.next_cursor)
        return out

    plain = pages(False)
    prepared = pages(True)
    assert prepared == plain and len(plain[0]) == 30 and plain[1] is not None
    with connection.cursor() as cur:
        cur.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'mesh_timeline_%%'")
        assert {r[0] for r in cur.fetchall()} == {"mesh_timeline_first_v1", "mesh_timeline_older_v1"}
