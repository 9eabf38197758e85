"""Twilio SMS/MMS: inbound webhooks (stored raw first, see views.py), status callbacks, and the
account's message history through the REST API (``twilio.rest.Client``, both directions, every
number of the account).

Two payload shapes reach ``normalize``, and both give the same draft for the same message:

- a webhook form (``MessageSid``, ``From``, ``To``, ``Body``, ``NumMedia``, ``MediaUrlN`` ...),
  stored by the view with ``_received_at`` (the webhook itself carries no time);
- a Messages API resource (``sid``, ``from``, ``to``, ``status``, ``direction``,
  ``date_sent`` as RFC 2822 ...), from the history listing or from sending.

The dedup key is ``sms:<MessageSid>``, so a webhook, its Twilio retries, the same message in
the history and a message sent from Mesh are one activity.

The history cursor is a watermark plus the SIDs seen near it: ``{"after": <newest date_sent>,
"seen": [SIDs with date_sent >= after - overlap]}``. Each sync asks for ``date_sent_after =
after - overlap`` and skips the SIDs it has seen, so messages sent in the same second as the
last sync (or that show up in the API a little late) are neither missed nor imported twice.
Twilio lists newest first; while a listing is walked, the cursor also records how far down it
has stored (``run``), so a crash between pages resumes below the last stored page.

An MMS's media are fetched from Twilio when a member opens one (``attachment``, ``media.py``).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse

from connectors import http
from connectors.base import (
    ActivityDraft,
    Attachment,
    BadItem,
    Batch,
    Connector,
    ConnectorError,
    ParticipantDraft,
    RawItem,
)
from connectors.phone import e164
from connectors.times import parse_time

from .media import media_fetch

SID_RE = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
ACCOUNT_RE = re.compile(r"^AC[0-9a-fA-F]{32}$")
INBOUND = "inbound"
OUTBOUND = ("outbound-api", "outbound-call", "outbound-reply")

PENDING_STATES = frozenset({"accepted", "scheduled", "queued", "sending"})
MAX_BODY = 1600  # Twilio's limit for one message body

# Plain-language meaning of the Twilio error codes people meet most when sending.
ERRORS = {
    20003: "authentication failed: check the source's account_sid and auth_token",
    20404: "not found (wrong account SID?)",
    21211: "the 'To' number is not a valid phone number",
    21408: "sending to this region is not enabled on the Twilio account",
    21606: "the 'From' number is not one of this account's SMS-capable numbers",
    21610: "the recipient has unsubscribed (replied STOP) and cannot be texted",
    21614: "the 'To' number cannot receive SMS (not a mobile number)",
    30003: "unreachable destination handset",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
    30007: "carrier filtered the message as spam",
}


def parse_rfc2822(value) -> dt.datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def rfc2822(value: dt.datetime) -> str:
    return email.utils.format_datetime(value.astimezone(dt.UTC), usegmt=True)


@dataclass(frozen=True)
class TwilioConfig:
    account_sid: str = ""
    numbers: str = ""  # comma list of the account's own numbers, E.164
    page_size: int = 200  # Twilio allows up to 1000
    overlap_seconds: int = 300  # how far before the watermark each sync looks again

    def __post_init__(self):
        if not ACCOUNT_RE.match(self.account_sid or ""):
            raise ValueError("account_sid must look like AC followed by 32 hex digits")
        if not 1 <= self.page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        if self.overlap_seconds < 1:
            raise ValueError("overlap_seconds must be positive")
        for number in self.number_list:
            if not re.fullmatch(r"\+[1-9]\d{6,14}", number):
                raise ValueError(f"numbers must be E.164 (+14155550100), got {number!r}")

    @property
    def number_list(self) -> list[str]:
        return split_numbers(self.numbers)


def split_numbers(numbers) -> list[str]:
    """The comma list of config ``numbers`` as a list (the webhook reads it per request from the
    stored config, without building the whole config)."""
    return [n.strip() for n in str(numbers or "").split(",") if n.strip()]


def public_url() -> str:
    """``MESH_PUBLIC_URL`` without a trailing slash, or "": the address Twilio reaches Mesh at,
    which both the status callback given when sending and a webhook's signature check use."""
    return (settings.MESH_PUBLIC_URL or "").rstrip("/")


