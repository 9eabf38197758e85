"""How a message is stored: its exact RFC 822 bytes, zlib-compressed and base64-encoded so the
payload stays JSON (``RawItem.payload`` is stored as ``jsonb``), next to where it came from.

    {"rfc822_zb64": "...", "size": 5120, "folder": "INBOX", "uid": 42, "uidvalidity": 7,
     "internaldate": "2026-05-01T10:00:00+00:00", "flags": ["\\\\Seen"]}
    {"rfc822_zb64": "...", "size": 5120, "file": "all.mbox", "index": 3, "mbox_date": "..."}

``mesh_reprocess`` re-parses these bytes with the current normalizer without the server.
"""

from __future__ import annotations

import base64
import binascii
import zlib

from connectors.base import BadItem

COMPRESSION_LEVEL = 6


def pack(data: bytes, **meta) -> dict:
    payload = {"rfc822_zb64": base64.b64encode(zlib.compress(data, COMPRESSION_LEVEL)).decode("ascii"),
               "size": len(data)}
    payload.update({k: v for k, v in meta.items() if v is not None})
    return payload


def unpack(payload, *, limit: int | None = None) -> bytes:
    """The message bytes of a stored payload; BadItem when there are none, or when they are
    larger than ``limit`` (checked while decompressing, so a bomb costs no more than that)."""
    if not isinstance(payload, dict):
        raise BadItem("not an email payload")
    if payload.get("error"):
        raise BadItem(str(payload["error"]))
    try:
        if "rfc822_zb64" in payload and limit is not None:
            inflater = zlib.decompressobj()
            data = inflater.decompress(base64.b64decode(payload["rfc822_zb64"]), limit + 1)
            if len(data) <= limit and not inflater.eof:
                raise BadItem("stored message bytes are corrupt: the compressed stream is cut short")
        elif "rfc822_zb64" in payload:
            return zlib.decompress(base64.b64decode(payload["rfc822_zb64"]))
        elif "rfc822_b64" in payload:
            data = base64.b64decode(payload["rfc822_b64"])
        else:
            raise BadItem("payload holds no message bytes")
    except (binascii.Error, zlib.error, ValueError, TypeError) as exc:
        raise BadItem(f"stored message bytes are corrupt: {exc}") from None
    if limit is not None and len(data) > limit:
        raise BadItem(f"stored message is larger than {limit:,} bytes")
    return data
