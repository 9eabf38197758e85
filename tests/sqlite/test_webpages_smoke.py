"""Attachments and the feed tokens page on SQLite, the embedded default (issue 18 §4, §6): an
imported email's attachment downloads with its safety headers, and creating a feed token
redirects, shows it once and creates nothing on a reload."""

from __future__ import annotations

import io
import re
from email.message import EmailMessage

from django.core.management import call_command
from django.urls import reverse

from streams.models import Activity, Contact, FeedToken

ANA_PHONE = "+14155550100"
PDF = b"%PDF-1.4\n%%EOF\n"


def test_an_imported_email_attachment_downloads_on_sqlite(demo_client, workspace, tmp_path):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Ana <ana@example.com>", "me@mesh.example", "Quote"
    msg["Date"], msg["Message-ID"] = "Mon, 04 May 2026 10:00:00 +0000", "<sqlite-attachment@mesh.example>"
    msg.set_content("Attached.")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="quote.pdf")
    (tmp_path / "quote.eml").write_bytes(msg.as_bytes())
    call_command("mesh_import", "mbox", str(tmp_path), "--workspace", workspace.slug, "--json", stdout=io.StringIO())
    activity = Activity.objects.get(dedup_key="email:sqlite-attachment@mesh.example")
    response = demo_client.get(reverse("activity-attachment", args=[activity.pk, 0]))
    assert response.content == PDF
    assert response["Content-Disposition"] == "attachment; filename*=UTF-8''quote.pdf"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "sandbox; default-src 'none'"


def test_feed_token_create_redirects_and_a_reload_creates_nothing_on_sqlite(demo_client, workspace):
    ana = Contact.objects.get(workspace=workspace, merged_into=None, identities__value=ANA_PHONE)
    url = reverse("contact-feed-tokens", args=[ana.pk])
    before = FeedToken.objects.filter(revoked_at=None).count()
    response = demo_client.post(url, {"action": "create", "tier": "subject", "label": "smoke"})
    assert response.status_code == 303 and response["Location"] == url
    page = demo_client.get(url).content.decode()
    token = re.search(r">(mf_[A-Za-z0-9_-]{43})<", page).group(1)
    assert token not in demo_client.get(url).content.decode()
    assert FeedToken.objects.filter(revoked_at=None).count() == before + 1
    assert list(FeedToken.objects.filter(label="smoke").values_list("tier", flat=True)) == ["subject"]
