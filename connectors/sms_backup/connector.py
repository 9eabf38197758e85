"""Android "SMS Backup & Restore" exports: ``mesh_import sms_backup FILE.xml``.

The file is ``<smses>`` holding ``<sms>`` (``type`` 1 received, 2 sent, 3 draft, 4 outbox,
5 failed, 6 queued; ``date`` in epoch milliseconds; ``address`` the other party) and ``<mms>``
(``msg_box`` 1 received / 2 sent, ``<parts>`` with text and media, ``<addrs>`` with every
participant of a group message: type 137 from, 151 to, 130 cc, 129 bcc).

It is read with defusedxml's ``iterparse`` (ElementTree's, refusing entity declarations, so a
"billion laughs" file cannot expand) and each message element is cleared once handed on, so
memory stays flat however big the export; media bodies (base64 ``data``) are
never kept, only their type, name and size. The app writes emoji as pairs of UTF-16 surrogate
character references (``&#55357;&#56832;``), which XML forbids: a streaming filter joins
each pair into one character before the parser sees it (a lone surrogate becomes U+FFFD).

Identity of a message: a backup carries no message id, so the key is a hash of what the
message is (kind, box, time in ms, the normalized addresses, the text): the same export or an
overlapping later one imports nothing twice. A message also seen through Twilio is one
activity only when the backup proves it, i.e. the element carries the Twilio Message SID
(``twilio_sid``, or an ``m_id`` that is one); then its key is ``sms:<SID>``. Otherwise it
stays a separate activity marked ``extra["origin"] = "sms_backup"``: times differ between a
phone's clock and Twilio's, and two identical short texts ("ok") in one minute are common, so
any fuzzy match would sooner or later merge two real messages into one, losing one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from connectors.base import (
    ActivityDraft,
    BadItem,
    Batch,
    ConfigError,
    Connector,
    ConnectorError,
    ParticipantDraft,
    RawItem,
)
from connectors.phone import e164

SID_RE = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
SMS_BOXES = {"1": "in", "2": "out", "3": "out", "4": "out", "5": "out", "6": "out"}
SMS_STATES = {"1": "received", "2": "sent", "3": "draft", "4": "queued", "5": "failed", "6": "queued"}
MMS_ROLES = {"137": "from", "151": "to", "130": "cc", "129": "bcc"}
NULL = {"", "null"}
MAX_TEXT = 100_000


@dataclass(frozen=True)
class SmsBackupConfig:
    path: str = ""
    numbers: str = ""  # the phone's own numbers (comma list): the "me" side of group messages
    batch_size: int = 1000  # fewer, bigger transactions: imports run at thousands of messages/s

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError("batch_size must be positive")


class SurrogateFixer:
    """A binary file wrapper that rewrites surrogate-pair character references into the
    character they encode, chunk by chunk (a reference cut by a chunk boundary waits for the
    next chunk)."""

    REF = re.compile(rb"&#(x[0-9a-fA-F]{1,6}|[0-9]{1,7});")
    PAIR = re.compile(rb"&#(x[dD][89abAB][0-9a-fA-F]{2}|55[3-9][0-9]{2}|56[0-2][0-9]{2}|563[0-1][0-9]);"
                      rb"&#(x[dD][c-fC-F][0-9a-fA-F]{2}|56[3-9][0-9]{2}|57[0-2][0-9]{2}|573[0-3][0-9]);")

    def __init__(self, fh, chunk: int = 1 << 18):
        self.fh = fh
        self.chunk = chunk
        self.pending = b""

    @staticmethod
    def _value(text: bytes) -> int:
        return int(text[1:], 16) if text[:1] in (b"x", b"X") else int(text)

    def _fix(self, data: bytes) -> bytes:
        def pair(m):
            hi, lo = self._value(m.group(1)), self._value(m.group(2))
            if 0xD800 <= hi <= 0xDBFF and 0xDC00 <= lo <= 0xDFFF:
                return b"&#%d;" % (0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
            return m.group(0)

        def lone(m):
            v = self._value(m.group(1))
            ok = v in (0x9, 0xA, 0xD) or 0x20 <= v <= 0xD7FF or 0xE000 <= v <= 0xFFFD or 0x10000 <= v <= 0x10FFFF
            return m.group(0) if ok else b"&#65533;"

        return self.REF.sub(lone, self.PAIR.sub(pair, data))

    REF_AT_END = re.compile(rb"&#(x[0-9a-fA-F]{1,6}|[0-9]{1,7});$")

    def _holdback(self, data: bytes) -> int:
        """How many bytes at the end of ``data`` must wait for the next chunk: a reference cut
        in two, or a complete high surrogate whose low half may be in the next chunk."""
        end = len(data)
        cut = data.rfind(b"&", max(0, end - 40))
        if cut != -1 and b";" not in data[cut:]:
            end = cut
        m = self.REF_AT_END.search(data, max(0, end - 12), end)
        if m and 0xD800 <= self._value(m.group(1)) <= 0xDBFF:
            end = m.start()
        return len(data) - end

    def read(self, size: int = -1) -> bytes:
        while True:
            chunk = self.fh.read(self.chunk)
            data = self.pending + chunk
            if not chunk:
                self.pending = b""
                return self._fix(data)
            keep = self._holdback(data)
            self.pending = data[len(data) - keep:] if keep else b""
            if keep:
                data = data[: len(data) - keep]
            if data:
                return self._fix(data)


class SmsBackupConnector(Connector):
    key = "sms_backup"
    label = "SMS Backup & Restore (Android) export"
    channel = "sms"
    Config = SmsBackupConfig
    importable = True

    def fetch(self, cursor, *, since=None) -> Iterator[Batch]:
        """Stream the file's messages in batches. The cursor is the number of message elements
        handed on, so a crash resumes after the last stored batch (re-reading, not re-storing,
        what came before)."""
        if not self.config.path:
            raise ConfigError("no path: use mesh_import sms_backup FILE.xml")
        path = Path(self.config.path)
        if not path.exists():
            raise ConfigError(f"no such file: {path}")
        skip = int((cursor or {}).get("n", 0))
        n = 0
        items: list[RawItem] = []
        with path.open("rb") as fh:
            parser = iterparse(SurrogateFixer(fh), events=("start", "end"))
            root = None
            depth = 0
            try:
                for event, elem in parser:
                    if event == "start":
                        depth += 1
                        if root is None:
                            root = elem
                            if root.tag != "smses":
                                raise _not_a_backup(path, f"its root element is <{root.tag}>, not <smses>")
                        continue
                    depth -= 1
                    if depth != 1 or elem.tag not in ("sms", "mms"):
                        if depth == 1:
                            elem.clear()
                        continue
                    n += 1
                    if n > skip:
                        items.append(self._raw(elem, n))
                    elem.clear()
                    root.clear()  # drop the references the root keeps to finished children
                    if len(items) >= self.config.batch_size:
                        yield Batch(items, {"n": n})
                        items = []
            except DefusedXmlException as exc:
                raise _not_a_backup(path, f"it declares XML entities or a DTD ({type(exc).__name__})") from None
            except ET.ParseError as exc:
                if root is None:  # not even a root element: some other kind of file
                    raise _not_a_backup(path, f"XML error {exc}") from None
                # A broken file: what came before imports, the break is a failure of its own.
                n += 1
                if n > skip:
                    line, col = exc.position
                    items.append(RawItem(f"parse-error@{line}:{col}", {"_error": f"XML error: {exc}"}))
        yield Batch(items, {"n": n})

    def _raw(self, elem, n: int) -> RawItem:
        payload: dict = {"kind": elem.tag, **elem.attrib}
        if elem.tag == "mms":
            payload["parts"] = [_part(p.attrib) for p in elem.iterfind("parts/part")]
            payload["addrs"] = [dict(a.attrib) for a in elem.iterfind("addrs/addr")]
        try:
            key = self._key(payload)
        except BadItem as exc:
            payload["_error"] = exc.reason
            key = f"element-{n}"
        return RawItem(key, payload)

    # -- identity of a message ------------------------------------------------------------------
    def _sid(self, payload: dict) -> str:
        for name in ("twilio_sid", "m_id"):
            value = (payload.get(name) or "").strip().strip("<>")
            if SID_RE.match(value):
                return value
        return ""

    def _key(self, payload: dict) -> str:
        sid = self._sid(payload)
        if sid:
            return sid
        date = _date(payload.get("date"))
        box = payload.get("type") if payload["kind"] == "sms" else payload.get("msg_box")
        region = self.context.get("region", "US")
        addresses = sorted(e164(a, region) for a in _addresses(payload) if a)
        text = _text(payload)
        digest = hashlib.sha256(
            "\x1f".join([payload["kind"], str(box), str(int(date.timestamp() * 1000)), *addresses, "", text]).encode()
        ).hexdigest()[:32]
        return f"{payload['kind']}-{digest}"

    # -- normalize ------------------------------------------------------------------------------
    def _own_numbers(self, region: str) -> frozenset[str]:
        """The owner's numbers (config and the workspace's self identities), once per import."""
        cached = getattr(self, "_own_cache", None)
        if cached is None or cached[0] != region:
            own = {e164(n, region) for n in self.config.numbers.split(",") if n.strip()}
            own |= {s.split(":", 1)[1] for s in self.context.get("self_identities") or () if s.startswith("phone:")}
            cached = self._own_cache = (region, frozenset(own))
        return cached[1]

    def normalize(self, raw: RawItem) -> ActivityDraft:
        p = raw.payload
        if not isinstance(p, dict):
            raise BadItem("not an element")
        if "_error" in p:  # the parser's reason (ingest records a blank one as "no reason given")
            raise BadItem(str(p["_error"] or ""))
        kind = p.get("kind")
        if kind not in ("sms", "mms"):
            raise BadItem(f"unknown element {kind!r}")
        occurred = _date(p.get("date"))
        region = self.context.get("region", "US")
        own = self._own_numbers(region)
        if kind == "sms":
            box = str(p.get("type", ""))
            direction = SMS_BOXES.get(box)
            if direction is None:
                raise BadItem(f"unknown sms type {box!r}")
            address = _clean(p.get("address"))
            if not address:
                raise BadItem("sms without address")
            name = _name(p.get("contact_name"))
            participants = [ParticipantDraft("from" if direction == "in" else "to", "phone", address, name)]
            others = [address]
            state = SMS_STATES[box]
            attachments: list[dict] = []
        else:
            box = str(p.get("msg_box", ""))
            direction = {"1": "in", "2": "out", "4": "out"}.get(box)
            if direction is None:
                raise BadItem(f"unknown mms msg_box {box!r}")
            participants = []
            others = []
            addrs = p.get("addrs") or []
            if not addrs:
                addrs = [{"address": a, "type": "137" if direction == "in" else "151"} for a in _split(p.get("address"))]
            for a in addrs:
                address = _clean(a.get("address"))
                role = MMS_ROLES.get(str(a.get("type")), "to")
                if not address or address == "insert-address-token":
                    continue
                if (role == "from" and direction == "out") or e164(address, region) in own:
                    continue  # the owner's own number: the self side, known from the box
                others.append(address)
                participants.append(ParticipantDraft(role, "phone", address))
            # contact_name lists the other people, in address order, when the app knew them all.
            names = [n.strip() for n in _name(p.get("contact_name")).split(",")]
            if len(names) == len(participants):
                for participant, name in zip(participants, names, strict=True):
                    participant.display = _name(name)
            if not others:
                raise BadItem("mms without any other participant")
            state = "received" if direction == "in" else "sent"
            attachments = [
                {k: v for k, v in part.items() if k in ("name", "mediaType", "size")}
                for part in p.get("parts") or [] if part.get("mediaType") not in ("text/plain", "application/smil")
            ]
        sid = self._sid(p)
        thread = ",".join(sorted(e164(a, region) for a in others))
        extra = {"origin": "sms_backup", "delivery": {"state": state, "error_code": None,
                                                     "updated_at": occurred.isoformat()}}
        if kind == "mms" and len(others) > 1:
            extra["group"] = True
        return ActivityDraft(
            channel="sms",
            verb="receive" if direction == "in" else ("draft" if state == "draft" else "send"),
            direction=direction,
            occurred_at=occurred,
            dedup_key=f"sms:{sid}" if sid else f"smsbackup:{raw.external_id}",
            text=_text(p),
            thread_key=f"sms:{thread}"[:255],
            participants=participants,
            attachments=attachments,
            extra=extra,
        )


def _not_a_backup(path: Path, why: str) -> ConnectorError:
    return ConnectorError(f"{path.name} is not an SMS Backup & Restore file: {why}", permanent=True)


def _clean(value) -> str:
    value = (value or "").strip()
    return "" if value in NULL else value


def _name(value) -> str:
    value = _clean(value)
    return "" if value in ("(Unknown)", "Unknown") else value


def _split(value) -> list[str]:
    return [a.strip() for a in re.split(r"[~,]", _clean(value)) if a.strip()]


def _addresses(p: dict) -> list[str]:
    if p["kind"] == "mms" and p.get("addrs"):
        return [_clean(a.get("address")) for a in p["addrs"]]
    return _split(p.get("address"))


def _date(value) -> dt.datetime:
    try:
        ms = int(str(value).strip())
    except (TypeError, ValueError):
        raise BadItem(f"date is not epoch milliseconds: {value!r}") from None
    if not 0 < ms < 10**14:
        raise BadItem(f"date out of range: {value!r}")
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _text(p: dict) -> str:
    if p["kind"] == "sms":
        body = p.get("body")
        return "" if body is None or body == "null" else body[:MAX_TEXT]
    texts = [part.get("text", "") for part in p.get("parts") or [] if part.get("mediaType") == "text/plain"]
    return "\n".join(t for t in texts if t)[:MAX_TEXT]


def _part(attrib: dict) -> dict:
    ct = _clean(attrib.get("ct"))
    part = {"mediaType": ct, "name": _clean(attrib.get("name")) or _clean(attrib.get("fn")) or _clean(attrib.get("cl"))}
    if ct == "text/plain":
        part["text"] = attrib.get("text", "")
    data = attrib.get("data")
    if data:
        part["size"] = len(data) * 3 // 4  # base64; the bytes themselves are not kept
    return part

