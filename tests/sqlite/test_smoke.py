"""Smoke suite on SQLite, the embedded default: every door and page a first-day user meets
works there too (issue 13.4). The PostgreSQL suite covers behaviour in depth; this one proves
that nothing on the way is PostgreSQL-only (raw SQL with ``::`` casts, ``= ANY``, ``unnest``)."""

from __future__ import annotations

import json
from pathlib import Path

import feedparser
import pytest

from streams.models import Activity, Contact, Device, InboundItem
from tests.factories import make_event
from tests.fakes.twilio import TOKEN, TWILIO_CONFIG, post_signed

ANA_PHONE = "+14155550100"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def ana(workspace):
    return Contact.objects.get(workspace=workspace, merged_into=None, identities__value=ANA_PHONE)


@pytest.fixture
def twilio_source(workspace):
    from streams.services import source_create

    return source_create(workspace=workspace, connector="twilio_sms", name="Support",
                         config=dict(TWILIO_CONFIG), secrets={"auth_token": TOKEN})


def inbound(sid: str, body: str) -> dict:
    return {"MessageSid": sid, "SmsSid": sid, "AccountSid": TWILIO_CONFIG["account_sid"], "From": ANA_PHONE,
            "To": "+14155550199", "Body": body, "NumMedia": "0", "SmsStatus": "received", "ApiVersion": "2010-04-01"}


def test_demo_imports_every_bundled_source_without_a_failure(demo):
    assert demo["database"].endswith("sqlite3")
    counts = demo["imported"]
    flat = [c for group in counts.values() for c in (group.values() if "new" not in group else [group])]
    assert flat and all(c["failed"] == 0 and c["new"] > 0 for c in flat), counts


def test_signed_twilio_webhook_is_stored_once_and_shows_on_the_contact_page(
    demo_client, twilio_source, ana, django_capture_on_commit_callbacks
):
    params = inbound("SM" + "5" * 32, "Smoke test on SQLite, Thursday?")
    for _ in range(2):  # Twilio's retry of the same MessageSid
        with django_capture_on_commit_callbacks(execute=True):
            response = post_signed(demo_client, f"/hooks/twilio/{twilio_source.pk}/sms", params)
        assert response.status_code == 200, response.content
    assert InboundItem.objects.filter(source=twilio_source).count() == 1
    assert Activity.objects.filter(dedup_key=f"sms:{params['MessageSid']}").count() == 1
    page = demo_client.get(f"/contacts/{ana.pk}/")
    assert page.status_code == 200 and "Smoke test on SQLite, Thursday?" in page.content.decode()


def test_forged_twilio_webhook_is_refused_and_stores_nothing(client, twilio_source):
    params = inbound("SM" + "6" * 32, "forged")
    response = post_signed(client, f"/hooks/twilio/{twilio_source.pk}/sms", params, token="not-the-auth-token")
    assert response.status_code == 403
    assert not InboundItem.objects.filter(source=twilio_source).exists()


def test_twilio_status_callback_is_answered(client, twilio_source):
    params = {"MessageSid": "SM" + "7" * 32, "MessageStatus": "delivered", "AccountSid": TWILIO_CONFIG["account_sid"]}
    assert post_signed(client, f"/hooks/twilio/{twilio_source.pk}/status", params).status_code == 200


def test_device_api_stores_a_batch_once_and_the_device_page_shows_it(
    demo_client, workspace, django_capture_on_commit_callbacks
):
    from streams.services import device_create

    device, token = device_create(workspace=workspace, name="Smoke phone", kind="phone")
    body = json.dumps({"events": [
        make_event("smoke-1", type="sms.received", data={"text": "Smoke from the device API"},
                   participants=[{"kind": "phone", "value": ANA_PHONE, "role": "from"}]),
        make_event("smoke-2", type="battery", data={"level": 41}),
    ]})
    for expected in ({"accepted": 2, "duplicate": 0, "received": 2}, {"accepted": 0, "duplicate": 2, "received": 2}):
        with django_capture_on_commit_callbacks(execute=True):
            response = demo_client.post("/api/v1/devices/events", data=body, content_type="application/json",
                                        HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 202, response.content
        assert response.json() == expected
    assert Activity.objects.filter(device=device).count() == 2
    page = demo_client.get(f"/devices/{device.pk}/")
    assert page.status_code == 200 and "Smoke from the device API" in page.content.decode()


@pytest.mark.parametrize("fmt", ["rss", "atom", "json", "as2"])
def test_contact_feed_serves_every_format(client, workspace, ana, fmt):
    from streams.feed_tokens import feed_token_create

    _row, token = feed_token_create(workspace=workspace, contact=ana, tier="full")
    response = client.get(f"/feeds/{token}.{fmt}")
    assert response.status_code == 200, response.content[:500]
    if fmt in ("rss", "atom"):
        parsed = feedparser.parse(response.content)
        assert not parsed.bozo and parsed.entries
    else:
        doc = json.loads(response.content)
        assert doc.get("items") or doc.get("orderedItems")


@pytest.mark.parametrize("fmt", ["rss", "atom", "json"])
def test_lifestream_feed_serves_every_format(client, workspace, fmt):
    response = client.get(f"/@{workspace.slug}/feed.{fmt}")
    assert response.status_code == 200, response.content[:500]


def test_pages_a_first_day_user_opens_answer(demo_client, workspace, ana):
    device = Device.objects.filter(workspace=workspace).order_by("pk").first()
    for url in ("/contacts/", f"/contacts/{ana.pk}/", "/devices/", f"/devices/{device.pk}/", "/sources/",
                "/search/?q=Thursday"):
        response = demo_client.get(url)
        assert response.status_code == 200, (url, response.status_code)


def test_public_lifestream_answers_anonymously(client, workspace):
    response = client.get(f"/@{workspace.slug}/")
    assert response.status_code == 200
    assert Activity.objects.filter(workspace=workspace, visibility="public").exists()


def test_hostiledevice_batches_are_refused_or_cleaned_as_on_postgresql(client, workspace, django_capture_on_commit_callbacks):
    from streams.services import device_create

    device, token = device_create(workspace=workspace, name="Hostile phone", kind="phone")
    deep = (FIXTURES / "device" / "hostile" / "batch__deep_data.json").read_text()
    dirty = (FIXTURES / "device" / "hostile" / "batch__nul_and_lone_surrogates.json").read_text()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    refused = client.post("/api/v1/devices/events", data=deep, content_type="application/json", **auth)
    assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "data"
    with django_capture_on_commit_callbacks(execute=True):
        stored = client.post("/api/v1/devices/events", data=dirty, content_type="application/json", **auth)
    assert stored.status_code == 202 and stored.json()["accepted"] == 2
    assert Activity.objects.get(dedup_key=f"device:{device.pk}/nul-1").text == "On my way \ufffd"


def test_webhook_with_nul_is_stored_cleaned(client, twilio_source, django_capture_on_commit_callbacks):
    params = inbound("SM" + "8" * 32, "Gate\u0000 code")
    with django_capture_on_commit_callbacks(execute=True):
        assert post_signed(client, f"/hooks/twilio/{twilio_source.pk}/sms", params).status_code == 200
    assert Activity.objects.get(dedup_key=f"sms:{params['MessageSid']}").text == "Gate code"
