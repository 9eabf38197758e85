"""MMS media: fetching what a stored webhook links to, for the member who opens it.

Twilio's webhook carries no media bytes, only ``MediaUrlN`` (the media resource on
``api.twilio.com``) and ``MediaContentTypeN``, and Mesh stores that form as it came. The content
is fetched when someone opens the attachment, through ``connectors.http`` with the account's
credentials: Twilio answers the media URL with a redirect to its CDN, and accounts that enforce
HTTP Basic auth on media need them (``requests`` drops them on the redirect to another host).
Only Twilio's API over https is fetched, so a stored payload cannot make Mesh request another
address; media deleted at Twilio are gone for Mesh too.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from connectors import http
from connectors.base import BadItem, ConnectorError

MEDIA_HOST = "api.twilio.com"
# Twilio takes MMS media up to 5 MB; anything far larger is not a medium of a message.
MAX_MEDIA_BYTES = 16 * 1024 * 1024
CHUNK = 64 * 1024


class MediaErrors(http.HttpErrors):
    provider = "Twilio"

    def message(self, status: int, detail: str, where: str) -> str:
        if status in (404, 410):
            return "Twilio no longer has this medium (it was deleted there)"
        return f"Twilio answered {status} for this medium"


MEDIA_ERRORS = MediaErrors()


def media_fetch(url: str, *, auth: tuple[str, str] | None) -> bytes:
    """The bytes at a Twilio media URL; BadItem for a URL that is not Twilio's, ConnectorError
    when Twilio cannot be reached or refuses."""
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.hostname != MEDIA_HOST:
        raise BadItem(f"not a Twilio media URL: {url[:100]!r}")
    try:
        with http.session() as session, session.get(url, auth=auth, timeout=http.DEFAULT_TIMEOUT,
                                                       stream=True) as response:
            MEDIA_ERRORS.raise_for(response, where="media")
            data = bytearray()
            for chunk in response.iter_content(CHUNK):
                data += chunk
                if len(data) > MAX_MEDIA_BYTES:
                    raise ConnectorError(f"the medium is larger than {MAX_MEDIA_BYTES // (1024 * 1024)} MB")
            return bytes(data)
    except requests.RequestException as exc:
        raise ConnectorError(f"cannot reach Twilio: {exc}") from None
