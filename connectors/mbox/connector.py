"""Mailbox files: ``mesh_import mbox PATH`` where PATH is an mbox file, a folder of ``.eml``
files (searched recursively), a single ``.eml``, or a Google Takeout archive (``.zip``,
``.tgz``/``.tar.gz``) whose ``.mbox`` files are read in place, without unpacking to disk.

Messages are streamed one at a time (bounded memory whatever the file size) and normalized by
the shared email normalizer, so a message seen here and over IMAP is one activity (same
Message-ID, same dedup key). The cursor is (file, byte offset, message index) after the last
stored batch, so a crash resumes after it.
"""

from __future__ import annotations

import datetime as dt
import re
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from connectors.base import Batch, ConfigError, Connector, RawItem
from connectors.email_common import EmailNormalizer, pack, split_list
from connectors.email_common.headers import parse_date

MAX_MESSAGE_BYTES = 50 * 1024 * 1024
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
        object.__setattr__(self, "aliases", split_list(self.aliases))
        object.__setattr__(self, "batch_size", int(self.batch_size))
        object.__setattr__(self, "max_batch_bytes", int(self.max_batch_bytes))
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
    a blank line (or starts the file) or that looks like a full mbox separator."""
    fh.seek(offset)
    from_line = b""
    lines: list[bytes] = []
    size = 0
    prev_blank = True
    started = False
    while True:
        line_start = fh.tell()
        line = fh.readline()
        if not line:
            break
        if line.startswith(b"From ") and (prev_blank or FROM_LINE.match(line.rstrip(b"\r\n")) is not None):
            if started:
                yield from_line, _drop_separator_line(lines), line_start
            from_line, lines, size, started = line, [], 0, True
        else:
            started = True  # junk before the first separator becomes a message of its own
            if ESCAPED_FROM.match(line):
                line = line[1:]
            if size <= MAX_MESSAGE_BYTES:
                lines.append(line)
                size += len(line)
        prev_blank = line in (b"\n", b"\r\n")
    if started:
        yield from_line, _drop_separator_line(lines), fh.tell()


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
        items: list[RawItem] = []
        nbytes = 0
        state = {"file": "", "offset": 0, "index": 0}
        for name, opener, kind in self._sources(path):
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
                    yield Batch(items, {**state, "done": done, "eml_done": eml_done})
                    items, nbytes = [], 0
            if kind == "mbox":
                done = [*done, name]
        yield Batch(items, {"file": "", "offset": 0, "index": 0, "done": done, "eml_done": eml_done})

    def _sources(self, path: Path):
        """(name, opener, kind) for each mailbox in PATH, in a stable order."""
        lower = path.name.lower()
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_file() and p.suffix.lower() == ".eml":
                    yield str(p.relative_to(path)), (lambda p=p: p.open("rb")), "eml"
                elif p.is_file() and p.suffix.lower() == ".mbox":
                    yield str(p.relative_to(path)), (lambda p=p: p.open("rb")), "mbox"
        elif lower.endswith(".eml"):
            yield path.name, (lambda: path.open("rb")), "eml"
        elif lower.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                names = sorted(n for n in zf.namelist() if n.lower().endswith((".mbox", ".eml")))
            for n in names:
                yield n, (lambda n=n: _ZipMember(path, n)), "eml" if n.lower().endswith(".eml") else "mbox"
        elif lower.endswith((".tgz", ".tar.gz", ".tar")):
            with tarfile.open(path) as tf:
                names = sorted(m.name for m in tf.getmembers() if m.isfile() and m.name.lower().endswith(".mbox"))
            for n in names:
                yield n, (lambda n=n: _TarMember(path, n)), "mbox"
        else:
            yield path.name, (lambda: path.open("rb")), "mbox"

    def _items(self, name, opener, kind, state) -> Iterator[RawItem]:
        with opener() as fh:
            if kind == "eml":
                data = fh.read(MAX_MESSAGE_BYTES + 1)
                mtime = None
                if isinstance(getattr(fh, "name", None), str) and Path(fh.name).is_file():
                    # A real file: its time is the last-resort date of a message without one.
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


class _ZipMember:
    def __init__(self, path, name):
        self.zf = zipfile.ZipFile(path)
        self.fh = self.zf.open(name)

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
