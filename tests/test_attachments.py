"""Attachments (issue 18 §4): email and MMS attachments, for the members of the workspace only,
read back from the stored raw item (the email parsed again; the MMS medium fetched from Twilio,
faked at the HTTP boundary), served as downloads with exact safety headers, and shown inline
only when their bytes are an image."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from django.core.management import call_command
from django.urls import reverse
from requests.adapters import BaseAdapter

from connectors import email_common
from connectors.base import registry
from connectors.email_common import payload_draft
from connectors.email_common.normalize import message_attachment
from streams.feed_tokens import activity_erase
from streams.models import Activity
from tests.fakes.twilio import ACCOUNT, TOKEN, TWILIO_CONFIG, fixture, post_signed

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "email"
CSP = "sandbox; default-src 'none'"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
TRAP = b"<html><body><script>window.pwned = 1</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def png_bytes() -> bytes:
    """A real 1x1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


PNG = png_bytes()
# name, maintype, subtype, content, in the order they are attached
PARTS = [
    ("Rechnung März.pdf", "application", "pdf", PDF),
    ("photo.png", "image", "png", PNG),
    ("trap.png", "image", "png", TRAP),
    ("logo.svg", "image", "svg+xml", SVG),
]


def mail_with_attachments() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ana <ana@example.com>"
    msg["To"] = "Me <me@mesh.example>"
    msg["Subject"] = "Invoice and photos"
    msg["Date"] = "Mon, 04 May 2026 10:00:00 +0000"
    msg["Message-ID"] = "<attachments-1@mesh.example>"
    msg.set_content("See the attached files.")
    for name, maintype, subtype, content in PARTS:
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


@pytest.fixture
def mail_activity(workspace, tmp_path) -> Activity:
    folder = tmp_path / "eml"
    folder.mkdir()
    (folder / "invoice.eml").write_bytes(mail_with_attachments())
    out = io.StringIO()
    call_command("mesh_import", "mbox", str(folder), "--workspace", workspace.slug, "--json", stdout=out)
    assert json.loads(out.getvalue())["new"] == 1
    return Activity.objects.get(dedup_key="email:attachments-1@mesh.example")


def url(activity: Activity, index: int, **query) -> str:
    path = reverse("activity-attachment", args=[activity.pk, index])
    return path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def index_of(activity: Activity, name: str) -> int:
    return next(i for i, a in enumerate(activity.attachments) if a["name"] == name)


# --- email --------------------------------------------------------------------------------------


def test_a_member_downloads_an_email_attachment_with_exact_headers(member_client, mail_activity):
    response = member_client.get(url(mail_activity, index_of(mail_activity, "Rechnung März.pdf")))
    assert response.status_code == 200
    assert response.content == PDF
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == "attachment; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == CSP
    assert response["Content-Length"] == str(len(PDF))


def test_only_members_of_the_workspace_get_an_attachment(client, mail_activity, teammate, outsider):
    target = url(mail_activity, 0)
    assert client.get(target).status_code == 302  # to the log-in page
    client.force_login(outsider)
    response = client.get(target)
    assert response.status_code == 404 and PDF not in response.content
    client.force_login(teammate)
    assert client.get(target).content == PDF


def test_a_real_png_is_shown_inline_only_when_asked(member_client, mail_activity):
    index = index_of(mail_activity, "photo.png")
    inline = member_client.get(url(mail_activity, index, inline=1))
    assert inline.content == PNG
    assert inline["Content-Type"] == "image/png"
    assert inline["Content-Disposition"] == "inline; filename*=UTF-8''photo.png"
    assert inline["X-Content-Type-Options"] == "nosniff" and inline["Content-Security-Policy"] == CSP
    assert member_client.get(url(mail_activity, index))["Content-Disposition"] == "attachment; filename*=UTF-8''photo.png"