class TwilioSmsConnector(Connector):
    key = "twilio_sms"
    label = "Twilio SMS"
    channel = "sms"
    Config = TwilioConfig
    required_secrets = ("auth_token",)
    pollable = True
    # /hooks/twilio/<source>/sms and /status: the URLs people have pasted into Twilio's console,
    # and the scope status callbacks have been kept under, from before connectors named them.
    urls = "connectors.twilio_sms.urls"
    url_mount = "hooks/twilio/"
    delivery_scope = "twilio-status"
    send_to_kind = "phone"

    # -- the REST client ----------------------------------------------------------------------
    def client(self):
        """A ``twilio.rest.Client`` whose HTTP goes through Mesh's one outbound-HTTP seam
        (``connectors.http.session``), where tests put their fake Twilio."""
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        http_client = TwilioHttpClient(timeout=60)
        http_client.session = http.session()
        return Client(self.config.account_sid, self.secrets["auth_token"], http_client=http_client)

    @property
    def own_numbers(self) -> set[str]:
        region = self.context.get("region", "US")
        return {e164(n, region) for n in self.config.number_list}

    def self_identities(self) -> list[tuple[str, str, str]]:
        return [("phone", number, "") for number in self.config.number_list]

    # -- sending --------------------------------------------------------------------------------
    @classmethod
    def recipient(cls, values: list[str]) -> str | None:
        return next((v for v in values if v.startswith("+")), None)  # Twilio texts E.164 numbers only

    def status_callback_url(self) -> str:
        base = public_url()
        if not base:
            raise ConnectorError(
                "set MESH_PUBLIC_URL (the https:// address Twilio can reach Mesh at) so that Twilio "
                "can report delivery; without it no delivery state would ever arrive"
            )
        return base + reverse("twilio-status", args=[self.context["source_id"]])

    def send(self, *, to: str, body: str, sender: str | None = None) -> RawItem:
        """Send through the Messages API with the status callback set, and return the message
        resource as Twilio answered it (state queued, usually)."""
        from twilio.base.exceptions import TwilioRestException

        if len(body) > MAX_BODY:
            raise ConnectorError(f"the message is longer than {MAX_BODY} characters")
        sender = sender or next(iter(self.config.number_list), "")
        if not sender:
            raise ConnectorError(f"source {self.context.get('source_id')} has no numbers configured to send from "
                                 "(config numbers=+1…)")
        callback = self.status_callback_url()
        try:
            message = self.client().messages.create(to=to, from_=sender, body=body, status_callback=callback)
        except TwilioRestException as exc:
            text = ERRORS.get(exc.code) or exc.msg or "request refused"
            status = "auth_failed" if exc.code == 20003 or exc.status == 401 else None
            raise ConnectorError(f"Twilio refused the message (error {exc.code}): {text}", status=status,
                                 code=exc.code) from None
        except OSError as exc:  # requests' ConnectionError and timeouts are OSErrors
            raise ConnectorError(f"cannot reach Twilio: {exc}") from None
        now = dt.datetime.now(dt.UTC)
        resource = {
            "sid": message.sid, "account_sid": message.account_sid, "from": message.from_ or sender,
            "to": message.to or to, "body": message.body if message.body is not None else body,
            "status": message.status or "queued", "direction": message.direction or "outbound-api",
            "date_created": rfc2822(message.date_created or now), "date_updated": rfc2822(message.date_updated or now),
            "date_sent": rfc2822(message.date_sent) if message.date_sent else None,
            "num_media": message.num_media, "num_segments": message.num_segments,
            "error_code": message.error_code, "error_message": message.error_message,
            "price": message.price, "price_unit": message.price_unit,
            "messaging_service_sid": message.messaging_service_sid, "uri": message.uri,
            "_status_callback": callback,
        }
        return RawItem(message.sid, resource, now)

    # -- history --------------------------------------------------------------------------------
    def fetch(self, cursor: dict | None, *, since: dt.datetime | None = None) -> Iterator[Batch]:
        from twilio.base.exceptions import TwilioException, TwilioRestException

        state = dict(cursor or {})
        if since is not None:
            state = {"after": since.astimezone(dt.UTC).isoformat(), "seen": []}
        after = _iso(state.get("after"))
        seen = set(state.get("seen") or [])
        overlap = dt.timedelta(seconds=self.config.overlap_seconds)
        run = dict(state.get("run") or {})
        # Resuming an interrupted walk: everything sent after ``resume`` (and the SIDs listed at
        # that very second) was stored before the crash. Twilio lists newest date_sent first.
        resume = _iso(run.get("before"))
        resume_sids = set(run.get("before_sids") or [])
        low, low_sids = resume, set(resume_sids)  # the oldest point stored so far in this walk
        head_after = _iso(run.get("head_after")) or after
        # SIDs inside the new watermark's overlap window, rebuilt by every walk from what it lists.
        head_seen = set(run.get("head_seen") or [])
        floor = after - overlap if after else None

        query: dict = {"page_size": self.config.page_size}
        if floor is not None:
            query["date_sent_after"] = floor
        if resume is not None:
            query["date_sent_before"] = resume + dt.timedelta(seconds=1)
        try:
            page = self.client().messages.page(**query)
            while page is not None:
                records = page._payload.get("messages") or []  # the raw resources, as Twilio sent them
                items: list[RawItem] = []
                for message in records:
                    sid = str(message.get("sid") or "")
                    sent = parse_rfc2822(message.get("date_sent"))
                    if sent is None and message.get("status") in PENDING_STATES:
                        continue  # not sent yet: it gets a date_sent, and a later sync lists it then
                    sent = sent or parse_rfc2822(message.get("date_created"))
                    if sent is None:
                        items.append(RawItem(sid or f"undated-{len(items)}", message))  # fails in normalize
                        continue
                    if floor is not None and sent < floor:
                        continue  # a server that filters by day returns more than asked
                    if sid in seen:
                        continue
                    if resume is not None and (sent > resume or (sent == resume and sid in resume_sids)):
                        continue  # stored before the crash
                    items.append(RawItem(sid, message))
                    if head_after is None or sent > head_after:
                        head_after = sent
                    if low is None or sent < low:
                        low, low_sids = sent, set()
                    if sent == low:
                        low_sids.add(sid)
                for message in records:
                    sent = parse_rfc2822(message.get("date_sent"))
                    if sent is not None and head_after is not None and sent >= head_after - overlap:
                        head_seen.add(str(message.get("sid")))
                page = page.next_page()
                if page is not None:
                    walk = {
                        "before": _str(low), "before_sids": sorted(low_sids),
                        "head_after": _str(head_after), "head_seen": sorted(head_seen),
                    }
                    yield Batch(items, {"after": _str(after), "seen": sorted(seen), "run": walk})
                else:
                    yield Batch(items, _final_cursor(head_after, head_seen))
        except TwilioRestException as exc:
            raise _connector_error(exc) from exc
        except TwilioException as exc:
            raise _page_error(exc) from exc
        except OSError as exc:
            raise ConnectorError(f"cannot reach Twilio: {exc}") from exc

    # -- normalize ------------------------------------------------------------------------------
    def normalize(self, raw: RawItem) -> ActivityDraft:
        payload = raw.payload
        if not isinstance(payload, dict):
            raise BadItem("payload is not an object")
        if "MessageSid" in payload or "SmsSid" in payload:
            return self._from_webhook(payload, raw)
        if "sid" in payload:
            return self._from_resource(payload)
        raise BadItem("neither a Twilio webhook nor a Messages API resource")

    @classmethod
    def attachment(cls, payload, index: int, *, secrets: dict | None = None) -> Attachment:
        """An MMS medium, fetched from Twilio: the stored webhook holds its URL, not its bytes
        (``media``). Messages API resources list no media."""
        is_webhook = isinstance(payload, dict) and ("MessageSid" in payload or "SmsSid" in payload)
        _num, media = webhook_media(payload) if is_webhook else (0, [])
        if not 0 <= index < len(media):
            raise IndexError(f"the message has {len(media)} medi{'um' if len(media) == 1 else 'a'}, not {index + 1}")
        url, declared = media[index]
        token = (secrets or {}).get("auth_token")
        auth = (_one(payload.get("AccountSid")), token) if token else None
        extension = mimetypes.guess_extension(declared.partition(";")[0].strip()) or ""
        return Attachment(filename=_media_name(url) + extension, content_type=declared,
                          data=media_fetch(url, auth=auth))

    def _check_account(self, account_sid) -> None:
        if account_sid != self.config.account_sid:
            raise BadItem(f"message of account {account_sid!r}, not this source's {self.config.account_sid}")

    def _from_webhook(self, p: dict, raw: RawItem) -> ActivityDraft:
        sid = _one(p.get("MessageSid") or p.get("SmsSid"))
        if not SID_RE.match(sid):
            raise BadItem(f"bad MessageSid {sid!r}")
        self._check_account(_one(p.get("AccountSid")))
        sender, recipient = _one(p.get("From")), _one(p.get("To"))
        if not sender or not recipient:
            raise BadItem("From and To are required")
        received = _iso(_one(p.get("_received_at"))) or raw.received_at
        if received is None:
            raise BadItem("no time: neither _received_at nor the received time is known")
        num_media, media = webhook_media(p)
        attachments = [{"name": _media_name(url), "mediaType": declared, "url": url} for url, declared in media]
        extra = {
            "delivery": {"state": "received", "error_code": None, "updated_at": received.astimezone(dt.UTC).isoformat()},
            "segments": _int(_one(p.get("NumSegments"))),
            "media": num_media,
        }
        if p.get("MessagingServiceSid"):
            extra["messaging_service_sid"] = _one(p["MessagingServiceSid"])
        return self._draft(
            sid=sid, direction="in", sender=sender, recipient=recipient, body=_one(p.get("Body")),
            occurred_at=received, attachments=attachments, extra=extra,
        )

    def _from_resource(self, m: dict) -> ActivityDraft:
        sid = str(m.get("sid") or "")
        if not SID_RE.match(sid):
            raise BadItem(f"bad sid {sid!r}")
        self._check_account(m.get("account_sid"))
        direction = m.get("direction")
        if direction == INBOUND:
            ours = "in"
        elif direction in OUTBOUND:
            ours = "out"
        else:
            raise BadItem(f"unknown direction {direction!r}")
        sender, recipient = m.get("from") or "", m.get("to") or ""
        if not sender or not recipient:
            raise BadItem("from and to are required")
        occurred = parse_rfc2822(m.get("date_sent")) or parse_rfc2822(m.get("date_created"))
        if occurred is None:
            raise BadItem(f"no usable date_sent/date_created: {m.get('date_sent')!r}")
        updated = parse_rfc2822(m.get("date_updated")) or occurred
        status = str(m.get("status") or "")
        extra = {
            "delivery": {"state": status, "error_code": m.get("error_code"), "updated_at": updated.isoformat()},
            "segments": _int(m.get("num_segments")),
            "media": _int(m.get("num_media")) or 0,
        }
        if m.get("messaging_service_sid"):
            extra["messaging_service_sid"] = m["messaging_service_sid"]
        if m.get("_status_callback"):
            extra["status_callback"] = m["_status_callback"]
        return self._draft(
            sid=sid, direction=ours, sender=sender, recipient=recipient, body=m.get("body") or "",
            occurred_at=occurred, attachments=[], extra=extra,
        )

    def _draft(self, *, sid, direction, sender, recipient, body, occurred_at, attachments, extra) -> ActivityDraft:
        region = self.context.get("region", "US")
        ours, theirs = (recipient, sender) if direction == "in" else (sender, recipient)
        own = e164(ours, region)
        extra = {"number": own, **extra}
        participants = [ParticipantDraft(role="from" if direction == "in" else "to", kind="phone", value=theirs)]
        # The account's own number is a participant only once it is marked as the owner's
        # (webhooks and sending do that): otherwise it would become a contact of its own.
        if f"phone:{own}" in set(self.context.get("self_identities") or ()):
            participants.append(ParticipantDraft(role="to" if direction == "in" else "from", kind="phone", value=ours))
        return ActivityDraft(
            channel="sms",
            verb="receive" if direction == "in" else "send",
            direction=direction,
            occurred_at=occurred_at,
            dedup_key=f"sms:{sid}",
            text=body,
            thread_key=f"sms:{e164(theirs, region)}",
            participants=participants,
            attachments=attachments,
            extra=extra,
        )


