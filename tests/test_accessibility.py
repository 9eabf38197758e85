"""Every page, as a person on a laptop (1280 px) and on a phone (390 px) gets it, against the
demo data in headless Chromium: axe-core (vendored, tests/vendor/axe-core/) finds no violation
of impact serious or critical, and nothing scrolls sideways (``scrollWidth <= clientWidth``).

One test per width; each visits every page once and reports every problem it found, not only
the first. Dark mode (its own palette) is checked on the same page load, switched with
``emulate_media``: only axe's colour rules, since a colour scheme changes colours and nothing
else axe checks (the markup is the same), plus the sideways scroll."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.fakes.a11y import (
    axe_violations,
    load_demo,
    log_in,
    sideways_overflow,
    sticking_out,
    with_axe,
)
from tests.fakes.browser import module_chromium

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"  # gitignored, as the e2e test's
PASSWORD = "a11y-demo-password"
PHONE_HEIGHT = {390: 844}
# What a colour scheme can break: contrast, and links told apart from running text by colour.
COLOUR_RULES = ("color-contrast", "link-in-text-block")

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def browser():
    with module_chromium() as browser:
        yield browser


@pytest.fixture
def ana(browser, settings):
    settings.MESH_PAGE_SIZE = 20  # so that the demo's timelines have an "Older" page
    return load_demo(workspace="demo", username="a11y", password=PASSWORD)


def member_pages(ana) -> dict[str, str]:
    """Every page a member sees, by name, with the demo's data in it."""
    from streams.models import Contact, Device, Source

    others = Contact.objects.filter(workspace=ana.workspace, merged_into=None, is_self=False).exclude(pk=ana.pk)
    other = others.exclude(name="").order_by("-last_activity_at").first()
    device = Device.objects.filter(workspace=ana.workspace).order_by("pk").first()
    source = Source.objects.filter(workspace=ana.workspace).order_by("pk").first()
    contact = f"/contacts/{ana.pk}/"
    return {
        "contact list": "/contacts/",
        "contact list, searched": f"/contacts/?q={other.name.split()[0]}",
        "contact page": contact,
        "text conversation": f"{contact}?channel=sms",
        "email threads": f"{contact}?channel=email",
        "device events of a contact": f"{contact}?channel=device",
        "device list": "/devices/",
        "device page": f"/devices/{device.pk}/",
        "sources": "/sources/",
        "add a source": "/sources/add/?connector=imap",
        "edit a source": f"/sources/{source.pk}/edit/",
        "remove a source": f"/sources/{source.pk}/remove/",
        "search": "/search/?q=weekly",
        "lifestream": f"/@{ana.workspace.slug}/",
        "feed tokens": f"{contact}feed-tokens/",
        "merge: find": f"{contact}merge/?q={other.name.split()[0]}",
        "merge: preview": f"{contact}merge/?other={other.pk}",
        "split off": f"{contact}unmerge/",
        "merge suggestions": "/contacts/suggestions/",
        "going cold": "/cold/",
        "time zone settings": "/settings/time-zone/",
    }


def check(page, url: str, name: str) -> list[str]:
    response = page.goto(url)
    problems = [] if response is not None and response.status == 200 else [f"answered {response and response.status}"]
    return [f"{name} ({url}): {p}" for p in problems + audit(page)]


