"""The one outbound-HTTP seam. Connectors that call HTTP APIs get their session here, and tests
fake the outside world here (or at the HTTP level below it) and nowhere inside Mesh.

``HttpErrors`` is the one mapping of HTTP failures onto ``ConnectorError``; a provider
subclasses it for its own words or rate-limit headers, not for its own rules."""

from __future__ import annotations

import datetime as dt
import email.utils

import requests

from .base import ConnectorError

DEFAULT_TIMEOUT = (10, 60)  # connect, read (seconds)
USER_AGENT = "Mesh/0.1 (+https://example.invalid/mesh)"


def session() -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    return s


class HttpErrors:
    """401/403: permanent, the source needs new credentials (``auth_failed``); 429: retried at
    the time the provider's headers name (else after ``default_retry``); 5xx, 408, 409:
    transient; any other 4xx: permanent (the request itself is wrong)."""

    provider = "HTTP"
    default_retry = dt.timedelta(seconds=60)
    # Headers naming when to come back, in order: epoch seconds, delay seconds or an HTTP date.
    reset_headers: tuple[str, ...] = ("x-rate-limit-reset", "Retry-After")

    def error(self, status: int, detail: str = "", *, where: str = "", headers=None,
              message: str | None = None) -> ConnectorError | None:
        """The ConnectorError for an HTTP ``status`` (worded by ``message``, else by
        ``self.message``); None for a success."""
        if status < 400:
            return None
        message = message or self.message(status, detail, where)
        if status in (401, 403):
            return ConnectorError(message, permanent=True, status="auth_failed")
        if status == 429:
            return ConnectorError(message, retry_at=self.retry_at(headers or {}))
        return ConnectorError(message, permanent=status < 500 and status not in (408, 409))

    def raise_for(self, response: requests.Response, *, where: str = "") -> None:
        error = self.error(response.status_code, self.detail(response), where=where, headers=response.headers)
        if error is not None:
            raise error

    def message(self, status: int, detail: str, where: str) -> str:
        return f"{self.provider} {status}{f' on {where}' if where else ''}: {detail}"

    def detail(self, response: requests.Response) -> str:
        return response.text[:300]

    def retry_at(self, headers) -> dt.datetime:
        now = dt.datetime.now(dt.UTC)
        for name in self.reset_headers:
            value = str(headers.get(name) or "").strip()
            if value.isdigit():
                seconds = int(value)
                # Epoch seconds (X's x-rate-limit-reset) or a delay in seconds (Retry-After).
                return dt.datetime.fromtimestamp(seconds, dt.UTC) if seconds > 1_000_000_000 else now + dt.timedelta(seconds=seconds)
            if value:
                try:
                    return email.utils.parsedate_to_datetime(value).astimezone(dt.UTC)
                except (TypeError, ValueError, IndexError):
                    continue
        return now + self.default_retry
