"""The one outbound-HTTP seam. Connectors that call HTTP APIs get their session here, and tests
fake the outside world here (or at the HTTP level below it) and nowhere inside Mesh."""

from __future__ import annotations

import datetime as dt

import requests

from .base import ConnectorError

DEFAULT_TIMEOUT = (10, 60)  # connect, read (seconds)
USER_AGENT = "Mesh/0.1 (+https://example.invalid/mesh)"


def session() -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    return s


def raise_for_response(response: requests.Response) -> None:
    """Map an HTTP failure onto ConnectorError with the right permanence."""
    code = response.status_code
    if code < 400:
        return
    body = response.text[:300]
    if code in (401, 403):
        raise ConnectorError(f"HTTP {code}: {body}", permanent=True, status="auth_failed")
    if code == 429:
        reset = response.headers.get("x-rate-limit-reset") or response.headers.get("Retry-After")
        retry_at = None
        if reset and reset.isdigit():
            value = int(reset)
            # Epoch seconds (X) or a delay in seconds (Retry-After).
            retry_at = (
                dt.datetime.fromtimestamp(value, dt.UTC)
                if value > 1_000_000_000
                else dt.datetime.now(dt.UTC) + dt.timedelta(seconds=value)
            )
        raise ConnectorError(f"HTTP 429 rate limited: {body}", retry_at=retry_at)
    raise ConnectorError(f"HTTP {code}: {body}", permanent=400 <= code < 500 and code not in (408, 409))
