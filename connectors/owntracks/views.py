"""``POST /api/v1/owntracks``: the OwnTracks app in HTTP mode.

The app sends one message per request with HTTP Basic credentials (Mesh reads the password as
the device token, rate-limited per token like the device API) or, from other clients,
``Authorization: Bearer <token>``; its ``X-Limit-U``/``X-Limit-D`` headers (the OwnTracks user
and device) name the topic kept with the message. Checked in this order: token (401), size (413), an OwnTracks message (400:
not JSON, not an object, no ``_type``). A message is then stored raw (one row per message
identity, so the app's retries are one event) and answered ``200`` with the list of friends'
messages the app expects: a card and the last location of each other device of the workspace,
if the device's sync scope reaches past its own (``selectors.devices.owntracks_friends``), else
``[]``; ingest runs after commit. A message Mesh does not read (an
unknown ``_type``) or cannot use (a latitude of 91) is stored all the same and becomes a skip
record with its reason, not an error answer: the app would otherwise resend it forever.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from streams.selectors import owntracks_friends
from streams.services import (
    device_api_throttle,
    device_by_token,
    device_events_store,
    device_token,
    request_body,
)

from .connector import OwnTracksConnector
from .messages import NotOwnTracks, parse_message, raw_item, topic_from_headers, with_topic


def _error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Basic realm="mesh", charset="UTF-8"'
    return response


@csrf_exempt
@require_POST
@device_api_throttle
def owntracks_http(request: HttpRequest) -> JsonResponse:
    token = device_token(request)
    if not token:
        return _error(401, "missing credentials: the device token as the password (HTTP Basic) or a Bearer token")
    device = device_by_token(token)
    if device is None or device.is_revoked:
        return _error(401, "invalid or revoked token")

    body = request_body(request)
    if body is None:
        return _error(413, f"body larger than {settings.MESH_INGEST_MAX_BYTES} bytes")
    try:
        message = parse_message(body)
    except NotOwnTracks as exc:
        return _error(400, str(exc))
    if message is None:  # the app posts an empty body when a friend is deleted
        return JsonResponse([], safe=False)
    topic = topic_from_headers(request.headers.get("X-Limit-U") or "", request.headers.get("X-Limit-D") or "")
    if topic:
        message = with_topic(message, topic)
    now = timezone.now()
    device_events_store(device=device, items=[raw_item(message, now)], at=now, connector=OwnTracksConnector.key)
    return JsonResponse(owntracks_friends(device=device, now=now), safe=False)
