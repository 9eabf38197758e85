"""One normalizer for every email Mesh sees (IMAP, mbox, .eml, Google Takeout).

``email_draft(data, meta=..., self_addresses=...)`` turns RFC 822 bytes into an ActivityDraft.
It is pure (same bytes and meta, same draft), so ``mesh_reprocess`` can re-run it on stored
messages, and it does not fail on messy mail: undecodable bytes are replaced, unreadable
addresses are kept in ``extra``, a message without headers imports with what the mailbox
knows of it (its arrival time) and the gap in ``extra["missing_headers"]``. Only bytes that
hold no message at all (empty, whitespace, binary data) raise BadItem.
"""

from __future__ import annotations

import datetime as dt
import email
import functools
import hashlib
import re
from email import policy
from email.headerregistry import HeaderRegistry
from email.message import Message

from connectors.base import ActivityDraft, Attachment, BadItem, ParticipantDraft
from connectors.text import clean_text
from connectors.times import parse_time

from . import body as B
from .automated import automated_reasons
from .headers import (
    MIN_DATE,
    decode_header,
    message_ids,
    one_line,
    parse_addresses,
    parse_date,
)

SUBJECT_PREFIX = re.compile(
    r"^\s*((re|fwd?|aw|wg|sv|vs|antw|rif|tr|r|ref|odp|enc|res|vl)(\s*\[\d+\]|\(\d+\))?\s*[:：]\s*|\[[^\]]{1,40}\]\s*)+",
    re.I,
)
ADDRESS_ROLES = (("from", "from"), ("sender", "sender"), ("reply-to", "reply_to"), ("to", "to"), ("cc", "cc"),
                 ("bcc", "bcc"))
KEPT_HEADERS = ("list-id", "list-unsubscribe", "auto-submitted", "precedence", "return-path", "x-autoreply",
                "x-autorespond", "x-autoresponse", "x-gmail-labels", "x-mailer", "user-agent")
FUTURE_SLACK = dt.timedelta(days=2)
KNOWN_HEADERS = {"from", "to", "date", "subject", "message-id", "received", "cc", "sender", "references"}
# What identifies a mail to a reader; those a message lacks are listed in extra["missing_headers"].
IDENTIFYING_HEADERS = ("from", "to", "date", "subject", "message-id")
# "Name: value" or "Name : value" (obsolete syntax), and folded continuation lines.
HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
# mbox writers quote body lines starting "From " with one ">" (mboxo) or one more ">" (mboxrd),
# and readers undo it differently: every copy agrees once all of them are stripped.
QUOTED_FROM = re.compile(rb"^>*From ")
# Bytes that never occur in text (C0 controls other than tab, LF, FF, CR and ESC, which
# ISO-2022 text uses; DEL). Text is bytes outside these, whatever the charset.
BINARY_BYTES = bytes([*range(0, 9), 11, *range(14, 27), *range(28, 32), 127])
TEXT_BYTES = bytes(sorted(set(range(256)) - set(BINARY_BYTES)))
TEXT_SNIFF_BYTES = 64 * 1024


class _CachingHeaderRegistry(HeaderRegistry):
    """policy.default's header parsing, memoized: MIME walking asks for Content-Type again and
    again, and most values repeat across messages ("text/plain; charset=utf-8"). Parsed headers
    are immutable, so sharing them is safe."""

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one registry for the process
    def __call__(self, name, value):
        return super().__call__(name, value)


POLICY = policy.default.clone(header_factory=_CachingHeaderRegistry())


def thread_subject(subject: str) -> str:
    """The subject without Re:/Fwd:/AW:/SV:/[list] prefixes, for grouping in the display."""
    return SUBJECT_PREFIX.sub("", subject).strip()


def _iso(value) -> dt.datetime | None:
    """A stored arrival time: ISO text as Mesh writes it, else a mail-style date."""
    if not value:
        return None
    try:
        return parse_time(value, epoch=False, assume_utc=True)
    except ValueError:
        return parse_date(str(value))


def _sane(when: dt.datetime | None, reference: dt.datetime) -> bool:
    return when is not None and MIN_DATE <= when <= reference + FUTURE_SLACK


