"""The one email normalizer, shared by ``connectors.imap`` and ``connectors.mbox``.

- ``raw.pack(bytes, **where)`` / ``raw.unpack(payload)``: how a message is stored (compressed
  RFC 822 bytes in the JSON payload, so ``mesh_reprocess`` works without the server);
- ``normalize.email_draft(bytes, meta=..., self_addresses=...)``: bytes → ActivityDraft;
  ``payload_draft(payload)`` the same from a stored payload;
- ``EmailNormalizer``: the ``normalize(raw)`` both connectors use, with the direction taken from
  the workspace's self identities plus the connector's ``username`` and ``aliases``; and
  ``attachment(payload, index)``, an attachment's content parsed again from the stored message.
"""

from __future__ import annotations

import email
import email.policy

from connectors.base import ActivityDraft, Attachment, RawItem

from .normalize import email_draft, message_attachment, thread_subject
from .raw import pack, unpack

__all__ = ["EmailNormalizer", "email_draft", "pack", "payload_draft", "thread_subject", "unpack"]

META_KEYS = ("internaldate", "mbox_date", "mtime", "folder")
# The largest stored message read back for an attachment: above IMAP's fetch limit (50 MB), and
# a bound on what a corrupt or hostile payload can make one request decompress.
MAX_STORED_MESSAGE_BYTES = 64 * 1024 * 1024


class EmailNormalizer:
    """Mixin for email connectors: ``normalize`` via the shared normalizer."""

    def self_addresses(self) -> frozenset[str]:
        found = {s.split(":", 1)[1] for s in self.context.get("self_identities", []) if s.startswith("email:")}
        username = getattr(self.config, "username", "") or ""
        if "@" in username:
            found.add(username)
        found.update(a for a in getattr(self.config, "aliases", ()) if "@" in a)
        return frozenset(a.casefold() for a in found)

    def normalize(self, raw: RawItem) -> ActivityDraft:
        return payload_draft(raw.payload, self_addresses=self.self_addresses())

    @classmethod
    def attachment(cls, payload, index: int, *, secrets: dict | None = None) -> Attachment:
        """Attachment ``index`` of the stored message, parsed again from its bytes."""
        return message_attachment(unpack(payload, limit=MAX_STORED_MESSAGE_BYTES), index)

    @classmethod
    def render_original(cls, payload) -> str:
        """The HTML part of the stored message as it came, remote images and all (Mesh
        sanitizes it before showing it)."""
        try:
            message = email.message_from_bytes(unpack(payload), policy=email.policy.default)
            part = message.get_body(preferencelist=("html",))
            return "" if part is None else str(part.get_content())
        except Exception:  # a message that cannot be read back has no original: the stored HTML is shown
            return ""


def payload_draft(payload, *, self_addresses: frozenset[str] = frozenset()) -> ActivityDraft:
    """The draft of a stored payload (``raw.pack``), with the arrival times it carries."""
    data = unpack(payload)
    meta = {k: payload.get(k) for k in META_KEYS if payload.get(k)}
    return email_draft(data, meta=meta, self_addresses=self_addresses)
