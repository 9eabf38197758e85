"""The device API: ``POST /api/v1/devices/events`` (authenticated device ingest) and
``GET /api/v1/devices/me/status`` (which of its seqs Mesh holds, and its presence).

The request is checked in this order, each failure answered plainly: token (401), size (413),
JSON (400), schema of every event (400 listing each bad event and field: ``data`` nested
deeper than ``MAX_JSON_DEPTH`` or larger than ``MAX_DATA_BYTES`` too). Every string is cleaned
first (NUL and control characters dropped, a lone surrogate made U+FFFD). A valid batch is
stored raw first, answered 202 with what was new and what was a repeat, and ingested after
commit. The seqs the events carry are held from that commit on (``streams.devices``)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from connectors.base import RawItem
from connectors.text import clean_json
from streams.selectors import device_presence, device_seq_status
from streams.services import device_api_throttle, device_by_token, device_events_store, request_body

from .schema import check_batch, parse_json


def _error(status: int, message: str, **extra) -> JsonResponse:
    response = JsonResponse({"error": message, **extra}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="mesh", error="invalid_token"'
    return response


def _device(request: HttpRequest):
    """The request's device, or the 401 to answer: one answer for unknown and revoked tokens,
    no hint which it was."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None, _error(401, "missing bearer token")
    device = device_by_token(token.strip())
    if device is None or device.is_revoked:
        return None, _error(401, "invalid or revoked token")
    return device, None


@csrf_exempt
@require_POST
@device_api_throttle
def device_events(request: HttpRequest) -> JsonResponse:
    device, refused = _device(request)
    if refused:
        return refused

    body = request_body(request)
    if body is None:
        return _error(413, f"body larger than {settings.MESH_INGEST_MAX_BYTES} bytes")
    try:
        doc = parse_json(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN, nesting, huge ints
        return _error(400, f"body is not valid JSON: {exc}")
    # NUL and lone surrogates (valid JSON escapes that no database stores) are cleaned
    # everywhere, ids included: the event is stored, and a resend dedupes on the cleaned id.
    doc = clean_json(doc)
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        return _error(400, 'body must be a JSON object {"events": [...]}')
    events = doc["events"]
    if not events:
        return _error(400, "events is empty")
    if len(events) > settings.MESH_INGEST_MAX_EVENTS:
        return _error(413, f"more than {settings.MESH_INGEST_MAX_EVENTS} events in one request")

    accepted, errors, repeated_in_batch = check_batch(events)
    if errors:
        return _error(400, f"{len(errors)} problem(s) in the batch; nothing was stored", errors=errors)
    now = timezone.now()
    items = [RawItem(f"{device.pk}/{event['id']}", event, now) for event in accepted]
    stored, already = device_events_store(device=device, items=items, at=now)
    return JsonResponse(
        {"accepted": len(stored), "duplicate": already + repeated_in_batch, "received": len(events)},
        status=202,
    )


@require_GET
@device_api_throttle
def device_status(request: HttpRequest) -> JsonResponse:
    """What a device needs to know to resend exactly what Mesh lacks, and how Mesh sees it."""
    device, refused = _device(request)
    if refused:
        return refused
    presence = device_presence(device=device).as_json()
    presence["last_seen_at"] = rfc3339(presence["last_seen_at"])
    if presence["place"]:
        presence["place"]["at"] = rfc3339(presence["place"]["at"])
    return JsonResponse({"device": device.pk, "name": device.name, **device_seq_status(device=device), **presence})


def rfc3339(when) -> str | None:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None
