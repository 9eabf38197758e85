"""End to end in a real browser: headless Chromium from Debian's ``chromium`` package, driven by
Playwright for Python (no browser download: ``executable_path=/usr/bin/chromium``), against
pytest-django's live server loaded with the demo data (``mesh_demo``).

Log in, open a contact, filter to SMS, load older items, open an email (its sandboxed iframe),
see a live update arrive without a reload, and look at the public lifestream. Screenshots go
to ``test-artifacts/`` (gitignored); the README's come from ``mesh_screenshots``.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.fakes.browser import headless_chromium

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "e2e-demo-password"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo(settings, monkeypatch):
    """The demo data in the live server's database, and a login."""
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # while the browser is open (the live update) are plain synchronous calls all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.MESH_LIVE_POLL_MS = 500
    # Pages of 20, so that the demo's contacts (about 50 items each) have older pages.
    settings.MESH_PAGE_SIZE = 20
    call_command("mesh_demo", "--no-serve", "--workspace", "demo", "--username", "e2e", "--password", PASSWORD,
                 stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))
    from streams.models import Identity

    ana = Identity.objects.select_related("contact").get(workspace__slug="demo", kind="phone", value="+14155550100")
    return ana.contact.root()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_contact_page_in_a_real_browser(live_server, demo):
    from streams.models import Activity, Device
    from tests.factories import ingest_events, make_event

    ana = demo
    errors: list[str] = []
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.set_default_timeout(10_000)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)

        # Log in.
        page.goto(f"{live_server.url}/contacts/")
        assert "/accounts/login/" in page.url
        page.fill("#id_username", "e2e")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/contacts/")
        shot(page, "contacts")

        # Open the contact.
        page.click(f'a.contact-name[href="/contacts/{ana.pk}/"]')
        page.wait_for_url(f"**/contacts/{ana.pk}/")
        assert page.inner_text("h1").startswith(ana.name)
        assert page.locator("svg.heat rect").count() == 52
        all_count = page.locator("article.activity").count()
        assert all_count == 20
        shot(page, "contact")

        # Filter to SMS.
        page.select_option('select[name="channel"]', "sms")
        page.click('form.filters button[type="submit"]')
        page.wait_for_url("**channel=sms**")
        channels = page.locator("article.activity").evaluate_all("els => els.map(e => e.className)")
        assert channels and all("ch-sms" in c for c in channels)
        shot(page, "contact-sms")

        # Older items (on the unfiltered timeline, which has more than a page).
        page.goto(f"{live_server.url}/contacts/{ana.pk}/")
        first_page = set(page.locator("article.activity").evaluate_all("els => els.map(e => e.id)"))
        # mesh.js appends the older page below the first (the URL stays the contact's).
        page.click("a.older")
        page.locator("article.activity").nth(len(first_page)).wait_for()
        shown = page.locator("article.activity").evaluate_all("els => els.map(e => e.id)")
        older = set(shown[len(first_page):])
        assert set(shown[:len(first_page)]) == first_page
        assert older and not (older & first_page) and len(shown) == len(set(shown))
        assert "before=" not in page.url
        page.locator("article.activity").nth(len(first_page) - 1).scroll_into_view_if_needed()
        shot(page, "contact-older")

        # Open an email: the contact's mail is listed with subject and snippet; an HTML
        # message (the demo's are newsletters, found by full-text search) opens in a
        # sandboxed iframe when asked for, with its remote images blocked.
        page.goto(f"{live_server.url}/contacts/{ana.pk}/?channel=email")
        assert page.locator("article.ch-email h3.subject").count() > 0
        email = Activity.objects.filter(workspace__slug="demo", channel="email").exclude(html="").order_by("-occurred_at").first()
        assert email is not None, "the demo has an HTML email"
        page.goto(f"{live_server.url}/search/?q=weekly&channel=email")
        article = page.locator(f"#a{email.pk}")
        assert article.locator("mark").count() > 0
        article.locator("summary", has_text="Show message").click()
        frame_el = article.locator("iframe.mail")
        assert frame_el.get_attribute("sandbox") == "allow-popups allow-popups-to-escape-sandbox"
        frame = page.frame_locator(f"#a{email.pk} iframe.mail")
        frame.locator("body *").first.wait_for()  # about:blank has an empty body; the message does not
        assert len(frame.locator("body").inner_text().strip()) > 0
        if email.extra.get("remote_images_blocked"):
            assert "remote image" in article.locator(".images-note").inner_text()
        shot(page, "email-open")

        # A live update: a new item for the contact appears without a reload.
        page.goto(f"{live_server.url}/contacts/{ana.pk}/")
        page.wait_for_function("document.querySelector('[data-live-active]') !== null")
        device = Device.objects.filter(workspace__slug="demo").order_by("pk").first()
        ingest_events(ana.workspace, device, [make_event(
            "e2e-live", type="sms.received", occurred_at=dt.datetime.now(dt.UTC).isoformat(),
            data={"text": "Live from the e2e test"},
            participants=[{"kind": "phone", "value": "+14155550100", "role": "from", "name": "Ana Souza"}],
        )])
        page.locator("article.live-new", has_text="Live from the e2e test").wait_for()
        assert "1 new item just arrived" in page.inner_text("[data-live-status]")
        shot(page, "contact-live")
        page.close()  # stop polling before the live server goes away

        # The public lifestream, on a phone-sized screen.
        phone = browser.new_page(viewport={"width": 420, "height": 900}, device_scale_factor=1)
        phone.goto(f"{live_server.url}/@demo/")
        assert phone.locator("link[rel=alternate][type='application/rss+xml']").count() == 1
        assert phone.locator(".life-item").count() > 0
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, "the lifestream scrolls sideways on a phone"
        shot(phone, "lifestream")
    # No CSP violations or script errors on the way.
    assert not errors, errors