@pytest.mark.parametrize("name", ["trap.png", "logo.svg"])
def test_html_named_png_and_svg_are_never_inline(member_client, mail_activity, name):
    response = member_client.get(url(mail_activity, index_of(mail_activity, name), inline=1))
    assert response.status_code == 200
    assert response["Content-Disposition"] == f"attachment; filename*=UTF-8''{name}"
    assert response["Content-Type"] in ("image/png", "image/svg+xml")  # as declared, for the download
    assert response["X-Content-Type-Options"] == "nosniff" and response["Content-Security-Policy"] == CSP


def test_an_attachment_the_item_does_not_have_is_404(member_client, mail_activity):
    assert member_client.get(url(mail_activity, len(PARTS))).status_code == 404
    assert member_client.get(f"/activities/{mail_activity.pk}/attachments/-1").status_code == 404


def test_garbled_or_huge_stored_mail_is_a_clear_422_not_a_500(member_client, mail_activity, monkeypatch):
    Activity.objects.filter(pk=mail_activity.pk).update(raw={"rfc822_zb64": "!!! not base64 at all"})
    response = member_client.get(url(mail_activity, 0))
    assert response.status_code == 422
    assert response.content.decode().startswith("the stored original cannot be read back: stored message bytes are corrupt")

    Activity.objects.filter(pk=mail_activity.pk).update(raw=["not", "an", "email", "payload"])
    assert member_client.get(url(mail_activity, 0)).status_code == 422

    # A payload that inflates past the bound is refused while decompressing, not read whole.
    bomb = base64.b64encode(zlib.compress(b"\0" * 4096)).decode()
    monkeypatch.setattr(email_common, "MAX_STORED_MESSAGE_BYTES", 1024)
    Activity.objects.filter(pk=mail_activity.pk).update(raw={"rfc822_zb64": bomb})
    response = member_client.get(url(mail_activity, 0))
    assert response.status_code == 422 and "larger than 1,024 bytes" in response.content.decode()

    cut = base64.b64encode(zlib.compress(mail_with_attachments())[:200]).decode()
    monkeypatch.setattr(email_common, "MAX_STORED_MESSAGE_BYTES", 64 * 1024 * 1024)
    Activity.objects.filter(pk=mail_activity.pk).update(raw={"rfc822_zb64": cut})
    response = member_client.get(url(mail_activity, 0))
    assert response.status_code == 422 and "cut short" in response.content.decode()


def test_an_erased_item_has_no_attachments_left(member_client, mail_activity):
    activity_erase(activity=mail_activity)
    assert member_client.get(url(mail_activity, 0)).status_code == 404


def test_the_contact_page_links_each_attachment(member_client, mail_activity, workspace):
    from tests.factories import ana

    page = member_client.get(reverse("contact-detail", args=[ana(workspace).pk])).content.decode()
    for index, (name, *_rest) in enumerate(PARTS):
        assert f'href="{url(mail_activity, index)}"' in page, name
    # "View" only for declared raster images; the server still checks their bytes.
    assert f'href="{url(mail_activity, index_of(mail_activity, "photo.png"))}?inline=1"' in page
    assert f'href="{url(mail_activity, index_of(mail_activity, "logo.svg"))}?inline=1"' not in page


@pytest.mark.parametrize("name", ["alternative__inline_images", "calendar_invite", "bounce__dsn"])
def test_attachments_read_back_in_the_order_the_draft_lists_them(name):
    data = (FIXTURES / f"{name}.eml").read_bytes()
    listed = payload_draft(email_common.pack(data)).attachments
    assert listed, "the fixture has attachments"
    for index, meta in enumerate(listed):
        attachment = message_attachment(data, index)
        assert (attachment.filename, attachment.content_type, len(attachment.data)) == (
            meta["name"], meta["type"], meta["size"])
    with pytest.raises(IndexError):
        message_attachment(data, len(listed))


