"""Time zones (issue 18 §1): every page shows times in the reader's zone and names it; a person's
zone is theirs (chosen, or sent once by their browser), else the workspace's, else TIME_ZONE;
the public lifestream shows the workspace's. Times stay stored in UTC.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from streams.models import UserPreference, Workspace
from tests.factories import (
    ANA_EMAIL,
    ME_EMAIL,
    PASSWORD,
    ana,
    ingest_drafts,
    ingest_mail,
    mail,
    make_member,
)
from tests.fakes.readers import text_of

pytestmark = pytest.mark.django_db

ZONE_URL = "/settings/time-zone/"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def choose_zone(client: Client, zone: str) -> None:
    response = client.post(ZONE_URL, {"scope": "user", "time_zone": zone})
    assert response.status_code == 302


def footer(body: str) -> str:
    return re.search(r'<footer class="site-footer">(.*?)</footer>', body, re.S).group(1)


def test_two_people_see_the_same_mail_at_their_own_local_times(workspace):
    # 20:30 UTC on Friday 1 May is 13:30 that Friday in Los Angeles and 05:30 on Saturday in Tokyo.
    ingest_mail(workspace, [("m1", {"occurred_at": "2026-05-01T20:30:00+00:00", "subject": "Contract",
                                    "text": "Signed."})])
    la, tokyo = make_member(workspace, "lena"), make_member(workspace, "taro")
    contact = ana(workspace)
    la_client, tokyo_client = signed_in(la), signed_in(tokyo)
    choose_zone(la_client, "America/Los_Angeles")
    choose_zone(tokyo_client, "Asia/Tokyo")

    la_body = text_of(la_client.get(f"/contacts/{contact.pk}/"))
    tokyo_body = text_of(tokyo_client.get(f"/contacts/{contact.pk}/"))

    assert "1 May 2026 13:30" in la_body and "Friday 1 May 2026" in la_body
    # The footer names the zone with its abbreviation today (PST in winter, PDT in summer).
    assert re.search(r"Times in <a [^>]+>America/Los_Angeles</a> \(P[SD]T\)", footer(la_body))
    # Rendered activities are cached: the second reader must not get the first one's times.
    assert "2 May 2026 05:30" in tokyo_body and "Saturday 2 May 2026" in tokyo_body
    assert "13:30" not in tokyo_body
    assert "Asia/Tokyo</a> (JST)" in footer(tokyo_body)
    # The machine-readable time is the same instant for both.
    assert 'datetime="2026-05-01T13:30:00-07:00"' in la_body
    assert 'datetime="2026-05-02T05:30:00+09:00"' in tokyo_body


def test_without_a_zone_of_their_own_a_member_sees_the_workspaces_and_the_page_asks_the_browser(workspace, member):
    Workspace.objects.filter(pk=workspace.pk).update(time_zone="Europe/Paris")
    body = text_of(signed_in(member).get("/contacts/"))
    assert "Europe/Paris</a> (CE" in footer(body)  # CET or CEST, by the date of the run
    assert "data-browser-zone" in body and 'name="scope" value="browser"' in body


def test_the_browsers_zone_is_kept_once_and_never_replaces_a_choice(member):
    client = signed_in(member)
    assert client.post(ZONE_URL, {"scope": "browser", "time_zone": "Asia/Tokyo"}).status_code == 204
    assert UserPreference.objects.get(user=member).time_zone == "Asia/Tokyo"
    body = text_of(client.get("/contacts/"))
    assert "Asia/Tokyo</a> (JST)" in footer(body) and "data-browser-zone" not in body

    # Another browser (a laptop abroad) does not move it; choosing on the settings page does.
    assert client.post(ZONE_URL, {"scope": "browser", "time_zone": "America/New_York"}).status_code == 204
    assert UserPreference.objects.get(user=member).time_zone == "Asia/Tokyo"
    choose_zone(client, "America/New_York")
    assert UserPreference.objects.get(user=member).time_zone == "America/New_York"
    assert "America/New_York</a>" in footer(text_of(client.get("/contacts/")))


def test_a_zone_that_is_not_one_is_refused_with_a_plain_message(member):
    client = signed_in(member)
    response = client.post(ZONE_URL, {"scope": "browser", "time_zone": "Mars/Olympus_Mons"})
    assert response.status_code == 400 and b"not a time zone name" in response.content
    response = client.post(ZONE_URL, {"scope": "user", "time_zone": "../../etc/passwd"}, follow=True)
    assert "Not changed" in text_of(response) and "not a time zone name" in text_of(response)
    assert not UserPreference.objects.filter(user=member).exclude(time_zone="").exists()


def test_only_a_workspaces_owner_sets_its_zone(workspace, member, teammate):
    response = signed_in(teammate).post(ZONE_URL, {"scope": "workspace", "time_zone": "Asia/Tokyo"})
    assert response.status_code == 403
    workspace.refresh_from_db()
    assert workspace.time_zone == ""
    owner = signed_in(member)
    assert "Workspace time zone" in text_of(owner.get(ZONE_URL))
    assert "Only the workspace" in text_of(signed_in(teammate).get(ZONE_URL))
    assert owner.post(ZONE_URL, {"scope": "workspace", "time_zone": "Asia/Tokyo"}).status_code == 302
    workspace.refresh_from_db()
    assert workspace.time_zone == "Asia/Tokyo"
    # Back to the server's TIME_ZONE.
    owner.post(ZONE_URL, {"scope": "workspace", "time_zone": ""})
    workspace.refresh_from_db()
    assert workspace.time_zone == ""


def test_the_public_lifestream_shows_the_workspaces_zone_to_everyone(workspace, member, client):
    ingest_drafts(workspace, [
        ("p1", {"channel": "twitter", "verb": "post", "direction": "out", "visibility": "public",
                "occurred_at": "2026-05-01T20:30:00+00:00", "text": "Shipping today"}),
    ])
    Workspace.objects.filter(pk=workspace.pk).update(time_zone="Asia/Tokyo")
    choose_zone(signed_in(member), "America/Los_Angeles")
    for reader in (client, signed_in(member)):
        body = text_of(reader.get(f"/@{workspace.slug}/"))
        assert "Saturday 2 May 2026" in body and ">05:30<" in body
        assert "Times in" in footer(body) and "Asia/Tokyo" in footer(body)


def test_a_thread_shows_each_messages_date_so_a_reply_never_seems_to_come_first(workspace, member):
    # A question late on 30 April and its answer just after midnight: times alone would read
    # 23:50 then 00:10.
    ingest_drafts(workspace, [
        ("q", {"occurred_at": "2026-04-30T23:50:00+00:00", "subject": "Question", "text": "When?", "thread_key": "t1",
               "participants": [ANA_EMAIL, ME_EMAIL]}),
        ("r", {"occurred_at": "2026-05-01T00:10:00+00:00", "subject": "Re: Question", "text": "Tomorrow.",
               "thread_key": "t1", "direction": "out",
               "participants": [{**ME_EMAIL, "role": "from"}, {**ANA_EMAIL, "role": "to"}]}),
    ], channel="email", verb="receive", direction="in")
    client = signed_in(member)
    choose_zone(client, "UTC")
    body = text_of(client.get(f"/contacts/{ana(workspace).pk}/"))
    assert body.index("30 Apr 2026 23:50") < body.index("1 May 2026 00:10")


def test_the_settings_page_lists_zones_and_says_what_applies(member):
    body = text_of(signed_in(member).get(ZONE_URL))
    assert '<option value="America/Los_Angeles">' in body and '<option value="Asia/Tokyo">' in body
    assert "not chosen: the workspace" in body


@pytest.mark.django_db(transaction=True)
def test_a_browser_in_tokyo_sends_its_zone_once_and_then_reads_tokyo_times(live_server, workspace, monkeypatch):
    """Playwright: Chromium told it is in Asia/Tokyo; the first page sends the zone, the next
    shows times in JST and names the zone."""
    from tests.fakes.browser import headless_chromium

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    user = make_member(workspace, "kenji")
    ingest_mail(workspace, [mail(1, subject="Contract", day=1)])
    contact = ana(workspace)
    with headless_chromium() as browser:
        context = browser.new_context(timezone_id="Asia/Tokyo", viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", "kenji")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/contacts/")
        # The footer says the browser's zone applies from the next page once it is stored.
        page.locator("footer.site-footer").get_by_text("from the next page: Asia/Tokyo").wait_for()
        assert UserPreference.objects.get(user=user).time_zone == "Asia/Tokyo"
        page.goto(f"{live_server.url}/contacts/{contact.pk}/")
        assert "Times in Asia/Tokyo (JST)" in page.inner_text("footer.site-footer")
        # 10:01 UTC is 19:01 in Tokyo.
        assert page.locator("article.activity time").first.inner_text() == "1 May 2026 19:01"
        context.close()
