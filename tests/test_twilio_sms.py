"""Twilio SMS: signed webhooks, status callbacks, history with the same-second cursor, sending.

Signatures are computed by twilio's own RequestValidator; the REST API is the FakeTwilio
adapter at the HTTP boundary (tests/fakes/twilio.py); nothing inside Mesh is mocked."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from urllib.parse import parse_qs

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from connectors.testing import ConnectorConformance, draft_dict
from tests.fakes.twilio import (
    ACCOUNT,
    OURS,
    TOKEN,
    TWILIO_CONFIG,
    FakeTwilio,
    fixture,
    history_fake,
    install_fake_twilio,
    post_signed,
    sign,
)


@pytest.fixture
def twilio_source(workspace):
    from streams.services import source_create

    return source_create(workspace=workspace, connector="twilio_sms", name="Support",
                         config=dict(TWILIO_CONFIG), secrets={"auth_token": TOKEN})


@pytest.fixture
def fake(monkeypatch):
    return install_fake_twilio(monkeypatch, FakeTwilio())


def sms_path(source) -> str:
    return f"/hooks/twilio/{source.pk}/sms"


def status_path(source) -> str:
    return f"/hooks/twilio/{source.pk}/status"


# -- inbound webhook ---------------------------------------------------------------------------


def test_signed_inbound_sms_is_stored_answered_with_empty_twiml_and_lands_on_the_contact(
    client, twilio_source, django_capture_on_commit_callbacks
):
    from streams.models import Activity, InboundItem, TimelineEntry

    params = fixture("inbound__sms")
    with django_capture_on_commit_callbacks(execute=True):
        response = post_signed(client, sms_path(twilio_source), params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode() == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    item = InboundItem.objects.get(scope=f"source:{twilio_source.pk}")
    assert item.external_id == params["MessageSid"] and item.payload["Body"] == params["Body"]
    assert item.state == "done"
    activity = Activity.objects.get(dedup_key=f"sms:{params['MessageSid']}")
    assert (activity.channel, activity.verb, activity.direction) == ("sms", "receive", "in")
    assert activity.text == "Are we still on for Thursday? 👍"
    assert activity.extra["delivery"]["state"] == "received"
    assert activity.extra["number"] == OURS
    parts = {(p.role, p.identity.value, p.identity.is_self) for p in activity.participants.select_related("identity")}
    assert parts == {("from", "+14155550100", False), ("to", OURS, True)}
    contact = activity.participants.get(role="from").identity.contact
    assert TimelineEntry.objects.filter(kind="c", owner_id=contact.pk, activity=activity).exists()
    assert activity.occurred_at == item.received_at


def test_twilio_retry_of_the_same_message_sid_is_one_activity(client, twilio_source, django_capture_on_commit_callbacks):
    from streams.models import Activity, InboundItem

    params = fixture("inbound__sms")
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            assert post_signed(client, sms_path(twilio_source), params).status_code == 200
    assert InboundItem.objects.filter(scope=f"source:{twilio_source.pk}").count() == 1
    assert Activity.objects.filter(dedup_key=f"sms:{params['MessageSid']}").count() == 1


def test_inbound_mms_media_become_attachments(client, twilio_source, django_capture_on_commit_callbacks):
    from streams.models import Activity

    params = fixture("inbound__mms")
    with django_capture_on_commit_callbacks(execute=True):
        assert post_signed(client, sms_path(twilio_source), params).status_code == 200
    activity = Activity.objects.get(dedup_key=f"sms:{params['MessageSid']}")
    assert activity.attachments == [
        {"name": "ME0a1b2c3d4e5f60718293a4b5c6d7e8f9", "mediaType": "image/jpeg", "url": params["MediaUrl0"]},
        {"name": "ME1b2c3d4e5f60718293a4b5c6d7e8f90a", "mediaType": "application/pdf", "url": params["MediaUrl1"]},
    ]
    assert activity.extra["media"] == 2


@pytest.mark.parametrize("how", ["missing", "wrong token", "garbage"])
def test_bad_signature_is_refused_with_403_and_nothing_is_stored(client, twilio_source, how):
    from streams.models import Activity, InboundItem

    params = fixture("inbound__sms")
    signature = {"missing": "", "wrong token": sign(f"http://testserver{sms_path(twilio_source)}", params, "x" * 32),
                 "garbage": "not-a-signature"}[how]
    response = post_signed(client, sms_path(twilio_source), params, signature=signature)
    assert response.status_code == 403
    assert not InboundItem.objects.exists() and not Activity.objects.exists()


def test_valid_signature_replayed_with_one_parameter_changed_is_refused(client, twilio_source, workspace):
    from streams.models import InboundItem
    from streams.services import source_create

    params = fixture("inbound__sms")
    signature = sign(f"http://testserver{sms_path(twilio_source)}", params)
    forged = {**params, "Body": "Please wire $5,000 to this account"}
    assert post_signed(client, sms_path(twilio_source), forged, signature=signature).status_code == 403
    # The same signature on another source's URL (same account, same token) is no good either.
    other = source_create(workspace=workspace, connector="twilio_sms", name="Sales",
                          config=dict(TWILIO_CONFIG), secrets={"auth_token": TOKEN})
    assert post_signed(client, sms_path(other), params, signature=signature).status_code == 403
    assert not InboundItem.objects.exists()


def test_webhook_for_an_unknown_source_is_404_and_stores_nothing(client, twilio_source, workspace):
    from streams.models import InboundItem
    from streams.services import source_create

    params = fixture("inbound__sms")
    missing = f"/hooks/twilio/{twilio_source.pk + 1000}/sms"
    assert post_signed(client, missing, params).status_code == 404
    other = source_create(workspace=workspace, connector="device", name="not twilio")
    assert post_signed(client, f"/hooks/twilio/{other.pk}/sms", params).status_code == 404
    assert post_signed(client, f"/hooks/twilio/{twilio_source.pk + 1000}/status", params).status_code == 404
    assert not InboundItem.objects.exists()


def test_signature_is_checked_against_the_public_url_when_it_is_set(client, twilio_source):
    from streams.models import InboundItem

    params = fixture("inbound__sms")
    public = "https://mesh.example.com"
    with override_settings(MESH_PUBLIC_URL=public):
        # Signed by Twilio for the public URL, arriving at the app on an internal host.
        good = sign(public + sms_path(twilio_source), params)
        assert post_signed(client, sms_path(twilio_source), params, signature=good).status_code == 200
        params2 = {**params, "MessageSid": "SM" + "e" * 32}
        own = sign(f"http://testserver{sms_path(twilio_source)}", params2)
        assert post_signed(client, sms_path(twilio_source), params2, signature=own).status_code == 403
    assert list(InboundItem.objects.values_list("external_id", flat=True)) == [params["MessageSid"]]


def test_get_is_not_allowed_and_a_signed_request_without_message_sid_is_400(client, twilio_source):
    assert client.get(sms_path(twilio_source)).status_code == 405
    params = {"AccountSid": ACCOUNT, "From": "+14155550100", "To": OURS, "Body": "hi"}
    assert post_signed(client, sms_path(twilio_source), params).status_code == 400


# -- status callbacks --------------------------------------------------------------------------


@pytest.fixture
def sent(twilio_source, fake, workspace):
    """A message sent from Mesh (through the fake), whose callbacks the tests deliver."""
    from streams.messaging import message_send

    with override_settings(MESH_PUBLIC_URL="https://mesh.example.com"):
        return message_send(workspace=workspace, to="+14155550100", body="Your order has shipped", source=twilio_source)


def callback(name: str, sid: str) -> dict:
    params = fixture(f"status_callback__{name}")
    params["MessageSid"] = params["SmsSid"] = sid
    return params


def test_status_callbacks_out_of_order_never_move_the_state_backwards(client, twilio_source, sent):
    from streams.models import Activity

    assert sent.extra["delivery"]["state"] == "queued"
    seen = []
    for name in ["sent", "queued", "delivered", "sending", "sent"]:
        before = Activity.objects.get(pk=sent.pk).updated_at
        assert post_signed(client, status_path(twilio_source), callback(name, sent.external_id)).status_code == 200
        after = Activity.objects.get(pk=sent.pk)
        seen.append((after.extra["delivery"]["state"], after.updated_at > before))
    assert seen == [("sent", True), ("sent", False), ("delivered", True), ("delivered", False), ("delivered", False)]


def test_undelivered_callback_records_the_error_code_and_is_final(client, twilio_source, sent):
    from streams.models import Activity

    for name in ["sending", "undelivered", "sent", "delivered"]:
        assert post_signed(client, status_path(twilio_source), callback(name, sent.external_id)).status_code == 200
    delivery = Activity.objects.get(pk=sent.pk).extra["delivery"]
    assert (delivery["state"], delivery["error_code"]) == ("undelivered", 30003)


def test_status_callback_for_an_unknown_message_is_200_after_the_signature_check(client, twilio_source):
    from streams.models import Activity, InboundItem

    params = callback("delivered", "SM" + "f" * 32)
    assert post_signed(client, status_path(twilio_source), params).status_code == 200
    assert post_signed(client, status_path(twilio_source), params, signature="bad").status_code == 403
    assert not Activity.objects.exists()
    kept = InboundItem.objects.get(scope=f"twilio-status:{twilio_source.pk}")
    assert kept.state == "failed"  # kept, but never fed to the message ingest


def test_a_callback_that_arrives_before_the_send_is_recorded_is_applied_when_it_is(client, twilio_source, fake, workspace):
    from streams.messaging import message_send

    early_sid = f"SM{0x1000:032x}"  # the fake's next SID
    assert post_signed(client, status_path(twilio_source), callback("sent", early_sid)).status_code == 200
    with override_settings(MESH_PUBLIC_URL="https://mesh.example.com"):
        activity = message_send(workspace=workspace, to="+14155550100", body="hi", source=twilio_source)
    assert activity.external_id == early_sid
    assert activity.extra["delivery"]["state"] == "sent"


# -- sending -----------------------------------------------------------------------------------


def test_send_records_the_outbound_activity_at_once_with_the_status_callback(twilio_source, fake, workspace):
    from streams.messaging import message_send
    from streams.models import Activity, Contact, TimelineEntry

    with override_settings(MESH_PUBLIC_URL="https://mesh.example.com"):
        activity = message_send(workspace=workspace, to="+1 (415) 555-0100", body="Your order has shipped", source=twilio_source)
    form = parse_qs(fake.requests[-1].body)
    assert form["StatusCallback"] == [f"https://mesh.example.com/hooks/twilio/{twilio_source.pk}/status"]
    assert form["From"] == [OURS] and form["To"] == ["+1 (415) 555-0100"]
    assert (activity.direction, activity.verb, activity.text) == ("out", "send", "Your order has shipped")
    assert activity.extra["delivery"]["state"] == "queued"
    assert activity.extra["status_callback"] == form["StatusCallback"][0]
    contact = Contact.objects.get(identities__value="+14155550100")
    assert TimelineEntry.objects.filter(kind="c", owner_id=contact.pk, activity=activity).exists()
    assert Activity.objects.count() == 1


@pytest.mark.parametrize(
    "code,status,words",
    [(21211, 400, "not a valid phone number"), (21610, 400, "unsubscribed"), (20003, 401, "authentication failed")],
)
def test_send_errors_are_said_plainly_and_nothing_is_recorded(twilio_source, fake, workspace, code, status, words):
    from streams.messaging import MessageSendError, message_send
    from streams.models import Activity, Source

    fake.refuse = {"code": code, "status": status, "message": f"Twilio says {code}"}
    with override_settings(MESH_PUBLIC_URL="https://mesh.example.com"), pytest.raises(MessageSendError) as exc:
        message_send(workspace=workspace, to="+14155550100", body="hi", source=twilio_source)
    assert words in str(exc.value) and str(code) in str(exc.value) and exc.value.code == code
    assert not Activity.objects.exists()
    if code == 20003:
        assert Source.objects.get(pk=twilio_source.pk).status == "auth_failed"


def test_mesh_sms_send_texts_a_contact_and_prints_json(twilio_source, fake, workspace, capsys):
    from streams.models import Contact, Identity

    contact = Contact.objects.create(workspace=workspace, name="Ana")
    Identity.objects.create(workspace=workspace, kind="phone", value="+14155550100", contact=contact, home_contact=contact)
    with override_settings(MESH_PUBLIC_URL="https://mesh.example.com"):
        call_command("mesh_sms", "send", "--workspace", workspace.slug, "--contact", str(contact.pk),
                     "--body", "See you at 3", "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["to"] == "+14155550100" and data["from"] == OURS and data["state"] == "queued"
    assert data["sid"].startswith("SM")
    fake.refuse = {"code": 21610, "status": 400, "message": "Attempt to send to unsubscribed recipient"}
    with override_settings(MESH_PUBLIC_URL="https://mesh.example.com"), pytest.raises(CommandError, match="unsubscribed"):
        call_command("mesh_sms", "send", "--workspace", workspace.slug, "--contact", str(contact.pk), "--body", "again")


def test_send_without_a_public_url_says_what_to_set(twilio_source, fake, workspace):
    from streams.messaging import MessageSendError, message_send

    with override_settings(MESH_PUBLIC_URL=""), pytest.raises(MessageSendError, match="MESH_PUBLIC_URL"):
        message_send(workspace=workspace, to="+14155550100", body="hi", source=twilio_source)
    assert fake.requests == []


# -- history -----------------------------------------------------------------------------------


def test_incremental_sync_neither_misses_nor_reimports_messages_in_the_same_second(twilio_source, monkeypatch):
    from streams.models import Activity
    from streams.services import source_sync

    fake = install_fake_twilio(monkeypatch, history_fake())
    first = source_sync(source=twilio_source)
    assert (first.new, first.failed) == (6, 1)
    assert twilio_source.cursor["after"] == "2026-05-01T11:30:00+00:00"
    # New messages: one in the very second of the newest synced one, one that shows up late
    # (sent a minute before the watermark), one later.
    same_second = "Fri, 01 May 2026 11:30:00 +0000"
    fake.add(sid="SM" + "1" * 32, direction="inbound", status="received", body="same second", to=OURS,
             date_sent=same_second, **{"from": "+14155550104"})
    fake.add(sid="SM" + "2" * 32, direction="inbound", status="received", body="late", to=OURS,
             date_sent="Fri, 01 May 2026 11:29:00 +0000", **{"from": "+14155550105"})
    fake.add(sid="SM" + "3" * 32, direction="inbound", status="received", body="later", to=OURS,
             date_sent="Fri, 01 May 2026 12:00:00 +0000", **{"from": "+14155550106"})
    second = source_sync(source=twilio_source)
    assert (second.fetched, second.new, second.duplicate) == (3, 3, 0)
    third = source_sync(source=twilio_source)
    assert (third.fetched, third.new) == (0, 0)
    assert Activity.objects.filter(source=twilio_source).count() == 9
    # The listing asked Twilio for messages from a little before the watermark.
    query = parse_qs(fake.requests[-1].url.split("?", 1)[1])
    assert query["DateSent>"] == ["2026-05-01T11:55:00Z"]


def test_history_and_webhook_of_the_same_message_are_one_activity(client, twilio_source, monkeypatch, django_capture_on_commit_callbacks):
    from streams.models import Activity
    from streams.services import source_sync

    params = fixture("inbound__sms")
    with django_capture_on_commit_callbacks(execute=True):
        post_signed(client, sms_path(twilio_source), params)
    fake = install_fake_twilio(monkeypatch, FakeTwilio())
    fake.add(sid=params["MessageSid"], direction="inbound", status="received", body=params["Body"], to=OURS,
             date_sent="Fri, 01 May 2026 09:00:00 +0000", **{"from": params["From"]})
    run = source_sync(source=twilio_source)
    assert (run.new, run.duplicate) == (0, 1)
    assert Activity.objects.count() == 1


def test_auth_failure_marks_the_source_and_is_permanent(twilio_source, monkeypatch):
    from connectors.base import ConnectorError
    from streams.models import Source
    from streams.services import source_sync

    install_fake_twilio(monkeypatch, FakeTwilio(auth_token="another-token"))
    with pytest.raises(ConnectorError) as exc:
        source_sync(source=twilio_source)
    assert exc.value.permanent and "20003" in exc.value.message
    assert Source.objects.get(pk=twilio_source.pk).status == "auth_failed"


def test_source_add_refuses_a_malformed_account_sid(workspace):
    from connectors.base import ConfigError
    from streams.services import source_create

    with pytest.raises(ConfigError, match="account_sid"):
        source_create(workspace=workspace, connector="twilio_sms", name="x", config={"account_sid": "nope"},
                      secrets={"auth_token": TOKEN})
    with pytest.raises(ConfigError, match="auth_token"):
        source_create(workspace=workspace, connector="twilio_sms", name="x", config=dict(TWILIO_CONFIG))


class TestTwilioHistoryConformance(ConnectorConformance):
    """The REST history path, served by the fake at the HTTP boundary (pages of 2)."""

    connector_key = "twilio_sms"
    bad_external_ids = {"SM00000000000000000000000000000006"}
    expected_drafts = {
        "SM00000000000000000000000000000001": draft_dict(
            channel="sms", verb="receive", direction="in", occurred_at="2026-05-01T09:00:00+00:00",
            dedup_key="sms:SM00000000000000000000000000000001", text="Hi, is the shop open on Sunday?",
            thread_key="sms:+14155550100",
            participants=[{"role": "from", "kind": "phone", "value": "+14155550100", "display": ""}],
            extra={"number": OURS, "media": 0, "segments": 1,
                   "delivery": {"state": "received", "error_code": None, "updated_at": "2026-05-01T09:00:00+00:00"}},
        ),
        "SM00000000000000000000000000000003": draft_dict(
            channel="sms", verb="send", direction="out", occurred_at="2026-05-01T10:00:00+00:00",
            dedup_key="sms:SM00000000000000000000000000000003", text="Your order has shipped.",
            thread_key="sms:+14155550101",
            participants=[{"role": "to", "kind": "phone", "value": "(415) 555-0101", "display": ""}],
            extra={"number": OURS, "media": 0, "segments": 1,
                   "delivery": {"state": "undelivered", "error_code": 30003, "updated_at": "2026-05-01T10:00:00+00:00"}},
        ),
    }

    @pytest.fixture(autouse=True)
    def _fake_twilio(self, monkeypatch):
        install_fake_twilio(monkeypatch, history_fake())

    def make_source(self, workspace, tmp_path):
        from streams.services import source_create

        return source_create(workspace=workspace, connector="twilio_sms", name="Twilio history",
                             config={**TWILIO_CONFIG, "page_size": "2"}, secrets={"auth_token": TOKEN})


def test_normalize_of_a_webhook_and_of_the_api_resource_agree(twilio_source):
    from connectors.base import RawItem
    from streams.services import source_connector

    connector = source_connector(source=twilio_source)
    params = fixture("inbound__sms")
    when = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
    hook = connector.normalize(RawItem(params["MessageSid"], {**params, "_received_at": when.isoformat()}))
    fake = FakeTwilio()
    resource = fake.add(sid=params["MessageSid"], direction="inbound", status="received", body=params["Body"],
                        to=OURS, date_sent="Fri, 01 May 2026 09:00:00 +0000", **{"from": params["From"]})
    api = connector.normalize(RawItem(params["MessageSid"], resource))
    for field in ("channel", "verb", "direction", "occurred_at", "dedup_key", "text", "thread_key", "participants"):
        assert getattr(hook, field) == getattr(api, field), field


def test_reprocess_keeps_the_delivery_state_that_callbacks_brought(client, twilio_source, sent):
    from streams.models import Activity
    from streams.reprocess import source_reprocess

    post_signed(client, status_path(twilio_source), callback("delivered", sent.external_id))
    result = source_reprocess(source=twilio_source)
    assert result.failed == 0
    assert Activity.objects.get(pk=sent.pk).extra["delivery"]["state"] == "delivered"


def test_a_message_not_sent_yet_is_imported_by_the_sync_after_it_is_sent(twilio_source, monkeypatch):
    from streams.models import Activity
    from streams.services import source_sync

    fake = install_fake_twilio(monkeypatch, history_fake())
    pending = fake.add(sid="SM" + "9" * 32, direction="outbound-api", status="queued", body="on its way", to="+14155550100",
                       date_created="Fri, 01 May 2026 11:59:59 +0000", date_sent=None, **{"from": OURS})
    assert source_sync(source=twilio_source).new == 6
    assert not Activity.objects.filter(external_id=pending["sid"]).exists()
    pending.update(status="delivered", date_sent="Fri, 01 May 2026 12:00:01 +0000", date_updated="Fri, 01 May 2026 12:00:05 +0000")
    run = source_sync(source=twilio_source)
    assert (run.fetched, run.new) == (1, 1)
    assert Activity.objects.get(external_id=pending["sid"]).extra["delivery"]["state"] == "delivered"


# -- hostile input: the message is never lost (issue 15.2) ---------------------------------------


def test_signed_inbound_with_nul_and_control_characters_is_stored_cleaned_once_and_shown(
    member_client, twilio_source, workspace, django_capture_on_commit_callbacks
):
    from streams.models import Activity, Identity, InboundItem

    params = fixture("inbound__nul_and_control_characters")
    for _ in range(2):  # and Twilio's retry is the same message
        with django_capture_on_commit_callbacks(execute=True):
            response = post_signed(member_client, sms_path(twilio_source), params)
        assert response.status_code == 200
    item = InboundItem.objects.get(scope=f"source:{twilio_source.pk}")
    assert item.payload["Body"] == "Gate code is 4129, see you"
    assert item.payload["From"] == "+14155550100" and item.payload["FromCity"] == "SAN FRANCISCO"
    assert item.payload["_cleaned"] == ["Body", "From", "FromCity"]
    activity = Activity.objects.get(dedup_key=f"sms:{params['MessageSid']}")
    assert activity.text == "Gate code is 4129, see you"
    ana = Identity.objects.get(workspace=workspace, kind="phone", value="+14155550100").contact
    page = member_client.get(f"/contacts/{ana.pk}/")
    assert page.status_code == 200 and "Gate code is 4129, see you" in page.content.decode()


def test_a_raw_form_body_with_nul_and_invalid_utf8_is_stored(client, twilio_source, django_capture_on_commit_callbacks):
    from django.http import QueryDict

    from streams.models import Activity, InboundItem

    sid = "SM" + "3" * 32
    body = (f"MessageSid={sid}&AccountSid={ACCOUNT}&From=%2B14155550100&To=%2B14155550199"
            "&Body=Hi%00there%ED%A0%BD%F0%9F%91%8D&NumMedia=0").encode()
    url = f"http://testserver{sms_path(twilio_source)}"
    parsed = {k: v for k, v in QueryDict(body).items()}  # what Twilio signed, as the form decodes
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(sms_path(twilio_source), data=body, content_type="application/x-www-form-urlencoded",
                               HTTP_X_TWILIO_SIGNATURE=sign(url, parsed))
    assert response.status_code == 200
    assert InboundItem.objects.get(external_id=sid).payload["Body"] == "Hithere\ufffd\ufffd\ufffd👍"
    assert Activity.objects.get(dedup_key=f"sms:{sid}").text == "Hithere\ufffd\ufffd\ufffd👍"


def test_a_status_callback_with_nul_is_kept_and_answered(client, twilio_source):
    from streams.models import InboundItem

    params = {**callback("failed", "SM" + "4" * 32), "ErrorMessage": "Carrier\u0000 said no"}
    assert post_signed(client, status_path(twilio_source), params).status_code == 200
    kept = InboundItem.objects.get(scope=f"twilio-status:{twilio_source.pk}")
    assert kept.payload["ErrorMessage"] == "Carrier said no"


_FORM_TEXT = st.text(st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(["\x00", "\x07", "\x1f", "\x7f"])),
                     max_size=20)
_SIDS = itertools.count(1)  # examples share the test's database: each is a new message


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_FORM_TEXT, sender=_FORM_TEXT, field=_FORM_TEXT.filter(bool), value=_FORM_TEXT)
def test_a_signed_webhook_with_any_text_in_any_field_is_stored_once(
    client, twilio_source, django_capture_on_commit_callbacks, body, sender, field, value
):
    from urllib.parse import urlencode

    from connectors.text import clean_text
    from streams.models import InboundItem

    sid = f"SM{next(_SIDS):032x}"
    params = {field: value, "MessageSid": sid, "AccountSid": ACCOUNT, "From": sender, "To": OURS, "Body": body}
    form = urlencode(params)  # as Twilio posts it: %00 and all
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(sms_path(twilio_source), data=form, content_type="application/x-www-form-urlencoded",
                                   HTTP_X_TWILIO_SIGNATURE=sign(f"http://testserver{sms_path(twilio_source)}", params))
        assert response.status_code == 200, response.content
    item = InboundItem.objects.get(scope=f"source:{twilio_source.pk}", external_id=sid)
    assert item.payload["Body"] == clean_text(body)
