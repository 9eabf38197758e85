"""Feed entries: one activity as a feed item, showing no more than the tier allows.

- Privacy tiers: ``metadata`` shows who/when/channel, ``subject`` adds the subject or first
  line, ``full`` adds the content, sanitized by ``connectors.html.sanitize_feed`` (no scripts, no images).
- The public lifestream names no one: no counterpart in titles, authors or GUIDs, and an
  item's text only where the owner wrote it (``feed_entry(public=True)``).
- Plain-text fields (titles, names, descriptions, ``content_text``) hold no markup in any
  format: ``<`` and ``>`` become look-alikes (``feed_text``), then the serializer escapes once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html as htmllib
from dataclasses import dataclass, field

import nh3
from django.utils.html import escape

from connectors.html import sanitize_feed

from ..export import VERB_TYPES, tag_uri
from ..models import Activity, FeedToken

CHANNEL_LABELS = {"email": "Email", "sms": "SMS", "mms": "MMS", "call": "Call", "device": "Event"}
# The lifestream says which way an item went, never with whom.
PUBLIC_DIRECTIONS = {"in": "received", "out": "sent"}
PUBLIC_CALL_DIRECTIONS = {"in": "received", "out": "made"}
PUBLIC_MESSAGE_LABELS = {"Email", "SMS", "MMS", "Direct message"}
X_VERB_LABELS = {"post": "Post", "mention": "Mention", "message": "Direct message", "reply": "Reply"}


@dataclass(slots=True)
class FeedEntry:
    guid: str
    title: str
    link: str
    published: dt.datetime
    updated: dt.datetime
    channel: str
    as2_type: str
    author: str | None
    recipients: list[str]
    summary: str | None  # plain text (subject tier and up)
    content_html: str | None  # sanitized HTML (full tier)
    content_text: str | None  # plain text (full tier)
    attachments: list[dict] = field(default_factory=list)


# Plain text in a feed (titles, names, descriptions, content_text) is escaped once, by the XML
# or JSON serializer. A reader that renders an RSS title as HTML (many do; a naive page puts
# every field into innerHTML) would turn a decoded "<" back into markup, and escaping twice
# makes feedparser-based readers show "&#x27;". So plain text holds no angle brackets: they
# become the look-alike single angle quotation marks, and every reader shows the same text.
_NO_MARKUP = str.maketrans({"<": "\u2039", ">": "\u203a"})
# What a tag: URI may not contain (RFC 3986); a dedup key can (a device event id is the
# client's string), and a GUID is shown as text by some readers.
_NOT_IN_URI = str.maketrans({c: f"%{ord(c):02X}" for c in '<>"{}|\\^` \t\r\n'})


def feed_text(text: str) -> str:
    """Plain text as a feed carries it: no markup, whatever the reader does with it."""
    return text.translate(_NO_MARKUP)


def summary_html(text: str) -> str:
    """Plain text in an HTML field (RSS description, Atom summary, AS2 summary). Quotes stay
    as they are: they mean nothing outside a tag, and an entity is one more thing to decode."""
    return htmllib.escape(text, quote=False)


def feed_guid(a: Activity, *, public: bool = False) -> str:
    """The item's ``tag:`` URI (the ``id`` of ``mesh_export``). The public lifestream's is
    opaque: a dedup key is the source's identifier and can hold an address or a number."""
    if public:
        digest = hashlib.sha256(a.dedup_key.encode()).hexdigest()[:32]
        return f"tag:mesh,{a.workspace.created_at:%Y}:{a.workspace.slug}/public/{digest}"
    return tag_uri(a).translate(_NOT_IN_URI)


def _name(participant) -> str:
    ident = participant.identity
    return feed_text(ident.display or ident.value)


def _label(a: Activity) -> str:
    if a.channel in ("twitter", "x"):
        return X_VERB_LABELS.get(a.verb, "Post")
    if a.channel == "device":
        verb = (a.verb or "event").split(".")[0]
        return CHANNEL_LABELS.get(verb) or verb.replace("_", " ").capitalize()
    return CHANNEL_LABELS.get(a.channel) or a.channel.capitalize()


def _first_line(a: Activity) -> str:
    text = (a.subject or "").strip()
    if not text:
        text = next((line.strip() for line in (a.text or "").splitlines() if line.strip()), "")
    return text[:140] + ("…" if len(text) > 140 else "")


