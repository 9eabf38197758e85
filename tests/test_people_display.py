"""People as pages show them (issue 18 §3): identities as people read them (``@handle``, a
formatted phone number, the address) through one presenter on every page, initials avatars in
stable colours that pass WCAG AA, and inline SVG icons with text alternatives instead of emoji.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.people import AVATAR_COLOURS, avatar_colour, identity_text, initials
from tests.factories import ANA_PHONE, contact_for, ingest_drafts, ingest_events, make_event
from tests.fakes.readers import text_of

ROOT = Path(__file__).resolve().parent.parent
EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u26ff]")


@pytest.mark.parametrize(("kind", "value", "display", "region", "shown"), [
    ("x", "9000000105", "@ana_souza", "US", "@ana_souza"),
    ("x", "9000000105", "", "US", "X account 9000000105"),
    ("phone", "+14155550100", "", "US", "(415) 555-0100"),
    ("phone", "+14155550100", "", "FR", "+1 415-555-0100"),
    ("phone", "+33142685300", "", "FR", "01 42 68 53 00"),
    ("phone", "+33142685300", "", "US", "+33 1 42 68 53 00"),
    ("phone", "ACME", "", "US", "ACME"),  # an alphanumeric sender stays as it is
    ("phone", "55555", "", "US", "55555"),  # a short code too
    ("email", "ana@example.com", "Ana", "US", "ana@example.com"),
])
def test_identities_read_as_people_write_them(kind, value, display, region, shown):
    assert identity_text(kind, value, display, region) == shown


@pytest.mark.parametrize(("name", "letters"), [
    ("Chloé Martin", "CM"), ("Ana", "A"), ("@cleo", "C"), ("Goro de la Tanaka", "GT"), ("+1 415 555 0100", "#"),
    ("", "#"), ("ana.souza@example.com", "AC"),
])
def test_initials(name, letters):
    assert initials(name) == letters


def _luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def test_avatar_colours_pass_wcag_aa_with_white_text_and_match_the_stylesheet():
    css = (ROOT / "streams/static/streams/mesh.css").read_text()
    for n, colour in enumerate(AVATAR_COLOURS):
        contrast = (1.0 + 0.05) / (_luminance(colour) + 0.05)
        assert contrast >= 4.5, (colour, contrast)
        assert f".av-{n} {{ background: {colour}; }}" in css


def test_a_contacts_colour_is_stable_and_spread():
    assert avatar_colour(42) == avatar_colour(42)
    assert {avatar_colour(i) for i in range(1, 200)} == set(range(len(AVATAR_COLOURS)))


@pytest.mark.django_db
def test_contact_pages_show_identities_as_people_read_them(member_client, workspace, device):
    ingest_events(workspace, device, [make_event("e1", participants=[ANA_PHONE])])
    ingest_drafts(workspace, [
        ("x1", {"channel": "twitter", "verb": "mention", "direction": "in", "occurred_at": "2026-05-02T08:00:00+00:00",
                "text": "hello", "participants": [{"role": "author", "kind": "x", "value": "9000000105",
                                                   "display": "@ana_souza"}]}),
        ("m1", {"channel": "email", "verb": "receive", "direction": "in", "occurred_at": "2026-05-03T08:00:00+00:00",
                "subject": "Hi", "text": "Hi", "participants": [
                    {"role": "from", "kind": "phone", "value": ANA_PHONE["value"]},
                    {"role": "cc", "kind": "phone", "value": "+33142685300", "display": "Paris office"}]}),
    ])
    ana = contact_for(workspace, "phone", ANA_PHONE["value"])
    x_contact = contact_for(workspace, "x", "9000000105")

    body = text_of(member_client.get(f"/contacts/{ana.pk}/"))
    assert '<bdi>(415) 555-0100</bdi>' in body and 'title="phone:+14155550100"' in body
    assert '<svg class="icon icon-call" viewBox="0 0 24 24" role="img" aria-label="Phone"><title>Phone</title>' in body
    # A participant from abroad, in the international format, beside the name.
    assert "<bdi>Paris office</bdi>" in body and "<bdi>+33 1 42 68 53 00</bdi>" in body
    assert "<code>phone:" not in body and "<code>email:" not in body
    assert re.search(r'<span class="avatar av-\d" aria-hidden="true">A</span>', body)

    body = text_of(member_client.get(f"/contacts/{x_contact.pk}/"))
    assert "<bdi>@ana_souza</bdi>" in body and ">x:9000000105<" not in body

    listing = text_of(member_client.get("/contacts/"))
    assert "<bdi>(415) 555-0100</bdi>" in listing and "<bdi>@ana_souza</bdi>" in listing
    assert f'<span class="avatar av-{avatar_colour(ana.pk)}" aria-hidden="true">' in listing

    merge = text_of(member_client.get(f"/contacts/{ana.pk}/merge/?q=ana"))
    assert "<bdi>@ana_souza</bdi>" in merge
    preview = text_of(member_client.get(f"/contacts/{ana.pk}/merge/?other={x_contact.pk}"))
    assert "<bdi>@ana_souza</bdi>" in preview and "x:9000000105</code>" not in preview


@pytest.mark.django_db
def test_pages_use_svg_icons_with_text_not_emoji(member_client, workspace, device):
    ingest_events(workspace, device, [
        make_event("l1", type="location", data={"lat": 37.77, "lon": -122.41, "place": "Home"}),
    ])
    ingest_drafts(workspace, [
        ("m1", {"channel": "email", "verb": "receive", "direction": "in", "occurred_at": "2026-05-03T08:00:00+00:00",
                "subject": "Files", "text": "Attached.",
                "attachments": [{"name": "q2.pdf", "mediaType": "application/pdf", "size": 20480}],
                "participants": [{"role": "from", "kind": "phone", "value": ANA_PHONE["value"]}]}),
        ("s1", {"channel": "sms", "verb": "send", "direction": "out", "occurred_at": "2026-05-03T09:00:00+00:00",
                "text": "ok", "extra": {"delivery": {"state": "failed", "error_code": 30003}},
                "participants": [{"role": "to", "kind": "phone", "value": ANA_PHONE["value"]}]}),
    ])
    ana = contact_for(workspace, "phone", ANA_PHONE["value"])
    pages = [text_of(member_client.get(url)) for url in (f"/contacts/{ana.pk}/", f"/devices/{device.pk}/",
                                                         "/contacts/", "/search/?q=Files")]
    for body in pages:
        assert not EMOJI.search(body), EMOJI.search(body)
    contact_page, device_page = pages[0], pages[1]
    assert '<svg class="icon icon-attachment"' in contact_page and "q2.pdf" in contact_page
    assert '<svg class="icon icon-warning"' in contact_page
    assert 'aria-label="Outgoing"' in contact_page and 'aria-label="Incoming"' in contact_page
    assert '<svg class="icon icon-location" viewBox="0 0 24 24" role="img" aria-label="Location">' in device_page


PICTURE = "https://pbs.twimg.com/profile_images/1722410563816394752/qL0xR2dd_normal.jpg"


def x_mention(eid: str, user_id: str, handle: str, avatar: str) -> tuple[str, dict]:
    return (eid, {"channel": "twitter", "verb": "mention", "direction": "in", "occurred_at": "2026-05-02T08:00:00+00:00",
                  "text": "hello", "participants": [{"role": "author", "kind": "x", "value": user_id,
                                                     "display": handle, "avatar": avatar}]})


@pytest.mark.django_db
def test_an_x_profile_picture_is_the_avatar_and_initials_stay_the_fallback(member_client, workspace, settings):
    ingest_drafts(workspace, [
        x_mention("x1", "9000000105", "@ana_souza", PICTURE),
        x_mention("x2", "9000000106", "@ben_okafor", ""),
        # Kept by an old import, or a source that did not check it: never put in a page.
        x_mention("x3", "9000000107", "@cleo", "javascript:alert(1)"),
        x_mention("x4", "9000000108", "@dan", "http://pbs.twimg.com/profile_images/1/a_normal.jpg"),
    ])
    ana, ben = contact_for(workspace, "x", "9000000105"), contact_for(workspace, "x", "9000000106")
    assert ana.identities.get().avatar_url == PICTURE

    page = member_client.get(f"/contacts/{ana.pk}/")
    img = re.search(r'<img class="avatar av-\d" [^>]*>', text_of(page)).group(0)
    for attribute in (f'src="{PICTURE}"', 'alt="Profile picture of @ana_souza"', 'width="48"', 'height="48"',
                      'loading="lazy"', 'referrerpolicy="no-referrer"', 'data-initials="A"'):
        assert attribute in img
    # The CSP lets the page load it, and only from X's image host.
    assert "img-src 'self' data: https://pbs.twimg.com;" in page["Content-Security-Policy"]

    body = text_of(member_client.get(f"/contacts/{ben.pk}/"))
    assert "<img class=\"avatar" not in body and re.search(r'<span class="avatar av-\d" aria-hidden="true">B</span>', body)
    listing = text_of(member_client.get("/contacts/"))
    assert listing.count('<img class="avatar') == 1 and f'src="{PICTURE}"' in listing
    assert "javascript:" not in listing and "http://pbs" not in listing


@pytest.mark.django_db
def test_a_cached_contact_row_is_never_stale(member_client, workspace):
    """The list's rows come from the fragment cache (streams.contact_list.render_contact_rows):
    whatever a row shows changes its key."""
    from streams.contacts import contact_rename

    ingest_drafts(workspace, [x_mention("x1", "9000000105", "@ana_souza", "")])
    ana = contact_for(workspace, "x", "9000000105")
    first = text_of(member_client.get("/contacts/"))
    def rows(html: str) -> str:
        return html[html.index('<ul class="contact-list">'):html.index('<nav class="pager"')]

    assert rows(first) == rows(text_of(member_client.get("/contacts/")))  # served again from the cache
    assert "<img class=\"avatar" not in first and "twitter <b>1</b>" in first

    contact_rename(workspace=workspace, contact=ana, name="Ana Souza")
    ingest_drafts(workspace, [x_mention("x2", "9000000105", "@ana_souza", PICTURE),
                              ("m1", {"channel": "email", "verb": "receive", "direction": "in",
                                      "occurred_at": "2026-05-03T08:00:00+00:00", "subject": "Hi", "text": "Hi",
                                      "participants": [{"role": "from", "kind": "x", "value": "9000000105"},
                                                       {"role": "cc", "kind": "email", "value": "ana@example.com"}]})])
    second = text_of(member_client.get("/contacts/"))
    assert ">Ana Souza</a>" in second and f'src="{PICTURE}"' in second
    assert "twitter <b>2</b>" in second and "email <b>1</b>" in second
    zone = re.search(r'<time class="muted" datetime="[^"]+" title="([^"]+)"', second).group(1)
    member_client.post("/settings/time-zone/", {"time_zone": "Asia/Tokyo"})
    tokyo = text_of(member_client.get("/contacts/"))
    assert re.search(r'<time class="muted" datetime="[^"]+" title="([^"]+)"', tokyo).group(1) != zone
