"""Mailbox files: ``mesh_import mbox PATH`` where PATH is an mbox file, a folder of ``.eml``
files (searched recursively), a single ``.eml``, or a Google Takeout archive (``.zip``,
``.tgz``/``.tar.gz``) whose ``.mbox`` files are read in place, without unpacking to disk.

Messages are streamed one at a time and normalized by the shared email normalizer, so a
message seen here and over IMAP is one activity (same Message-ID, same dedup key). The cursor
is (file, byte offset, message index) after the last stored batch, so a crash resumes after it.

Memory is bounded whatever the file holds: lines are read at most ``LINE_CHUNK`` bytes at a
time (a 400 MB line costs 64 KB), a message over ``MAX_MESSAGE_BYTES`` becomes an import
failure with its first bytes, and an archive member that would expand more than
``MAX_RATIO`` times its compressed size (a zip bomb) is not read.

A file that is not mail is refused plainly: a single file must look like an mbox (a "From "
line first) or one message (a header line first), else the import fails with "… is not an
mbox file"; in a folder, files that are not mail (images, ``.DS_Store``, JSON) are skipped and
counted in the cursor's ``skipped`` (shown by ``mesh_source show``), not made import failures:
they were never messages.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from connectors.base import Batch, ConfigError, Connector, ConnectorError, RawItem
from connectors.email_common import EmailNormalizer, pack
from connectors.email_common.headers import parse_date
from connectors.email_common.normalize import holds_text

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 50 * 1024 * 1024
LINE_CHUNK = 64 * 1024
# Mail compresses 3 to 20 times; a member expanding 200 times into more than 64 MB is a bomb.
MAX_RATIO = 200
RATIO_CHECKED_ABOVE = 64 * 1024 * 1024
SNIFF_BYTES = 4096
SKIPPED_NAMES_KEPT = 10
# A header line as mail writers write it (stricter than RFC 5322 on purpose: "{"a": 1}" is JSON).
HEADER_START = re.compile(rb"[A-Za-z0-9][A-Za-z0-9-]*[ \t]*:")
MAILDIR_FOLDERS = ("cur", "new")
# "From sender@example.com Mon Jan  1 00:00:00 2024" (mboxo/mboxrd); Takeout writes
# "From 1790345678901234567@xxx Mon Jan 01 00:00:00 +0000 2024".
FROM_LINE = re.compile(rb"^From \S+\s+(\w{3} \w{3}\s+\d{1,2} \d{1,2}:\d{2}(:\d{2})?( [+-]\d{4})?( \S+)? \d{4})\s*$")
ESCAPED_FROM = re.compile(rb"^>+From ")


@dataclass(frozen=True)
class MboxConfig:
    path: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    username: str = ""
    batch_size: int = 200
    max_batch_bytes: int = 32 * 1024 * 1024

    def __post_init__(self):
        if self.batch_size < 1 or self.max_batch_bytes < 1:
            raise ValueError("batch_size and max_batch_bytes must be positive")


def _mbox_date(from_line: bytes) -> str | None:
    m = FROM_LINE.match(from_line.rstrip(b"\r\n"))
    if not m:
        return None
    text = m[1].decode("ascii", "replace")
    parts = text.split()
    # asctime order: Mon Jan 1 00:00:00 [+0000] 2024 → "Mon, 1 Jan 2024 00:00:00 +0000"
    try:
        zone = next((p for p in parts[4:-1] if p[:1] in "+-"), "+0000")
        when = parse_date(f"{parts[0]}, {parts[2]} {parts[1]} {parts[-1]} {parts[3]} {zone}")
    except IndexError:
        return None
    return when.isoformat() if when else None


def read_mbox(fh: BinaryIO, offset: int = 0) -> Iterator[tuple[bytes, bytes, int]]:
    """(From line, message bytes, offset after the message) for each message from ``offset``.
    mboxrd ">From " quoting is undone; a message is split only at a "From " line that follows
    a blank line (or starts the file) or that looks like a full mbox separator.

    Lines are read in pieces of at most LINE_CHUNK bytes and a message keeps at most
    MAX_MESSAGE_BYTES (plus one piece), so no line or message, however long, is held whole."""
    fh.seek(offset)
    from_line = b""
    lines: list[bytes] = []
    size = 0
    prev_blank = True
    started = False
    at_line_start = True
    while True:
        line_start = fh.tell()
        piece = fh.readline(LINE_CHUNK)
        if not piece:
            break
        starts_line, at_line_start = at_line_start, piece.endswith(b"\n")
        if (starts_line and piece.startswith(b"From ")
                and (prev_blank or FROM_LINE.match(piece.rstrip(b"\r\n")) is not None)):
            if started:
                yield from_line, _drop_separator_line(lines), line_start
            from_line, lines, size, started = piece, [], 0, True
        else:
            started = True  # junk before the first separator becomes a message of its own
            if starts_line and ESCAPED_FROM.match(piece):
                piece = piece[1:]
            if size <= MAX_MESSAGE_BYTES:
                lines.append(piece)
                size += len(piece)
        prev_blank = starts_line and piece in (b"\n", b"\r\n")
    if started:
        yield from_line, _drop_separator_line(lines), fh.tell()


def mail_shape(head: bytes) -> str | None:
    """What the first bytes of a file say it is: "mbox" (a "From " separator first), "eml"
    (one message: a header line first), "empty", or None (not mail)."""
    head = head.lstrip(b"\r\n")
    if not head:
        return "empty"
    # The first line decides, not the bytes after it: a message may carry an 8-bit attachment.
    if head.startswith(b"From "):
        return "mbox"
    if HEADER_START.match(head):
        return "eml"
    return None


def _not_mail_reason(head: bytes) -> str:
    if not holds_text(head):
        return "binary data"
    first = head.lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r")[:60]
    return f"it starts with {first.decode('utf-8', 'replace')!r}, not a \"From \" line or a mail header"


def _drop_separator_line(lines: list[bytes]) -> bytes:
    """The message without the empty line an mbox writer puts before the next "From " line."""
    if len(lines) > 1 and lines[-1] in (b"\n", b"\r\n"):
        lines = lines[:-1]
    return b"".join(lines)


class MboxConnector(EmailNormalizer, Connector):
    key = "mbox"
    label = "Mailbox file (mbox, .eml folder, Google Takeout)"
    channel = "email"
    Config = MboxConfig
    importable = True

    def self_identities(self) -> list[tuple[str, str, str]]:
        found = [self.config.username] if "@" in self.config.username else []
        found += [a for a in self.config.aliases if "@" in a]
        return [("email", a, "") for a in found]

    def fetch(self, cursor, *, since=None) -> Iterator[Batch]:
        if not self.config.path:
            raise ConfigError("no path: use mesh_import mbox FILE.mbox|FOLDER|takeout.zip")
        path = Path(self.config.path)
        if not path.exists():
            raise ConfigError(f"no such file or folder: {path}")
        cursor = dict(cursor or {})
        done: list[str] = list(cursor.get("done", []))  # mbox files read to the end
        eml_done: str = cursor.get("eml_done", "")  # the last .eml stored (they are read in name order)
        sources, skipped_names = self._sources(path)
        skipped = {}
        if skipped_names:
            skipped = {"skipped": {"count": len(skipped_names), "names": skipped_names[:SKIPPED_NAMES_KEPT]}}
            log.warning("mbox import of %s: skipped %d file(s) that are not mail: %s", path, len(skipped_names),
                        ", ".join(skipped_names[:SKIPPED_NAMES_KEPT]))
        items: list[RawItem] = []
        nbytes = 0
        state = {"file": "", "offset": 0, "index": 0}
        for name, opener, kind in sources:
            if name in done or (kind == "eml" and eml_done and name <= eml_done):
                continue
            state = {"file": name, "offset": 0, "index": 0}
            if kind == "mbox" and cursor.get("file") == name:
                state.update(offset=int(cursor.get("offset", 0)), index=int(cursor.get("index", 0)))
            for item in self._items(name, opener, kind, state):
                items.append(item)
                nbytes += int(item.payload.get("size", 0))
                if kind == "eml":
                    eml_done = name
                if len(items) >= self.config.batch_size or nbytes >= self.config.max_batch_bytes:
                    yield Batch(items, {**state, "done": done, "eml_done": eml_done, **skipped})
                    items, nbytes = [], 0
            if kind != "eml":
                done = [*done, name]
        yield Batch(items, {"file": "", "offset": 0, "index": 0, "done": done, "eml_done": eml_done, **skipped})

    def _sources(self, path: Path) -> tuple[list[tuple[str, object, str]], list[str]]:
        """(name, opener, kind) for each mailbox in PATH in a stable order, and the names of the
        files skipped as not mail. Kind "refused" is an archive member not read (a bomb): the
        opener gives the reason."""
        lower = path.name.lower()
        if path.is_dir():
            return self._folder(path)
        if lower.endswith(".eml"):
            return [(path.name, lambda: path.open("rb"), "eml")], []
        if lower.endswith(".zip"):
            return _zip_members(path)
        if lower.endswith((".tgz", ".tar.gz", ".tar")):
            return _tar_members(path)
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
        shape = mail_shape(head)
        if shape is None:
            raise ConnectorError(f"{path} is not an mbox file: {_not_mail_reason(head)}", permanent=True)
        # A header line first: one message, unless the name says mbox (whose first message
        # lost its separator; the mbox reader takes that too).
        kind = "eml" if shape == "eml" and not lower.endswith(".mbox") else "mbox"
        return [(path.name, lambda: path.open("rb"), kind)], []

    @staticmethod
    def _folder(path: Path) -> tuple[list[tuple[str, object, str]], list[str]]:
        """Mail files under a folder: ``.eml`` and ``.mbox`` by name, files without those
        suffixes when they are mbox-shaped (Thunderbird's "Inbox") or a message in a Maildir's
        ``cur``/``new``. Anything else is skipped."""
        found: list[tuple[str, object, str]] = []
        skipped: list[str] = []
        for p in sorted(path.rglob("*")):
            if not p.is_file():
                continue
            name = str(p.relative_to(path))
            suffix = p.suffix.lower()
            if suffix in (".eml", ".mbox"):
                kind = suffix[1:]
            else:
                with p.open("rb") as fh:
                    head = fh.read(SNIFF_BYTES)
                shape = mail_shape(head)
                first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
                if shape == "mbox" and FROM_LINE.match(first_line):
                    kind = "mbox"
                elif shape == "eml" and p.parent.name in MAILDIR_FOLDERS:
                    kind = "eml"
                else:
                    skipped.append(name)
                    continue
            found.append((name, lambda p=p: p.open("rb"), kind))
        return found, skipped

    def _items(self, name, opener, kind, state) -> Iterator[RawItem]:
        if kind == "refused":
            yield RawItem(name, {"file": name, "error": opener()})
            return
        member = opener()
        with member as fh:
            if kind == "eml":
                data = fh.read(MAX_MESSAGE_BYTES + 1)
                # The file's time is the last-resort date of a message without one.
                mtime = getattr(member, "mtime", None)
                if isinstance(getattr(fh, "name", None), str) and Path(fh.name).is_file():
                    mtime = dt.datetime.fromtimestamp(Path(fh.name).stat().st_mtime, dt.UTC).isoformat()
                yield self._raw(name, data, {"file": name, "mtime": mtime})
                return
            for from_line, data, end in read_mbox(fh, state["offset"]):
                state["index"] += 1
                state["offset"] = end
                yield self._raw(f"{name}#{state['index']}", data,
                                {"file": name, "index": state["index"], "mbox_date": _mbox_date(from_line)})

    @staticmethod
    def _raw(external_id: str, data: bytes, meta: dict) -> RawItem:
        if len(data) > MAX_MESSAGE_BYTES:
            return RawItem(external_id, {**meta, "error": f"message larger than {MAX_MESSAGE_BYTES} bytes",
                                         **pack(data[:65536])})
        return RawItem(external_id, pack(data, **meta))


def _bomb_reason(unpacked: int, packed: int) -> str | None:
    if unpacked > RATIO_CHECKED_ABOVE and unpacked > MAX_RATIO * max(packed, 1):
        return (f"expands from {packed} to {unpacked} bytes, more than {MAX_RATIO} times: "
                "not read (a compression bomb?)")
    return None


def _zip_members(path: Path) -> tuple[list[tuple[str, object, str]], list[str]]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = sorted((i for i in zf.infolist() if not i.is_dir()), key=lambda i: i.filename)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConnectorError(f"{path} is not a zip archive: {exc}", permanent=True) from None
    found: list[tuple[str, object, str]] = []
    skipped: list[str] = []
    for info in infos:
        name = info.filename
        if not name.lower().endswith((".mbox", ".eml")):
            skipped.append(name)
            continue
        reason = _bomb_reason(info.file_size, info.compress_size)
        if reason:
            found.append((name, lambda reason=reason: reason, "refused"))
        else:
            # zipfile never returns more than a member's declared size, so the check holds.
            found.append((name, lambda n=name: _ZipMember(path, n), "eml" if name.lower().endswith(".eml") else "mbox"))
    return found, skipped


def _tar_members(path: Path) -> tuple[list[tuple[str, object, str]], list[str]]:
    """The mail files of a tar archive. Listing a compressed tar decompresses it, so the
    ratio is checked as each member header is read, before its data is passed over."""
    packed = path.stat().st_size
    unpacked = 0
    found: list[tuple[str, object, str]] = []
    skipped: list[str] = []
    try:
        with tarfile.open(path) as tf:
            for member in tf:
                unpacked += member.size
                reason = _bomb_reason(unpacked, packed)
                if reason:
                    raise ConnectorError(f"{path} {reason}", permanent=True)
                if not member.isfile():
                    continue
                if member.name.lower().endswith(".mbox"):
                    found.append((member.name, lambda n=member.name: _TarMember(path, n), "mbox"))
                else:
                    skipped.append(member.name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ConnectorError(f"{path} is not a readable tar archive: {exc}", permanent=True) from None
    return sorted(found), sorted(skipped)


class _ZipMember:
    def __init__(self, path, name):
        self.zf = zipfile.ZipFile(path)
        self.fh = self.zf.open(name)
        # Zip keeps a member's time without a zone; read as UTC it is off by the packer's
        # offset at most, which beats no date. 1980-01-01 00:00 is zip's "no time".
        stamp = self.zf.getinfo(name).date_time
        self.mtime = None if stamp == (1980, 1, 1, 0, 0, 0) else dt.datetime(*stamp, tzinfo=dt.UTC).isoformat()

    def __enter__(self):
        return self.fh

    def __exit__(self, *exc):
        self.fh.close()
        self.zf.close()


class _TarMember:
    def __init__(self, path, name):
        self.tf = tarfile.open(path)
        self.fh = self.tf.extractfile(name)

    def __enter__(self):
        return self.fh

    def __exit__(self, *exc):
        self.fh.close()
        self.tf.close()
