"""Header decoding that never raises: RFC 2047 encoded words, raw 8-bit bytes, wrong or unknown
charsets, addresses and dates as real mail has them.

The parser keeps header values as the ``email`` package stores them (``Message.raw_items()``:
ASCII text with undecodable bytes as surrogate escapes), and everything here turns those into
clean ``str``: valid UTF-8 bytes are read as UTF-8, anything else as the declared charset or
Windows-1252, with replacement characters rather than an exception.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import datetime as dt
import re
from email.utils import getaddresses, parsedate_tz

from connectors.text import clean_text

ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
QP_BYTE = re.compile(rb"=([0-9A-Fa-f]{2})")
FOLD = re.compile(r"\r?\n(?=[ \t])")
MSGID = re.compile(r"<([^<>\s]{1,998})>")
# Charsets mail declares that Python does not know under that name (or knows a better superset of).
CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874", "x-sjis": "shift_jis", "ks_c_5601": "cp949", "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8", "x-unknown": "", "unknown-8bit": "", "unknown": "", "us-ascii": "ascii",
    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252",  # what senders mean (WHATWG)
}
MIN_DATE = dt.datetime(1980, 1, 1, tzinfo=dt.UTC)
ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def charset_name(charset: str | None) -> str:
    """A Python codec name for a declared charset, or "" when it is unknown or meaningless."""
    if not charset:
        return ""
    name = charset.strip().strip("\"'").split("*")[0].lower()
    name = CHARSET_ALIASES.get(name, name)
    if not name:
        return ""
    try:
        return codecs.lookup(name).name
    except LookupError:
        return ""


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Bytes of text in a declared (possibly wrong) charset, decoded without failing.

    Non-ASCII bytes that form valid UTF-8 are UTF-8 whatever the declaration says (the most
    common wrong declaration by far); otherwise the declared charset, else Windows-1252."""
    if not data:
        return ""
    if data.isascii():
        name = charset_name(charset)
        if name in ("utf-7", "iso2022_jp", "iso2022_jp_2", "iso2022_kr", "hz"):
            try:
                return data.decode(name)
            except (UnicodeDecodeError, LookupError):
                pass
        return data.decode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    name = charset_name(charset)
    if name and name not in ("utf-8", "ascii"):
        try:
            return data.decode(name)
        except (UnicodeDecodeError, LookupError):
            pass
    return data.decode("cp1252", errors="replace")


def fix_8bit(value: str, charset: str | None = None) -> str:
    """Header text with raw 8-bit bytes (surrogate escapes from the parser) decoded."""
    if value.isascii() or not ESCAPED_BYTE.search(value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    return decode_bytes(data, charset)


def _word_bytes(encoding: str, text: str) -> bytes:
    if encoding in "qQ":
        data = text.replace("_", " ").encode("latin-1", "replace")
        return QP_BYTE.sub(lambda m: bytes([int(m[1], 16)]), data)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return text.encode("latin-1", "replace")


def decode_header(value: str | None, charset: str | None = None) -> str:
    """An unstructured header value as text: unfolded, 8-bit bytes and RFC 2047 encoded words
    decoded (adjacent words in one charset joined before decoding, so a multi-byte character
    split across two words survives). Never raises."""
    if not value:
        return ""
    value = FOLD.sub("", fix_8bit(str(value), charset))
    out: list[str] = []
    pending = bytearray()
    pending_cs = ""
    pos = 0

    def flush():
        nonlocal pending, pending_cs
        if pending:
            out.append(decode_bytes(bytes(pending), pending_cs))
        pending = bytearray()
        pending_cs = ""

    for m in ENCODED_WORD.finditer(value):
        between = value[pos : m.start()]
        if between and not (pending and between.isspace()):
            flush()
            out.append(between)
        cs = m[1].split("*")[0]
        if pending and cs.lower() != pending_cs.lower():
            flush()
        pending += _word_bytes(m[2], m[3])
        pending_cs = cs
        pos = m.end()
    flush()
    out.append(value[pos:])
    return clean_text("".join(out)).strip()


def one_line(value: str) -> str:
    return " ".join(value.split())


def _is_address(addr: str) -> bool:
    if addr.count("@") != 1 or any(c.isspace() or c in "<>(),;:\"" for c in addr):
        return False
    local, domain = addr.split("@")
    return bool(local) and ("." in domain.strip(".") or domain.lower() == "localhost")


def parse_addresses(values: list[str], charset: str | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """[(display name, bare address)] from address header values, and the parts that could not
    be read as an address (kept by the caller, never fatal)."""
    found: list[tuple[str, str]] = []
    bad: list[str] = []
    for raw in values:
        value = FOLD.sub("", fix_8bit(str(raw), charset)).strip()
        if not value:
            continue
        try:
            pairs = getaddresses([value])
        except Exception:  # pragma: no cover - getaddresses is tolerant, but real mail is not
            pairs = []
        got_any = False
        for name, addr in pairs:
            addr = addr.strip().strip("<>").strip()
            if not addr and not name:
                continue
            if _is_address(addr):
                found.append((one_line(decode_header(name, charset)), clean_text(addr)))
                got_any = True
            else:
                bad.append(clean_text(one_line(decode_header(f"{name} <{addr}>" if name else addr, charset)))[:320])
        if not got_any and not pairs and not re.fullmatch(r"[^:]*:\s*;?", value):
            bad.append(clean_text(one_line(value))[:320])
    return found, bad


def parse_date(value: str | None) -> dt.datetime | None:
    """An RFC 5322 date (with the usual sins: no zone, two-digit year, junk after) as aware UTC."""
    if not value:
        return None
    value = one_line(fix_8bit(str(value)))
    try:
        parts = parsedate_tz(value)
    except Exception:
        parts = None
    if parts is None:
        # "Mon, 3 Jun 2024 10:00:00 +0200 (CEST)" parses; ISO 8601 from broken clients too.
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return when.replace(tzinfo=when.tzinfo or dt.UTC).astimezone(dt.UTC)
    *fields, offset = parts
    try:
        year, month, day, hour, minute, second = fields[:6]
        when = dt.datetime(year, month, day, hour, minute, min(second, 59), tzinfo=dt.UTC)
        if offset:
            when -= dt.timedelta(seconds=offset)
    except (ValueError, OverflowError, TypeError):
        return None
    return when


def message_ids(value: str | None) -> list[str]:
    """The <ids> in a Message-ID / In-Reply-To / References value (bare tokens if unbracketed)."""
    if not value:
        return []
    value = FOLD.sub("", fix_8bit(str(value)))
    ids = MSGID.findall(value)
    if not ids:
        ids = [t for t in value.replace(",", " ").split() if "@" in t]
    return [clean_text(i.strip()) for i in ids if i.strip()]
