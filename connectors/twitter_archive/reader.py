"""Streaming reader for the ``window.YTD.<name>.part0 = [ ... ]`` files of an X archive.

A 2 GB archive's ``tweets.js`` can be hundreds of megabytes: it is read from the zip member in
chunks and decoded one array element at a time with ``json.JSONDecoder.raw_decode`` over a
sliding buffer, so memory holds one element and one chunk. An element that is not valid JSON
is handed on as a `Broken` value (it becomes an ImportFailure) and reading resumes at the next
element that starts like the first one did. Media members are never opened.
"""

from __future__ import annotations

import codecs
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CHUNK = 1 << 20
MAX_ELEMENT = 16 << 20  # one tweet or one DM conversation; beyond this the element is refused
PREFIX_MAX = 4096
_WS = " \t\r\n"
PREFIX_RE = re.compile(r"^\s*window\.YTD\.([A-Za-z0-9_]+)\.part(\d+)\s*=\s*")
# Item files, by kind, matched on the file name anywhere in the archive (newer exports keep them
# under data/, older ones at the top; tweet.js was the name before tweets.js).
MEMBER_RE = re.compile(r"(?:^|/)(?P<kind>tweets?|direct-messages-group|direct-messages)(?:-part(?P<part>\d+))?\.js$")
KIND_ORDER = {"tweet": 0, "tweets": 0, "direct-messages": 1, "direct-messages-group": 2}


@dataclass(frozen=True, slots=True)
class Broken:
    """An element that could not be decoded, with why."""

    reason: str
    text: str


class ArchiveError(ValueError):
    """The archive as a whole cannot be read (not a zip, no such file, a file with no array)."""


class Archive:
    """A zip as downloaded from X, or the folder it unpacks to."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_dir():
            self.names = sorted(
                p.relative_to(self.path).as_posix() for p in self.path.rglob("*.js") if p.is_file()
            )
        else:
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (OSError, zipfile.BadZipFile) as exc:
                raise ArchiveError(f"cannot open the archive {self.path.name}: {exc}") from None
            self.names = sorted(n for n in self._zip.namelist() if n.endswith(".js"))

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self, name: str) -> IO[bytes]:
        if self._zip is not None:
            return self._zip.open(name)
        return (self.path / name).open("rb")

    def find(self, basename: str) -> str | None:
        """The member called ``basename`` (``account.js``), preferring one under data/."""
        hits = [n for n in self.names if n == basename or n.endswith("/" + basename)]
        hits.sort(key=lambda n: (not n.startswith("data/") and "/data/" not in n, len(n)))
        return hits[0] if hits else None

    def item_members(self) -> list[str]:
        """tweets, then 1:1 DMs, then group DMs; parts in order (part0 is the file without -partN)."""
        found = []
        for name in self.names:
            m = MEMBER_RE.search(name)
            if m and "_media/" not in name:
                found.append((KIND_ORDER[m["kind"]], int(m["part"] or 0), name))
        return [name for *_k, name in sorted(found)]

    def load_small(self, name: str, limit: int = 4 << 20) -> list:
        """A small file (account.js) decoded whole."""
        with self.open(name) as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise ArchiveError(f"{name} is larger than {limit} bytes")
        text = data.decode("utf-8-sig", errors="replace")
        m = PREFIX_RE.match(text)
        body = text[m.end():] if m else text
        try:
            value = json.loads(body)
        except ValueError as exc:
            raise ArchiveError(f"{name} is not valid: {exc}") from None
        if not isinstance(value, list):
            raise ArchiveError(f"{name} does not hold a list")
        return value


def member_kind(name: str) -> str:
    m = MEMBER_RE.search(name)
    return "tweets" if m and m["kind"] in ("tweet", "tweets") else (m["kind"] if m else "")


def iter_elements(fh: IO[bytes], *, name: str = "", chunk: int = CHUNK, max_element: int = MAX_ELEMENT) -> Iterator[object]:
    """Yield each element of the array in ``fh`` (decoded JSON, or `Broken`)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    decode = json.JSONDecoder().raw_decode
    buf = ""
    eof = False

    def more() -> bool:
        nonlocal buf, eof
        if eof:
            return False
        data = fh.read(chunk)
        if not data:
            eof = True
            buf += decoder.decode(b"", final=True)
            return False
        buf += decoder.decode(data)
        return True

    # The prefix: "window.YTD.tweets.part0 = " then "[".
    while len(buf) < PREFIX_MAX and "[" not in buf and more():
        pass
    buf = buf.lstrip("\ufeff")
    m = PREFIX_RE.match(buf)
    pos = m.end() if m else 0
    while pos < len(buf) and buf[pos] in _WS:
        pos += 1
    if pos >= len(buf) or buf[pos] != "[":
        raise ArchiveError(f"{name or 'file'}: expected 'window.YTD.<name>.partN = [' at the start")
    pos += 1
    first_key: str | None = None
    while True:
        # Skip whitespace and the comma between elements, reading more as needed.
        while True:
            while pos < len(buf) and (buf[pos] in _WS or buf[pos] == ","):
                pos += 1
            if pos < len(buf) or not more():
                break
        if pos >= len(buf):
            return  # no closing bracket: a truncated file ends here (its last element was broken)
        if buf[pos] == "]":
            return
        # Drop what is consumed so the buffer holds one element and a chunk.
        if pos > chunk:
            buf = buf[pos:]
            pos = 0
        while True:
            try:
                value, end = decode(buf, pos)
                break
            except json.JSONDecodeError as exc:
                if len(buf) - pos < max_element and more():
                    continue  # most likely the element runs past the buffer
                value, end = _broken(buf, pos, exc, first_key)
                break
            except RecursionError:
                value, end = _broken(buf, pos, ValueError("nested too deeply"), first_key)
                break
        if first_key is None and isinstance(value, dict) and len(value) == 1:
            first_key = next(iter(value))
        pos = end
        yield value


def _broken(buf: str, pos: int, exc: Exception, first_key: str | None) -> tuple[Broken, int]:
    """Skip a bad element: resume where the next element starts (``{ "<first key>" :``), or at
    the end of the buffer when there is none."""
    text = buf[pos:pos + 2000]
    resume = len(buf)
    if first_key:
        m = re.compile(r"[,\[]\s*\{\s*" + re.escape(json.dumps(first_key)) + r"\s*:").search(buf, pos + 1)
        if m:
            resume = m.start() + 1
    return Broken(f"invalid JSON: {exc}", text), resume