def audit(page) -> list[str]:
    """The page as it is now, light (every axe rule) then dark (the colour rules)."""
    problems = []
    for scheme, rules in (("light", None), ("dark", COLOUR_RULES)):
        page.emulate_media(color_scheme=scheme)
        overflow = sideways_overflow(page)
        if overflow > 0:
            problems.append(f"{scheme}: scrolls sideways by {overflow} px: {sticking_out(page)}")
        problems += [f"{scheme}: {p}" for p in axe_violations(page, rules=rules)]
    return problems


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_passes_axe_and_does_not_scroll_sideways(browser, live_server, ana, width):
    base = live_server.url
    problems: list[str] = []
    context = with_axe(browser.new_context(viewport={"width": width, "height": PHONE_HEIGHT.get(width, 900)}))
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems += check(page, f"{base}/accounts/login/", "log-in page")
    problems += check(page, f"{base}/@{ana.workspace.slug}/", "lifestream, signed out")
    log_in(page, base, "a11y", PASSWORD)
    pages = member_pages(ana)
    for name, path in pages.items():
        problems += check(page, base + path, name)
    # A token just created: shown once, with its feed URLs and copy buttons, above the list.
    page.goto(f"{base}/contacts/{ana.pk}/feed-tokens/")
    page.click("button[name=action][value=create]")
    page.locator("#new-token-value").wait_for()
    problems += [f"feed tokens, one just created: {p}" for p in audit(page)]
    # Opened up: the rename form, an email's message and the reply box are part of the page too.
    page.goto(f"{base}/contacts/{ana.pk}/")
    for summary in page.locator("details > summary").all()[:6]:
        summary.click()
    problems += [f"contact page, opened up: {p}" for p in audit(page)]
    context.close()
    assert not problems, f"{len(problems)} problem(s) at {width} px:\n" + "\n".join(problems)


def in_box(inner: dict, outer: dict) -> bool:
    return inner["x"] >= outer["x"] and inner["x"] + inner["width"] <= outer["x"] + outer["width"]


def test_the_heat_strip_starts_at_the_newest_weeks_on_a_phone(browser, live_server, workspace, member,
                                                               device_and_token):
    from tests.factories import PASSWORD as MEMBER_PASSWORD
    from tests.factories import ingest_events, make_event

    device, _ = device_and_token
    now = dt.datetime.now(dt.UTC)
    ingest_events(workspace, device, [
        make_event(f"w{weeks}", type="battery", occurred_at=(now - dt.timedelta(weeks=weeks)).isoformat(),
                   data={"battery": 50})
        for weeks in (0, 1, 30, 50)
    ])
    for width, oldest_shown in ((390, False), (1280, True)):
        page = browser.new_page(viewport={"width": width, "height": 844})
        log_in(page, live_server.url, member.username, MEMBER_PASSWORD)
        page.goto(f"{live_server.url}/devices/{device.pk}/")
        box = page.locator(".heat-scroll").bounding_box()
        cells = page.locator("svg.heat rect")
        assert cells.count() == 52
        assert in_box(cells.last.bounding_box(), box), f"the current week is out of sight at {width} px"
        assert in_box(cells.first.bounding_box(), box) is oldest_shown
        assert sideways_overflow(page) <= 0
        page.close()


def test_long_names_and_addresses_do_not_widen_the_pages_on_a_phone(browser, live_server, workspace, member,
                                                                    device_and_token):
    from tests.factories import PASSWORD as MEMBER_PASSWORD
    from tests.factories import contact_for, ingest_events, make_event

    device, _ = device_and_token
    address = "a.very.long.mailbox.name.that.never.breaks@" + "sub." * 8 + "example.com"
    ingest_events(workspace, device, [make_event(
        "long-1", type="sms.received", occurred_at=dt.datetime.now(dt.UTC).isoformat(),
        data={"text": "https://example.com/" + "x" * 120, "subject": "Re: " + "Unbroken" * 20},
        participants=[{"kind": "email", "value": address, "role": "from", "name": "Maximiliana" * 6},
                      {"kind": "phone", "value": "+14155550142", "role": "from", "name": "Maximiliana" * 6}],
    )])
    contact = contact_for(workspace, "email", address)
    type(device).objects.filter(pk=device.pk).update(name="PixelPhone" * 8)
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 390, "height": 844})
    log_in(page, live_server.url, member.username, MEMBER_PASSWORD)
    for path in ("/contacts/", f"/contacts/{contact.pk}/", f"/contacts/{contact.pk}/merge/?q=Maximiliana",
                 f"/contacts/{contact.pk}/feed-tokens/", "/devices/", f"/devices/{device.pk}/",
                 "/search/?q=Unbroken", "/cold/", "/contacts/suggestions/"):
        page.goto(live_server.url + path)
        page.screenshot(path=str(ARTIFACTS / f"long-names-{path.strip('/').split('?')[0].replace('/', '-')}.png"))
        assert sideways_overflow(page) <= 0, f"{path} scrolls sideways on a phone: {sticking_out(page)}"
    page.close()