def test_connectors_that_keep_no_attachments_say_so():
    assert registry.get("mbox").can_serve_attachments() and registry.get("imap").can_serve_attachments()
    assert registry.get("twilio_sms").can_serve_attachments()
    assert not registry.get("device").can_serve_attachments()


# --- MMS ----------------------------------------------------------------------------------------

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + b"\x00" * 32 + b"\xff\xd9"
CDN = "https://media.twiliocdn.example"


class FakeMedia(BaseAdapter):
    """Twilio's media URLs: Basic auth checked, then a redirect to the CDN (which must not get
    the credentials); the second medium was deleted at Twilio."""

    def __init__(self):
        super().__init__()
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.requests.append(request)
        where = urlparse(request.url)
        response = requests.Response()
        response.url, response.request = request.url, request
        expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        if where.netloc == "media.twiliocdn.example":
            assert "Authorization" not in request.headers
            response.status_code, response._content = 200, JPEG
            response.headers["Content-Type"] = "image/jpeg"
        elif request.headers.get("Authorization") != expected:
            response.status_code, response._content = 401, b'{"code": 20003}'
        elif where.path.endswith("/Media/ME0a1b2c3d4e5f60718293a4b5c6d7e8f9"):
            response.status_code, response._content = 307, b""
            response.headers["Location"] = f"{CDN}/AC/ME0a1b2c3d4e5f60718293a4b5c6d7e8f9"
        else:
            response.status_code, response._content = 404, b'{"code": 20404, "message": "not found"}'
        response.raw = io.BytesIO(response._content)
        return response

    def close(self):
        pass


@pytest.fixture
def media(monkeypatch) -> FakeMedia:
    from connectors import http

    fake = FakeMedia()
    original = http.session

    def session():
        s = original()
        s.mount("https://api.twilio.com/", fake)
        s.mount(CDN + "/", fake)
        return s

    monkeypatch.setattr(http, "session", session)
    return fake


@pytest.fixture
def mms_activity(workspace, client, django_capture_on_commit_callbacks) -> Activity:
    from streams.services import source_create

    source = source_create(workspace=workspace, connector="twilio_sms", name="Support",
                           config=dict(TWILIO_CONFIG), secrets={"auth_token": TOKEN})
    with django_capture_on_commit_callbacks(execute=True):
        assert post_signed(client, f"/hooks/twilio/{source.pk}/sms", fixture("inbound__mms")).status_code == 200
    return Activity.objects.get(dedup_key="sms:MM2a1b3c4d5e6f708192a3b4c5d6e7f809")


def test_an_mms_medium_is_fetched_from_twilio_with_the_sources_credentials(member_client, mms_activity, media):
    response = member_client.get(url(mms_activity, 0, inline=1))
    assert response.status_code == 200 and response.content == JPEG
    assert response["Content-Type"] == "image/jpeg"
    assert response["Content-Disposition"] == "inline; filename*=UTF-8''ME0a1b2c3d4e5f60718293a4b5c6d7e8f9.jpg"
    assert response["X-Content-Type-Options"] == "nosniff" and response["Content-Security-Policy"] == CSP
    assert [r.url for r in media.requests] == [mms_activity.attachments[0]["url"],
                                               f"{CDN}/AC/ME0a1b2c3d4e5f60718293a4b5c6d7e8f9"]


def test_an_mms_medium_deleted_at_twilio_is_a_clear_502(member_client, mms_activity, media):
    response = member_client.get(url(mms_activity, 1))
    assert response.status_code == 502
    assert response.content.decode().strip() == "Twilio no longer has this medium (it was deleted there)"


def test_a_stored_media_url_that_is_not_twilios_is_never_fetched(member_client, mms_activity, media):
    raw = dict(mms_activity.raw, MediaUrl0="https://intranet.example/secret")
    Activity.objects.filter(pk=mms_activity.pk).update(raw=raw)
    response = member_client.get(url(mms_activity, 0))
    assert response.status_code == 422 and "not a Twilio media URL" in response.content.decode()
    assert media.requests == []
