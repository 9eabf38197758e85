"""Twilio webhooks: ``POST /hooks/twilio/<source>/sms`` (an inbound SMS/MMS) and
``POST /hooks/twilio/<source>/status`` (a status callback for a message sent from Mesh).

Checked in this order: the source exists and is a Twilio source (404 otherwise: the id in the
URL is not a secret, nothing is stored, and a wrong webhook URL shows plainly in Twilio's
debugger), then the ``X-Twilio-Signature`` with the source's auth token through twilio's own
``RequestValidator`` (403 and nothing stored when it is missing or wrong). The signed URL is
``MESH_PUBLIC_URL`` + the request path when that is set (behind a proxy or tunnel the
request's own host is not what Twilio signed), else the request's absolute URL.

An inbound message is stored raw first (``inbound_store``: one row per MessageSid, so Twilio's
retries are one message; its text cleaned of what no database stores, NUL and lone surrogates) and answered at once with an empty TwiML ``<Response/>``; ingest
runs after commit. A status callback for an unknown or stale message is answered 200 so that
Twilio stops retrying.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from connectors.base import RawItem
from connectors.text import clean_json, clean_text
from streams.services import (
    delivery_report_receive,
    inbound_store,
    source_mark_self,
    source_secrets,
    webhook_source,
)

from .connector import SID_RE, TwilioSmsConnector, public_url, split_numbers

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
KEY = TwilioSmsConnector.key


def signed_url(request: HttpRequest) -> str:
    if base := public_url():
        return base + request.get_full_path()
    return request.build_absolute_uri()


def _check(request: HttpRequest, source_id: int) -> tuple:
    """(the Source, None) when the request is signed for it, else (None, the refusal)."""
    source = webhook_source(source_id=source_id, connector=KEY)
    if source is None:
        return None, HttpResponse("no such Twilio source\n", status=404, content_type="text/plain")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    token = source_secrets(source=source).get("auth_token", "")
    validator = RequestValidator(token) if token else None
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    if not signature or validator is None or not validator.validate(signed_url(request), request.POST, signature, algorithm):
        return None, HttpResponse("invalid Twilio signature\n", status=403, content_type="text/plain")
    return source, None


def _payload(request: HttpRequest) -> dict:
    """The form as stored: one value per field as Twilio sends them (a repeated field keeps all
    its values), every string cleaned (NUL and control characters dropped, a lone surrogate
    made U+FFFD) so that it can always be stored: a message refused by the database would be
    lost, since Twilio gets an answer either way. ``_cleaned`` names the fields that changed."""
    raw = {k: v[0] if len(v) == 1 else v for k, v in request.POST.lists()}
    payload = clean_json(raw)
    if payload is not raw:
        payload["_cleaned"] = [clean_text(k) for k, v in raw.items() if clean_text(k) != k or clean_json(v) != v]
    return payload


def _twiml(status: int = 200) -> HttpResponse:
    return HttpResponse(EMPTY_TWIML, status=status, content_type="text/xml; charset=utf-8")


@csrf_exempt
@require_POST
def sms_inbound(request: HttpRequest, source_id: int) -> HttpResponse:
    source, refused = _check(request, source_id)
    if refused:
        return refused
    sid = clean_text(request.POST.get("MessageSid") or request.POST.get("SmsSid") or "")
    if not SID_RE.match(sid):
        return HttpResponse("MessageSid missing or malformed\n", status=400, content_type="text/plain")
    now = timezone.now()
    payload = _payload(request)
    payload["_received_at"] = now.isoformat()
    numbers = split_numbers((source.config or {}).get("numbers"))
    source_mark_self(source=source, identities=[("phone", number, "") for number in numbers])
    inbound_store(workspace=source.workspace, connector=KEY, source=source,
                  items=[RawItem(external_id=sid, payload=payload, received_at=now)])
    return _twiml()


@csrf_exempt
@require_POST
def sms_status(request: HttpRequest, source_id: int) -> HttpResponse:
    source, refused = _check(request, source_id)
    if refused:
        return refused
    payload = _payload(request)
    sid = clean_text(request.POST.get("MessageSid") or request.POST.get("SmsSid") or "")
    state = str(payload.get("MessageStatus") or payload.get("SmsStatus") or "").lower()
    delivery_report_receive(source=source, message_id=sid, dedup_key=f"sms:{sid}", state=state,
                            error_code=payload.get("ErrorCode"), payload=payload)
    return _twiml()
