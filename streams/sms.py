"""SMS services: the account's own numbers as the owner's identities, delivery-state updates from
Twilio status callbacks, and sending a text from Mesh (the CLI ``mesh_sms send`` and, later, the
contact page call ``sms_send``).

Delivery state lives on the activity as ``Activity.extra["delivery"] = {"state", "error_code",
"updated_at"}``; every change bumps ``Activity.updated_at`` (feeds and exports rely on it).
States only move forward (queued < sending < sent < delivered; undelivered, failed and
delivered are final), so callbacks that arrive out of order or twice change nothing.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from connectors.base import ConfigError, RawItem

from .identity import identity_mark_self
from .ingest import ingest_batch
from .models import Activity, Contact, Identity, InboundItem, Source, Workspace
from .services import ServiceError, source_connector

log = logging.getLogger(__name__)

CONNECTOR = "twilio_sms"
MAX_BODY = 1600  # Twilio's limit for one message body


class SmsSendError(ServiceError):
    """Sending failed; ``code`` is Twilio's error code when Twilio gave one."""

    def __init__(self, message: str, *, code: int | None = None):
        super().__init__(message)
        self.code = code


# --- the account's own numbers -----------------------------------------------------------------

_marked: set[tuple] = set()


def sms_numbers_mark_self(*, source: Source) -> list[Identity]:
    """Mark the source's own numbers (config ``numbers``) as the owner's identities, so that
    they are the "me" side of every message and never become contacts. Cheap to call per
    request: it remembers, per process, the sources it has done."""
    numbers = [n.strip() for n in str((source.config or {}).get("numbers", "")).split(",") if n.strip()]
    key = (source.pk, source.created_at, tuple(numbers))
    if key in _marked:
        return []
    marked = [
        identity_mark_self(workspace=source.workspace, kind="phone", value=n, display=f"{source.name} {n}")
        for n in numbers
    ]
    _marked.add(key)
    return marked


# --- delivery state ----------------------------------------------------------------------------


def sms_delivery_update(
    *, workspace: Workspace, sid: str, state: str, error_code=None, at: dt.datetime | None = None
) -> bool:
    """Move the delivery state of message ``sid`` forward to ``state``. Returns whether it
    changed; an unknown message, a stale or repeated state change nothing."""
    from connectors.twilio_sms.connector import state_advances

    at = at or timezone.now()
    with transaction.atomic():
        activity = (
            Activity.objects.select_for_update()
            .filter(workspace=workspace, dedup_key=f"sms:{sid}")
            .only("pk", "extra")
            .first()
        )
        if activity is None:
            return False
        extra = dict(activity.extra or {})
        current = (extra.get("delivery") or {}).get("state")
        if not state_advances(current, state):
            return False
        extra["delivery"] = {"state": state, "error_code": _code(error_code), "updated_at": at.isoformat()}
        Activity.objects.filter(pk=activity.pk).update(extra=extra, updated_at=at)
    return True


def sms_status_receive(*, source: Source, payload: dict) -> bool:
    """A (signature-checked) status callback: keep it, then apply it. Kept as an InboundItem
    (scope ``twilio-status:<source>``, one row per message and state), so a callback that
    arrives before the sent message is recorded is applied when it is (see ``sms_send``).
    Returns whether the delivery state changed."""
    sid = str(payload.get("MessageSid") or payload.get("SmsSid") or "")
    state = str(payload.get("MessageStatus") or payload.get("SmsStatus") or "").lower()
    if not sid or not state:
        return False
    now = timezone.now()
    changed = sms_delivery_update(workspace=source.workspace, sid=sid, state=state,
                                  error_code=payload.get("ErrorCode"), at=now)
    matched = changed or Activity.objects.filter(workspace=source.workspace, dedup_key=f"sms:{sid}").exists()
    try:
        with transaction.atomic():
            InboundItem.objects.create(
                workspace=source.workspace, connector=CONNECTOR, scope=f"twilio-status:{source.pk}", source=source,
                external_id=f"{sid}/{state}"[:255], payload=payload, received_at=now,
                # Never "pending": pending items are fed to ingest, and a callback is not a message.
                state=InboundItem.State.DONE if matched else InboundItem.State.FAILED,
                processed_at=now if matched else None,
            )
    except IntegrityError:
        pass  # the same callback again (Twilio retries): already kept
    return changed


def _apply_early_callbacks(*, source: Source, sid: str) -> None:
    early = InboundItem.objects.filter(
        scope=f"twilio-status:{source.pk}", external_id__startswith=f"{sid}/", state=InboundItem.State.FAILED
    ).order_by("received_at")
    for item in early:
        p = item.payload or {}
        sms_delivery_update(workspace=source.workspace, sid=sid, state=str(p.get("MessageStatus") or p.get("SmsStatus") or "").lower(),
                            error_code=p.get("ErrorCode"), at=item.received_at)
        InboundItem.objects.filter(pk=item.pk).update(state=InboundItem.State.DONE, processed_at=timezone.now())


def _code(value):
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


# --- sending -----------------------------------------------------------------------------------


