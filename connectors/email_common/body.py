"""Message bodies: the text to show, HTML made safe, the new part of a reply, attachments.

- text/plain is preferred; an HTML-only message is converted to text here.
- HTML is sanitized through ``connectors.html`` (the one allow-list): no scripts, style
  sheets or event handlers, no remote images
  (they are tracking pixels: blocked and counted), ``cid:`` images kept only when they point at
  an attachment of the same message (the attachment metadata carries the content id).
- The snippet is the new part of a reply: quoted text ("On … wrote:", ">" lines, Outlook's
  "From:/Sent:" block, "-----Original Message-----") and signatures ("-- ", "Sent from my …")
  are cut.
"""

from __future__ import annotations

import re
from email.message import Message
from html import unescape
from html.parser import HTMLParser
from urllib.parse import unquote

from connectors.html import sanitize_import
from connectors.text import clean_text

from .headers import decode_bytes, decode_header, one_line

MAX_TEXT = 200_000
MAX_HTML_IN = 1_000_000
SNIPPET = 500

IMG_TAG = re.compile(r"<img\b[^>]*>", re.I | re.S)
ATTR = re.compile(r"""([a-zA-Z-]+)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""")


# --- charset-aware part text -----------------------------------------------------------------


def part_bytes(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return b""


def part_text(part: Message) -> str:
    try:
        charset = part.get_param("charset")
    except Exception:
        charset = None
    if isinstance(charset, tuple):  # RFC 2231 form
        charset = charset[0] or charset[2]
    return clean_text(decode_bytes(part_bytes(part), charset if isinstance(charset, str) else None))


# --- HTML → text -----------------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    BLOCK = {"p", "div", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "ul", "ol",
             "section", "article", "header", "footer", "center", "hr", "dl", "dt", "dd", "title"}
    SKIP = {"script", "style", "head", "noscript", "template", "svg"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag in self.BLOCK:
            self.out.append("\n\n")

    def handle_startendtag(self, tag, attrs):
        if tag == "br":
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.out.append("\n\n")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    try:
        parser.feed(html[:MAX_HTML_IN])
        parser.close()
    except Exception:  # HTMLParser is lenient; this is belt and braces
        return one_line(unescape(re.sub(r"<[^>]+>", " ", html)))
    lines = [" ".join(line.replace("\xa0", " ").split()) for line in "".join(parser.out).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --- HTML sanitizing -------------------------------------------------------------------------


def _img_attrs(tag: str) -> dict[str, str]:
    return {m[1].lower(): m[2].strip("\"'") for m in ATTR.finditer(tag)}


def _is_remote(src: str) -> bool:
    src = unescape(src).strip().lower()
    return src.startswith(("http:", "https:", "//", "ftp:"))


def sanitize_html(html: str, content_ids: set[str]) -> tuple[str, dict]:
    """(safe HTML, counts). Counts: remote images blocked, of which tracking pixels (tiny or
    hidden), and inline cid: images shown from attachments."""
    html = html[:MAX_HTML_IN]
    blocked = tracking = inline = 0
    for tag in IMG_TAG.findall(html):
        attrs = _img_attrs(tag)
        src = attrs.get("src", "")
        if _is_remote(src):
            blocked += 1
            size = {attrs.get("width", "").strip("px "), attrs.get("height", "").strip("px ")}
            style = attrs.get("style", "").replace(" ", "").lower()
            if size & {"0", "1"} or "display:none" in style or "width:1px" in style or "height:1px" in style:
                tracking += 1
        elif src.lower().startswith("cid:") and _cid(src) in content_ids:
            inline += 1

    def attached(src: str) -> bool:
        # Remote (tracking), data: and unknown cid: images are not loaded.
        return src.lower().startswith("cid:") and _cid(src) in content_ids

    try:
        safe = sanitize_import(html, image_src=attached)
    except Exception:  # pragma: no cover - nh3 does not raise on input, only on bad options
        safe = ""
    counts = {"remote_images_blocked": blocked, "tracking_pixels": tracking, "inline_images": inline}
    return clean_text(safe), counts


def _cid(src: str) -> str:
    return unquote(src[4:]).strip().strip("<>").lower()


# --- reply / signature stripping -------------------------------------------------------------

QUOTE_INTRO = re.compile(
    r"^\s*(On\b.{0,300}\bwrote\s*:|Am\b.{0,300}\bschrieb.{0,60}:|Le\b.{0,300}\ba\s+écrit\s*:"
    r"|El\b.{0,300}\bescribió\s*:|Op\b.{0,300}\bschreef.{0,60}:|Den\b.{0,300}\bskrev.{0,60}:"
    r"|Il\b.{0,300}\bha\s+scritto\s*:|Em\b.{0,300}\bescreveu\s*:"
    r"|-{2,}\s*(Original Message|Ursprüngliche Nachricht|Message d'origine|Forwarded message)\s*-{2,}.*"
    r"|Begin forwarded message\s*:)\s*$",
    re.I,
)
OUTLOOK_HEADER = re.compile(r"^\s*\**(From|Von|De|Från|Fra|Da|Van)\s*:\**\s", re.I)
OUTLOOK_NEXT = re.compile(r"^\s*\**(Sent|Gesendet|Envoyé|Skickat|Sendt|Inviato|Date|Datum|To|An|À|Subject|Betreff|Objet)\s*:", re.I)
SIGNATURE = re.compile(
    r"^\s*(--\s*|__+|Sent from my .{1,40}|Sent from (Mail|Outlook|Yahoo Mail).{0,40}|Get Outlook for .{1,20}"
    r"|Von meinem .{1,40} gesendet|Envoyé de mon .{1,40})\s*$",
    re.I,
)


def reply_part(text: str) -> str:
    """The new part of a message: text above the first quote, forward header or signature."""
    lines = text.splitlines()
    end = len(lines)
    for i, line in enumerate(lines):
        if line.lstrip().startswith(">"):
            end = i
            break
        if SIGNATURE.match(line) and (line.strip() in ("--", "-- ") or i > 0 or len(lines) > 1):
            end = i
            break
        if QUOTE_INTRO.match(line) or (i + 1 < len(lines) and line.strip().lower().startswith(("on ", "am ", "le ")) and QUOTE_INTRO.match(line + " " + lines[i + 1])):
            end = i
            break
        if OUTLOOK_HEADER.match(line) and any(OUTLOOK_NEXT.match(n) for n in lines[i + 1 : i + 5]):
            end = i
            break
    return "\n".join(lines[:end]).strip()


def snippet(text: str) -> str:
    new = reply_part(text)
    return one_line(new or text)[:SNIPPET]


# --- attachments -----------------------------------------------------------------------------


def leaf_parts(msg: Message):
    """Leaf parts in order, not descending into attached messages (message/rfc822 is one leaf)."""
    stack = [msg]
    while stack:
        part = stack.pop(0)
        ctype = part.get_content_type()
        if ctype.startswith("multipart/") and isinstance(part.get_payload(), list):
            stack[0:0] = list(part.get_payload())
        else:
            yield part


def _attached_message(part: Message) -> Message | None:
    inner = part.get_payload()
    inner = inner[0] if isinstance(inner, list) and inner else inner
    return inner if isinstance(inner, Message) else None


def attachment_bytes(part: Message) -> bytes:
    """An attachment's content: the decoded bytes, or an attached message as RFC 822 bytes."""
    if not part.get_content_type().startswith("message/"):
        return part_bytes(part)
    inner = _attached_message(part)
    try:
        return inner.as_bytes() if inner is not None else b""
    except Exception:  # a message the parser read but cannot write back
        return b""


def attachment_meta(part: Message) -> dict:
    ctype = part.get_content_type()
    try:
        name = part.get_filename() or ""
    except Exception:
        name = ""
    name = decode_header(name) if name else ""
    size = len(attachment_bytes(part))
    inner = _attached_message(part) if ctype == "message/rfc822" else None
    if not name and inner is not None:
        name = (decode_header(inner.get("subject", "")) or "message") + ".eml"
    cid = part.get("content-id", "")
    cid = decode_header(str(cid)).strip().strip("<>") if cid else ""
    disposition = (part.get_content_disposition() or "").lower()
    if not name and ctype == "text/calendar":
        name = "invite.ics"
    return {
        "name": name[:255],
        "type": ctype,
        "size": size,
        "content_id": cid[:255],
        "inline": disposition == "inline" or (bool(cid) and disposition != "attachment"),
    }

