"""``GET /api/v1/sync?since=<token>&limit=N``: the changes a device may see, page by page
(``streams.selectors.sync``). Bearer device token, the device API's rate limits; errors as
JSON: 401 token, 400 bad ``since``/``limit``, 410 ``{"reset_required": true, "snapshot"}``."""

from __future__ import annotations

import orjson
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_safe

from ..ingest import gc_paused
from ..selectors.sync import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    BadSyncToken,
    SyncReset,
    device_with_log,
    sync_page,
)
from ..throttle import device_api_throttle


def _error(status: int, message: str, **extra) -> JsonResponse:
    response = JsonResponse({"error": message, **extra}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="mesh", error="invalid_token"'
    return response


@require_safe
@device_api_throttle
def sync_changes(request: HttpRequest) -> HttpResponse:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _error(401, "missing bearer token")
    try:
        limit = int(request.GET.get("limit") or DEFAULT_LIMIT)
    except ValueError:
        limit = 0
    since = request.GET.get("since")
    limit_ok = 1 <= limit <= MAX_LIMIT
    device, log = device_with_log(bearer=token.strip(), since=since, limit=limit if limit_ok else DEFAULT_LIMIT)
    if device is None or device.is_revoked:
        return _error(401, "invalid or revoked token")
    if not limit_ok:
        return _error(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    try:
        # A page of 1,000 allocates some 15,000 containers, none in a cycle, freed once it is
        # serialized: the collector's passes over them were a sixth of a catch-up's Python.
        with gc_paused():
            body = orjson.dumps(sync_page(device=device, since=since, limit=limit, log=log))
    except BadSyncToken as exc:
        return _error(400, str(exc))
    except SyncReset as exc:
        snapshot = request.build_absolute_uri(reverse("sync") + "?since=0")
        return _error(410, str(exc), reset_required=True, snapshot=snapshot)
    return HttpResponse(body, content_type="application/json")
