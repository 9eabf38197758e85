"""Attachments of stored items, for the members of their workspace: read back by the item's
connector from the raw item Mesh keeps (``Connector.attachment``: an email is parsed again, an
MMS medium is fetched from Twilio with the source's credentials), and judged by their bytes.

An attachment is a file someone else chose, name and declared type included: opened in Mesh's
origin, an HTML or SVG file would run its script there. So it is served as a download with
``nosniff`` and a sandboxing CSP (``streams.views.attachments``), and shown in the browser only
when its first bytes are those of a PNG, JPEG, GIF or WebP image (``image_type``); SVG, a
document that can hold script, never is.
"""

from __future__ import annotations

import logging
import re

from connectors.base import Attachment, BadItem, ConnectorError, registry

from .models import Activity
from .webhooks import source_secrets

log = logging.getLogger(__name__)

# A declared type kept for a download: "type/subtype", nothing else (no parameters, no header
# injection); anything else is application/octet-stream.
MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\"]+')
MAX_NAME = 150


class AttachmentUnavailable(Exception):
    """An attachment that cannot be served, with the HTTP status that says why and a message
    for the user."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.message = message
        self.status = status


def attachments_served(*, connector: str) -> bool:
    """Whether items of ``connector`` can serve their attachments (what pages link)."""
    cls = registry.connectors.get(connector)
    return cls is not None and cls.can_serve_attachments()


def attachment_read(*, activity: Activity, index: int) -> Attachment:
    """Attachment ``index`` (its place in ``activity.attachments``) with its content; raises
    AttachmentUnavailable: 404 for one the item does not have (or no longer stores), 422 when
    the stored item cannot be read back, 502 when the source fails."""
    cls = registry.connectors.get(activity.connector)
    if cls is None or not cls.can_serve_attachments():
        raise AttachmentUnavailable("this item's source does not keep its attachments", status=404)
    listed = activity.attachments if isinstance(activity.attachments, list) else []
    if not 0 <= index < len(listed):
        raise AttachmentUnavailable(f"this item has no attachment {index}", status=404)
    if activity.raw is None:
        raise AttachmentUnavailable("the original of this item is no longer stored", status=404)
    secrets = source_secrets(source=activity.source) if activity.source_id is not None else None
    try:
        return cls.attachment(activity.raw, index, secrets=secrets)
    except IndexError:
        raise AttachmentUnavailable(f"the stored original has no attachment {index}", status=404) from None
    except BadItem as exc:
        raise AttachmentUnavailable(f"the stored original cannot be read back: {exc.reason}", status=422) from None
    except ConnectorError as exc:
        raise AttachmentUnavailable(exc.message, status=502) from None
    except Exception:  # a connector's bug (ours or a plug-in's) is this attachment's failure, not a 500
        log.exception("connector %s failed to read attachment %s of activity %s", activity.connector, index,
                      activity.pk)
        raise AttachmentUnavailable("the stored original cannot be read back", status=422) from None


def image_type(data: bytes) -> str | None:
    """The image type of ``data`` by its magic bytes (PNG, JPEG, GIF, WebP), else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def download_type(declared: str) -> str:
    """The declared type, when it is a plain ``type/subtype``, for the download's Content-Type."""
    value = str(declared or "").partition(";")[0].strip().lower()
    return value if MEDIA_TYPE.match(value) else "application/octet-stream"


def download_name(name: str, index: int) -> str:
    """A file name to save as: no path, quotes or control characters, at most ``MAX_NAME``
    characters (keeping the extension); ``attachment-<n>`` when nothing is left."""
    name = UNSAFE_NAME.sub("_", str(name or "")).strip(" ._")
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem[: MAX_NAME - len(ext) - 1]}.{ext}" if dot and 0 < len(ext) <= 10 else name[:MAX_NAME]
    return name or f"attachment-{index + 1}"
