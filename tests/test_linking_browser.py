"""The merge suggestion flow in a real browser (headless Chromium, the harness of
tests/test_e2e_browser.py): from the contact list to the suggestions, "Review merge…" to the
preview, choose the survivor, merge, and undo that merge from the survivor's page."""

from __future__ import annotations

import pytest

from streams.linking import merge_suggestions_refresh
from streams.models import Contact, MergeSuggestion
from tests.factories import PASSWORD, contact_for, ingest_drafts, make_member
from tests.fakes.browser import headless_chromium

pytestmark = pytest.mark.django_db(transaction=True)


def backup_text(eid, number, name):
    return (eid, {"channel": "sms", "occurred_at": "2026-05-01T10:00:00+00:00", "direction": "in", "text": "hi",
                  "extra": {"origin": "sms_backup"},
                  "participants": [{"role": "from", "kind": "phone", "value": number, "display": name}]})


def test_accept_a_suggestion_merge_and_undo_in_the_browser(live_server, workspace, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    make_member(workspace, "linker", role="owner")
    ingest_drafts(workspace, [backup_text("s1", "+14155550100", "Ana Souza"),
                              backup_text("s2", "+14155550111", "Ana Souza")])
    mobile, home = contact_for(workspace, "phone", "+14155550100"), contact_for(workspace, "phone", "+14155550111")
    merge_suggestions_refresh(workspace=workspace)
    suggestion = MergeSuggestion.objects.get(workspace=workspace)
    errors: list[str] = []
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 1200})
        page.set_default_timeout(10_000)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(f"{live_server.url}/accounts/login/?next=/contacts/")
        page.fill("#id_username", "linker")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/contacts/")

        page.click("a.suggestions-link")
        page.wait_for_url("**/contacts/suggestions/")
        card = page.locator(f"#suggestion-{suggestion.pk}")
        assert "Your address book names both “Ana Souza”" in card.inner_text()

        card.locator("a", has_text="Review merge").click()
        page.wait_for_url("**/merge/**")
        # Keep the second number's contact: choose it, see the preview for it, merge.
        page.check(f'input[name="into"][value="{home.pk}"]')
        page.click("form.merge-survivor button[type=submit]")
        page.wait_for_url(f"**into={home.pk}**")
        assert "Which contact stays" in page.inner_text("body")
        page.click("form[method=post] button.primary")
        page.wait_for_url(f"**/contacts/{home.pk}/")
        assert Contact.objects.get(pk=mobile.pk).merged_into_id == home.pk
        assert MergeSuggestion.objects.get(pk=suggestion.pk).state == "accepted"

        # Undo exactly this merge from the survivor's page.
        page.click(f'a.undo-merge[href="/contacts/{mobile.pk}/unmerge/"]')
        page.wait_for_url(f"**/contacts/{mobile.pk}/unmerge/")
        page.click("form[method=post] button.primary")
        page.wait_for_url(f"**/contacts/{mobile.pk}/")
        assert Contact.objects.get(pk=mobile.pk).merged_into_id is None
        assert contact_for(workspace, "phone", "+14155550100").pk == mobile.pk
        page.close()
    assert not errors, errors
