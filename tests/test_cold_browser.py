"""The going-cold page in a real browser (headless Chromium, the harness of
tests/test_e2e_browser.py): the overdue contacts in the documented order, and the page clean for
axe-core, without sideways scrolling, at a desktop and a phone width."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from streams.ranking import contact_cadence_set, strengths_current
from tests.factories import PASSWORD, contact_for, ingest_drafts, make_member
from tests.fakes.a11y import axe_violations, log_in, sideways_overflow, sticking_out, with_axe
from tests.fakes.browser import headless_chromium

pytestmark = pytest.mark.django_db(transaction=True)

# (name, days since the last text, own cadence in days): Bea is the latest relative to her
# cadence, then Carl, then Ana; Dan is not due.
PEOPLE = [("Ana Long-Overdue-Surname Example", 20, 14), ("Bea", 30, 7), ("Carl", 12, 7), ("Dan", 3, 30)]


def test_the_going_cold_page_in_order_and_accessible(live_server, workspace, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    make_member(workspace, "keeper", role="owner")
    now = timezone.now()
    ingest_drafts(workspace, [
        (f"t{n}", {"channel": "sms", "occurred_at": (now - dt.timedelta(days=days)).isoformat(), "direction": "in",
                   "text": "hi", "participants": [{"role": "from", "kind": "phone", "value": f"+1415555020{n}",
                                                   "display": name}]})
        for n, (name, days, _every) in enumerate(PEOPLE)])
    for n, (_name, _days, every) in enumerate(PEOPLE):
        contact_cadence_set(workspace=workspace, contact=contact_for(workspace, "phone", f"+1415555020{n}"),
                            every_days=every)
    strengths_current(workspace=workspace)
    errors: list[str] = []
    with headless_chromium() as browser:
        for width in (1280, 390):
            context = with_axe(browser.new_context(viewport={"width": width, "height": 900}))
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            log_in(page, live_server.url, "keeper", PASSWORD)
            page.goto(f"{live_server.url}/cold/")
            names = page.locator(".cold-list .contact-name").all_inner_texts()
            assert names == ["Bea", "Carl", PEOPLE[0][0]], width
            assert page.locator(".cold-list .cold-cold").count() == 1  # Bea: past 3 × 7 days too
            assert axe_violations(page) == [], width
            assert sideways_overflow(page) <= 0, (width, sticking_out(page))
            context.close()
    assert not errors, errors
