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

from django.conf import settings
from django.db import connection
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
from streams.crypto import SecretsError, secrets_decrypt
from streams.models import Source
from streams.services import inbound_store
from streams.sms import sms_numbers_mark_self, sms_status_receive

from .connector import SID_RE

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

def _validator(source: Source) -> RequestValidator | None:
    # secrets_decrypt is memoized per ciphertext, so this costs no decryption per request, and
    # a rotated token (new ciphertext) takes effect at once.
    try:
        token = secrets_decrypt(source.secrets_encrypted).get("auth_token", "")
    except SecretsError:
        token = ""
    return RequestValidator(token) if token else None


def signed_url(request: HttpRequest) -> str:
    if settings.MESH_PUBLIC_URL:
        return settings.MESH_PUBLIC_URL + request.get_full_path()
    return request.build_absolute_uri()


# The source with its workspace, per process, reused while the row's connector, name, config
# and encrypted secrets are unchanged: checked with one plain statement per request (building
# the ORM query cost more CPU than the rest of the webhook; measured in bench/sms_bench.py).
# CAST rather than ``::text``: the same statement runs on PostgreSQL and SQLite.
_sources: dict[int, tuple[tuple, Source]] = {}
_SOURCE_ROW = (
    "SELECT connector, name, CAST(config AS TEXT), secrets_encrypted, workspace_id "
    f"FROM {Source._meta.db_table} WHERE id = %s"
)


def _source(source_id: int) -> Source | None:
    with connection.cursor() as cur:
        cur.execute(_SOURCE_ROW, [source_id])
        row = cur.fetchone()
    if row is None or row[0] != "twilio_sms":
        return None
    cached = _sources.get(source_id)
    if cached is not None and cached[0] == row:
        return cached[1]
    source = Source.objects.select_related("workspace").filter(pk=source_id, connector="twilio_sms").first()
    if source is not None:
        if len(_sources) > 1000:
            _sources.clear()
        _sources[source_id] = (row, source)
    return source


def _check(request: HttpRequest, source_id: int) -> tuple[Source | None, HttpResponse | None]:
    source = _source(source_id)
    if source is None:
        return None, HttpResponse("no such Twilio source\n", status=404, content_type="text/plain")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    validator = _validator(source)
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
    sms_numbers_mark_self(source=source)
    inbound_store(workspace=source.workspace, connector="twilio_sms", source=source,
                  items=[RawItem(external_id=sid, payload=payload, received_at=now)])
    return _twiml()


@csrf_exempt
@require_POST
def sms_status(request: HttpRequest, source_id: int) -> HttpResponse:
    source, refused = _check(request, source_id)
    if refused:
        return refused
    sms_status_receive(source=source, payload=_payload(request))
    return _twiml()
