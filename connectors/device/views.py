"""``POST /api/v1/devices/events``: authenticated device ingest.

The request is checked in this order, each failure answered plainly: token (401), size (413),
JSON (400), schema of every event (400 listing each bad event and field: ``data`` nested
deeper than ``MAX_JSON_DEPTH`` or larger than ``MAX_DATA_BYTES`` too). Every string is cleaned
first (NUL and control characters dropped, a lone surrogate made U+FFFD). A valid batch is
stored raw first, answered 202 with what was new and what was a repeat, and ingested after
commit."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from connectors.base import RawItem
from connectors.text import clean_json
from streams.services import device_api_throttle, device_by_token, device_events_store

from .schema import parse_json, validate_event


def _error(status: int, message: str, **extra) -> JsonResponse:
    response = JsonResponse({"error": message, **extra}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="mesh", error="invalid_token"'
    return response


@csrf_exempt
@require_POST
@device_api_throttle
def device_events(request: HttpRequest) -> JsonResponse:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _error(401, "missing bearer token")
    device = device_by_token(token.strip())
    if device is None or device.is_revoked:
        # One answer for unknown and revoked tokens: no hint which it was.
        return _error(401, "invalid or revoked token")

    limit = settings.MESH_INGEST_MAX_BYTES
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return _error(413, f"body larger than {limit} bytes")
    body = request.read(limit + 1)
    if len(body) > limit:
        return _error(413, f"body larger than {limit} bytes")
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

    errors = []
    first_seen: dict[str, int] = {}
    items: list[RawItem] = []
    repeated_in_batch = 0
    now = timezone.now()
    for index, event in enumerate(events):
        problems = validate_event(event)
        for field, message in problems:
            errors.append({"index": index, "id": event.get("id") if isinstance(event, dict) else None,
                           "field": field, "error": message})
        if problems:
            continue
        event_id = str(event["id"])
        if event_id in first_seen:
            if events[first_seen[event_id]] != event:
                errors.append({"index": index, "id": event["id"], "field": "id",
                               "error": f"duplicate id in this batch (also at index {first_seen[event_id]}) with different content"})
            else:
                repeated_in_batch += 1
            continue
        first_seen[event_id] = index
        items.append(RawItem(f"{device.pk}/{event_id}", event, now))
    if errors:
        return _error(400, f"{len(errors)} problem(s) in the batch; nothing was stored", errors=errors)

    stored, already = device_events_store(device=device, items=items, at=now)
    return JsonResponse(
        {"accepted": len(stored), "duplicate": already + repeated_in_batch, "received": len(events)},
        status=202,
    )