def webhook_media(p: dict) -> tuple[int, list[tuple[str, str]]]:
    """A webhook form's ``NumMedia`` and its media as (URL, declared type), in the order of the
    draft's ``attachments`` (at most 10, Twilio's limit)."""
    try:
        num_media = int(_one(p.get("NumMedia")) or 0)
    except ValueError:
        raise BadItem(f"bad NumMedia {p.get('NumMedia')!r}") from None
    urls = [(_one(p.get(f"MediaUrl{i}")), _one(p.get(f"MediaContentType{i}"))) for i in range(min(num_media, 10))]
    return num_media, [(url, declared) for url, declared in urls if url]


def _media_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _one(value) -> str:
    """A form value as text (a webhook payload may hold lists, as QueryDict gives them)."""
    if isinstance(value, list):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _iso(value) -> dt.datetime | None:
    if not value:
        return None
    try:
        return parse_time(value, epoch=False, assume_utc=True)
    except ValueError:
        return None


def _str(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _final_cursor(head_after, head_seen) -> dict:
    if head_after is None:
        return {"after": None, "seen": []}
    return {"after": head_after.isoformat(), "seen": sorted(head_seen)}


HTTP_ERRORS = http.HttpErrors()


def _connector_error(exc) -> ConnectorError:
    code = getattr(exc, "code", None)
    status = getattr(exc, "status", None)
    text = ERRORS.get(code) or getattr(exc, "msg", "") or str(exc)
    message = f"Twilio error {code}: {text}" if code else f"Twilio HTTP {status}: {text}"
    if code == 20003:  # "authenticate": whatever status the client reports with it
        status = 401
    if not status or status < 400:
        return ConnectorError(message)
    return HTTP_ERRORS.error(status, message=message)


def _page_error(exc) -> ConnectorError:
    """A listing that failed: the twilio client raises TwilioException("Unable to fetch page",
    response) for those; read Twilio's error JSON from the response."""
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", None)
    if status is None:
        return ConnectorError(f"Twilio: {exc}")
    try:
        body = json.loads(response.text)
    except (TypeError, ValueError):
        body = {}
    fake = type("E", (), {"code": body.get("code"), "status": status, "msg": body.get("message", "")})()
    return _connector_error(fake)


def error_text(code) -> str:
    return ERRORS.get(code, "")