def _http_url(url) -> str:
    url = str(url or "").strip()
    return url if url.lower().startswith(("http://", "https://")) else ""


def _text_html(text: str) -> str:
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join(f"<p>{escape(p.strip()).replace(chr(10), '<br>')}</p>" for p in paragraphs)


def _attachments(a: Activity) -> list[dict]:
    out = []
    for att in a.attachments or []:
        if not isinstance(att, dict):
            continue
        size = att.get("size")
        out.append({
            "name": feed_text(str(att.get("name") or att.get("filename") or "attachment")[:200]),
            "type": str(att.get("mediaType") or att.get("type") or att.get("content_type") or "application/octet-stream")[:100],
            "size": size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
            "url": _http_url(att.get("url")),
        })
    return out


def _public_title(a: Activity) -> str:
    """A lifestream item's title: what and which way, with no one's name."""
    label = _label(a)
    if label == "Call":
        return f"Call {PUBLIC_CALL_DIRECTIONS[a.direction]}" if a.direction in PUBLIC_CALL_DIRECTIONS else label
    if label in PUBLIC_MESSAGE_LABELS and a.direction in PUBLIC_DIRECTIONS:
        return f"{label} {PUBLIC_DIRECTIONS[a.direction]}"
    return label  # a post, a location, a battery report: no "way" to it


def owner_wrote(a: Activity, parts: list, sender) -> bool:
    """Whether the item's text is the owner's own, which making it public publishes. Narrowly:
    an item with no counterpart at all (a location, a note, a post), or a message whose sender
    is one of the owner's identities (or, with no sender recorded, that went out). A device's
    text about a call or message is its app's, about the counterpart: not the owner's."""
    if all(p.identity.is_self for p in parts):
        return True
    if a.channel == "device":
        return False
    if sender is not None:
        return sender.identity.is_self
    return a.direction == "out"


def feed_entry(a: Activity, *, tier: str, link: str, public: bool = False) -> FeedEntry:
    """One activity as a feed item, showing no more than ``tier`` allows. ``a.workspace`` must
    be set (the GUID is made from it); participants are read from ``a.persons`` when the
    selector attached them (no query), else from the relation.

    ``public`` (the lifestream): no participant is named, not even the owner (the workspace is
    the feed's author), and the content is shown only where the owner wrote it."""
    parts = getattr(a, "persons", None)  # activities_for_tier attaches them as plain rows
    if parts is None:
        parts = list(a.participants.all())
    sender = next((p for p in parts if p.role in ("from", "author")), None)
    others = [p for p in parts if p.role not in ("from", "author") and not p.identity.is_self]
    recipients = [_name(p) for p in parts if p.role in ("to", "cc", "bcc")]
    if a.direction == "out":
        who, prep = (others[0] if others else None), "to"
    elif a.direction == "in":
        who, prep = sender or (others[0] if others else None), "from"
    else:
        who, prep = sender or (others[0] if others else None), "with"
    title = _label(a) + (f" {prep} {_name(who)}" if who is not None else "")
    author = _name(sender) if sender is not None else None
    if public:
        title, author, recipients = _public_title(a), None, []
        if not owner_wrote(a, parts, sender):
            tier = FeedToken.Tier.METADATA
    summary = content_html = content_text = None
    attachments: list[dict] = []
    if tier in (FeedToken.Tier.SUBJECT, FeedToken.Tier.FULL):
        line = feed_text(_first_line(a))
        if line:
            title = f"{title}: {line}"
            summary = line
    if tier == FeedToken.Tier.FULL:
        attachments = _attachments(a)
        body = sanitize_feed(a.html) if a.html.strip() else _text_html(a.text or "")
        if attachments:
            body += "<ul>" + "".join(
                f"<li>{escape(x['name'])} ({escape(x['type'])}{f', {x['size']} bytes' if x['size'] is not None else ''})</li>"
                for x in attachments
            ) + "</ul>"
        content_html = body
        content_text = feed_text(a.text or htmllib.unescape(nh3.clean(a.html or "", tags=set())) or summary or "")
    return FeedEntry(
        guid=feed_guid(a, public=public),
        title=title,
        link=link,
        published=a.occurred_at,
        updated=max(a.updated_at, a.occurred_at),
        channel=a.channel,
        as2_type=VERB_TYPES.get(a.verb, "Create"),
        author=author,
        recipients=recipients,
        summary=summary,
        content_html=content_html,
        content_text=content_text,
        attachments=attachments,
    )