def sms_source_for(*, workspace: Workspace, source_id: int | None = None) -> Source:
    sources = Source.objects.filter(workspace=workspace, connector=CONNECTOR).order_by("pk")
    if source_id is not None:
        source = sources.filter(pk=source_id).first()
        if source is None:
            raise SmsSendError(f"no Twilio SMS source {source_id} in workspace {workspace.slug}")
        return source
    found = list(sources[:2])
    if not found:
        raise SmsSendError(
            "no Twilio SMS source: add one with `mesh_source add twilio_sms --name N "
            "--config account_sid=AC… --config numbers=+1… --secret auth_token=…`"
        )
    if len(found) > 1:
        raise SmsSendError("several Twilio SMS sources: choose one with --source ID")
    return found[0]


def sms_recipient_for(*, contact: Contact) -> str:
    """The number to text a contact at: its phone identity in E.164 (the most recently used
    one when it has several)."""
    phones = list(
        Identity.objects.filter(contact=contact, kind="phone", is_self=False, value__startswith="+")
        .order_by("-participations__activity__occurred_at", "-pk")
        .values_list("value", flat=True)[:1]
    )
    if not phones:
        raise SmsSendError(f"contact {contact.pk} ({contact}) has no phone number to text")
    return phones[0]


def sms_status_callback_url(*, source: Source, base_url: str | None = None) -> str:
    base = (base_url or settings.MESH_PUBLIC_URL or "").rstrip("/")
    if not base:
        raise SmsSendError(
            "set MESH_PUBLIC_URL (the https:// address Twilio can reach Mesh at) so that Twilio "
            "can report delivery; without it no delivery state would ever arrive"
        )
    return base + reverse("twilio-status", args=[source.pk])


def sms_send(
    *,
    workspace: Workspace,
    body: str,
    contact: Contact | None = None,
    to: str | None = None,
    source: Source | None = None,
    from_number: str | None = None,
    base_url: str | None = None,
) -> Activity:
    """Send a text through Twilio and record it at once (state queued, or whatever Twilio
    answered) on the contact's timeline. Raises SmsSendError with a plain message."""
    from twilio.base.exceptions import TwilioRestException

    from connectors.twilio_sms.connector import ERRORS, rfc2822

    body = (body or "").strip()
    if not body:
        raise SmsSendError("the message is empty")
    if len(body) > MAX_BODY:
        raise SmsSendError(f"the message is longer than {MAX_BODY} characters")
    if contact is not None and contact.workspace_id != workspace.pk:
        raise SmsSendError("the contact is not in this workspace")
    source = source or sms_source_for(workspace=workspace)
    if source.workspace_id != workspace.pk or source.connector != CONNECTOR:
        raise SmsSendError(f"source {source.pk} is not a Twilio SMS source of this workspace")
    if to is None:
        if contact is None:
            raise SmsSendError("give a contact or a number to text")
        to = sms_recipient_for(contact=contact)
    numbers = [n.strip() for n in str((source.config or {}).get("numbers", "")).split(",") if n.strip()]
    sender = from_number or (numbers[0] if numbers else "")
    if not sender:
        raise SmsSendError(f"source {source.pk} has no numbers configured to send from (config numbers=+1…)")
    callback = sms_status_callback_url(source=source, base_url=base_url)
    sms_numbers_mark_self(source=source)
    try:
        connector = source_connector(source=source)
    except ConfigError as exc:
        raise SmsSendError(f"source {source.pk} is misconfigured: {exc}") from None
    try:
        message = connector.client().messages.create(to=to, from_=sender, body=body, status_callback=callback)
    except TwilioRestException as exc:
        text = ERRORS.get(exc.code) or exc.msg or "request refused"
        if exc.code == 20003 or exc.status == 401:
            Source.objects.filter(pk=source.pk).update(status=Source.Status.AUTH_FAILED, last_error=f"Twilio error 20003: {text}")
        raise SmsSendError(f"Twilio refused the message (error {exc.code}): {text}", code=exc.code) from None
    except OSError as exc:  # requests' ConnectionError and timeouts are OSErrors
        raise SmsSendError(f"cannot reach Twilio: {exc}") from None

    now = timezone.now()
    resource = {
        "sid": message.sid, "account_sid": message.account_sid, "from": message.from_ or sender, "to": message.to or to,
        "body": message.body if message.body is not None else body, "status": message.status or "queued",
        "direction": message.direction or "outbound-api",
        "date_created": rfc2822(message.date_created or now), "date_updated": rfc2822(message.date_updated or now),
        "date_sent": rfc2822(message.date_sent) if message.date_sent else None,
        "num_media": message.num_media, "num_segments": message.num_segments,
        "error_code": message.error_code, "error_message": message.error_message,
        "price": message.price, "price_unit": message.price_unit,
        "messaging_service_sid": message.messaging_service_sid, "uri": message.uri,
        "_status_callback": callback,
    }
    result = ingest_batch(workspace=workspace, connector=connector, items=[RawItem(message.sid, resource, now)],
                          source=source)
    if result.failed:
        log.error("sent message %s could not be recorded", message.sid)
    _apply_early_callbacks(source=source, sid=message.sid)
    activity = Activity.objects.filter(workspace=workspace, dedup_key=f"sms:{message.sid}").first()
    if activity is None:
        raise SmsSendError(f"the message was sent (SID {message.sid}) but could not be recorded; see the source's failures")
    return activity