def _occurred_at(date_header: str, received: list[str], meta: dict) -> tuple[dt.datetime, str]:
    """Date header; else the server's INTERNALDATE; else the newest Received; else the mbox
    "From " line date; else the file's time. "Else" includes a Date that is absurd (before
    1980, or days after the message reached the server)."""
    internal = _iso(meta.get("internaldate"))
    received_dates = [d for d in (parse_date(r.rpartition(";")[2]) for r in received) if d]
    newest_received = max(received_dates) if received_dates else None
    mbox_date = _iso(meta.get("mbox_date"))
    mtime = _iso(meta.get("mtime"))
    # Only the server's arrival times say a Date is "too late"; an mbox "From " line or a file
    # time may be from an export long after (or, when rewritten, before) the mail was sent.
    reference = internal or newest_received or dt.datetime.now(dt.UTC)
    date = parse_date(date_header)
    if _sane(date, reference):
        return date, "date"
    for when, name in ((internal, "internaldate"), (newest_received, "received"), (mbox_date, "mbox"), (mtime, "file")):
        if _sane(when, reference):
            return when, name
    if date is not None and date >= MIN_DATE:
        return date, "date"
    raise BadItem("no usable date: Date header missing or absurd and no arrival time known")


def _headers(msg: Message, charset: str | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        out.setdefault(str(name).strip().lower(), []).append(value)
    return out


def _charset_hint(msg: Message) -> str | None:
    try:
        value = msg.get_param("charset")
    except Exception:
        return None
    return value if isinstance(value, str) else None


def _dedup_key(message_id: str, hdr: dict[str, list[str]], subject: str, date_header: str, data: bytes) -> str:
    if message_id and len(message_id) <= 240:
        return f"email:{message_id}"
    if message_id:
        return "email:sha256:" + hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()
    # No Message-ID: a hash of what identifies the mail in every copy of it. The addressing
    # headers and the body, not the transport headers (Received, Return-Path, X-*, mbox Status)
    # that differ between the INBOX, Sent and mbox copies. The body is in it because scripts
    # send mail with the same headers and no Date: only the content tells those apart.
    parts = [one_line(decode_header(v)) for name in ("from", "to", "cc", "in-reply-to", "references")
             for v in hdr.get(name, [])]
    parts += [subject, one_line(date_header), content_digest(data)]
    return "email:content:" + hashlib.sha256("\n".join(parts).encode("utf-8", "replace")).hexdigest()[:48]


def content_digest(data: bytes) -> str:
    """SHA-256 of a message's body as every copy of it has it: line endings, trailing
    whitespace, leading and trailing blank lines and mbox ``>From `` quoting do not count."""
    lines = data.splitlines()
    start = 1 if lines and lines[0].startswith(b"From ") else 0  # an mbox separator left in
    end_of_headers = start
    for i in range(start, len(lines)):
        line = lines[i]
        if not line.strip():
            end_of_headers = i + 1
            break
        if not (HEADER_LINE.match(line) or (i > start and line[:1] in b" \t")):
            end_of_headers = i  # no blank line: the parser starts the body here too
            break
    else:
        end_of_headers = len(lines)
    digest = hashlib.sha256()
    pending_blank = 0
    started = False
    for line in lines[end_of_headers:]:
        line = QUOTED_FROM.sub(b"From ", line.rstrip())
        if not line:
            pending_blank += started
            continue
        digest.update(b"\n" * pending_blank + line + b"\n")
        pending_blank, started = 0, True
    return digest.hexdigest()


def holds_text(data: bytes) -> bool:
    """Whether ``data`` reads as text in some charset (binary data has NUL and other controls)."""
    sample = data[:TEXT_SNIFF_BYTES]
    return len(sample.translate(None, TEXT_BYTES)) * 100 <= len(sample)


def _calendar(text: str) -> dict:
    unfolded = re.sub(r"\r?\n[ \t]", "", text)
    info: dict[str, str] = {}
    in_event = False
    for line in unfolded.splitlines():
        key, _, value = line.partition(":")
        name = key.split(";")[0].upper()
        if name == "METHOD" and not in_event:
            info["method"] = value.strip()
        elif line.upper().startswith("BEGIN:VEVENT"):
            in_event = True
        elif line.upper().startswith("END:VEVENT"):
            break
        elif in_event and name in ("SUMMARY", "DTSTART", "DTEND", "UID", "LOCATION", "ORGANIZER") and name.lower() not in info:
            info[name.lower()] = value.strip().replace("\\,", ",").replace("\\n", " ")[:500]
    return info


def _dsn(part: Message) -> dict:
    blocks = part.get_payload()
    info: dict[str, str] = {}
    if not isinstance(blocks, list):
        return info
    for block in blocks:
        if not isinstance(block, Message):
            continue
        for name in ("action", "status", "final-recipient", "diagnostic-code", "reporting-mta"):
            value = block.get(name)
            if value and name.replace("-", "_") not in info:
                info[name.replace("-", "_")] = one_line(decode_header(str(value)))[:500]
    return info


def _norm_addr(addr: str) -> str:
    return addr.strip().casefold()


def parse_message(data: bytes) -> tuple[Message, dict[str, list[str]]]:
    """The parsed message and its headers by lower-case name; BadItem for bytes that hold no
    message."""
    if not data or not data.strip():
        raise BadItem("empty message")
    try:
        msg = email.message_from_bytes(data, policy=POLICY)
    except Exception as exc:  # the parser is lenient; this is the last resort
        raise BadItem(f"cannot parse message: {type(exc).__name__}: {exc}") from None
    hdr = _headers(msg, None)
    if not KNOWN_HEADERS & set(hdr):
        # A stray first line (an mbox "From " separator left in an .eml file, a garbled
        # line) makes the parser take everything for the body: try once without it.
        first_line, _, rest = data.lstrip(b"\r\n").partition(b"\n")
        if rest and (first_line.startswith(b"From ") or b":" not in first_line):
            retry = email.message_from_bytes(rest, policy=POLICY)
            if KNOWN_HEADERS & set(_headers(retry, None)):
                msg, hdr = retry, _headers(retry, None)
    if not KNOWN_HEADERS & set(hdr) and not holds_text(data):
        raise BadItem("not an email message: binary data with no mail headers")
    return msg, hdr


def body_parts(msg: Message) -> tuple[Message | None, Message | None]:
    """The parts shown as the message (plain text, HTML), either None when there is none."""
    try:
        plain_part = msg.get_body(preferencelist=("plain",))
    except Exception:
        plain_part = None
    try:
        html_part = msg.get_body(preferencelist=("html",))
    except Exception:
        html_part = None
    if plain_part is None and html_part is None and not msg.is_multipart() and msg.get_content_maintype() == "text":
        if msg.get_content_subtype() == "html":
            html_part = msg
        else:
            plain_part = msg
    return plain_part, html_part


def attachment_parts(msg: Message, plain_part: Message | None, html_part: Message | None) -> list[Message]:
    """The parts listed as the draft's ``attachments``, in its order: every leaf but the body
    and a report's human-readable parts."""
    report = msg.get_content_type() == "multipart/report"
    return [
        part for part in B.leaf_parts(msg)
        if part is not plain_part and part is not html_part
        and not (report and part.get_content_type() in ("text/plain", "text/rfc822-headers") and not part.get_filename())
    ]


def message_attachment(data: bytes, index: int) -> Attachment:
    """Attachment ``index`` of a message (``attachment_parts`` order) with its content; IndexError
    when there is no such attachment, BadItem when the bytes hold no readable message."""
    msg, _hdr = parse_message(data)
    try:
        parts = attachment_parts(msg, *body_parts(msg))
    except Exception as exc:  # a structure the parser accepted but cannot walk
        raise BadItem(f"cannot read the message's parts: {type(exc).__name__}") from None
    if not 0 <= index < len(parts):
        raise IndexError(f"the message has {len(parts)} attachment(s), not {index + 1}")
    part = parts[index]
    meta = B.attachment_meta(part)
    return Attachment(filename=meta["name"], content_type=meta["type"], data=B.attachment_bytes(part))


def email_draft(data: bytes, *, meta: dict | None = None, self_addresses: frozenset[str] | set[str] = frozenset()) -> ActivityDraft:
    meta = meta or {}
    msg, hdr = parse_message(data)
    charset = _charset_hint(msg)

    def first(name: str) -> str:
        values = hdr.get(name)
        return values[0] if values else ""

    subject = one_line(decode_header(first("subject"), charset))[:998]
    date_header = first("date")
    occurred_at, date_source = _occurred_at(date_header, hdr.get("received", []), meta)
    own_ids = message_ids(first("message-id"))
    message_id = own_ids[0] if own_ids else ""
    references = message_ids(" ".join(hdr.get("references", [])))
    in_reply_to = message_ids(first("in-reply-to"))
    root = references[0] if references else (in_reply_to[0] if in_reply_to else message_id)
    dedup_key = _dedup_key(message_id, hdr, subject, date_header, data)
    thread_key = f"email:{root}"[:255] if root else dedup_key

    participants: list[ParticipantDraft] = []
    unparseable: list[dict] = []
    from_addrs: list[str] = []
    for header, role in ADDRESS_ROLES:
        pairs, bad = parse_addresses(hdr.get(header, []), charset)
        for display, addr in pairs:
            if role in ("sender", "reply_to") and _norm_addr(addr) in {_norm_addr(a) for a in from_addrs}:
                continue  # the same as From: say it once
            participants.append(ParticipantDraft(role=role, kind="email", value=addr, display=display[:320]))
            if role == "from":
                from_addrs.append(addr)
        unparseable += [{"role": role, "value": b} for b in bad]

    # Body, HTML, attachments.
    text = html = ""
    plain_part, html_part = body_parts(msg)
    if plain_part is not None:
        text = B.part_text(plain_part)
    raw_html = B.part_text(html_part) if html_part is not None else ""

    attachments: list[dict] = []
    extra: dict = {}
    content_ids: set[str] = set()
    for part in attachment_parts(msg, plain_part, html_part):
        ctype = part.get_content_type()
        if ctype == "text/calendar" and "calendar" not in extra:
            extra["calendar"] = _calendar(B.part_text(part))
        if ctype == "message/delivery-status" and "dsn" not in extra:
            extra["dsn"] = _dsn(part)
        meta_a = B.attachment_meta(part)
        if meta_a["content_id"]:
            content_ids.add(meta_a["content_id"].lower())
        attachments.append(meta_a)

    if raw_html:
        html, counts = B.sanitize_html(raw_html, content_ids)
        extra.update({k: v for k, v in counts.items() if v})
        if not text.strip():
            text = B.html_to_text(raw_html)
    text = text.replace("\r\n", "\n")[: B.MAX_TEXT]

    sender = from_addrs[0] if from_addrs else ""
    first_values = {name: one_line(decode_header(first(name), charset)) for name in KEPT_HEADERS if hdr.get(name)}
    report_type = ""
    if msg.get_content_type() == "multipart/report":
        try:
            report_type = str(msg.get_param("report-type") or "").lower()
        except Exception:
            report_type = ""
    reasons = automated_reasons(first_values, sender=sender, content_type=msg.get_content_type(),
                                report_type=report_type, subject=subject)
    selves = {_norm_addr(a) for a in self_addresses}
    if sender:
        direction = "out" if _norm_addr(sender) in selves else "in"
    else:
        direction = None

    extra.update({
        "message_id": message_id,
        "snippet": B.snippet(text),
        "thread_subject": thread_subject(subject),
        "size": len(data),
    })
    if in_reply_to:
        extra["in_reply_to"] = in_reply_to[0]
    if references:
        extra["references"] = references[-50:]
    if date_source != "date":
        extra["date_source"] = date_source
        if date_header:
            extra["date_header"] = one_line(decode_header(date_header))[:200]
    if reasons:
        extra["automated_reasons"] = reasons
    missing = [name for name in IDENTIFYING_HEADERS if name not in hdr]
    if missing:
        extra["missing_headers"] = missing
    if first_values.get("list-id"):
        extra["list_id"] = first_values["list-id"][:320]
    if first_values.get("x-gmail-labels"):
        extra["labels"] = [label.strip() for label in first_values["x-gmail-labels"].split(",") if label.strip()]
    if unparseable:
        extra["unparseable_addresses"] = unparseable
    if msg.defects:
        extra["defects"] = sorted({type(d).__name__ for d in msg.defects})

    return ActivityDraft(
        channel="email",
        verb="send" if direction == "out" else "receive",
        occurred_at=occurred_at.astimezone(dt.UTC),
        dedup_key=dedup_key,
        direction=direction,
        subject=clean_text(subject),
        text=clean_text(text),
        html=html,
        thread_key=thread_key,
        participants=participants,
        attachments=attachments,
        automated=bool(reasons),
        extra=extra,
    )
