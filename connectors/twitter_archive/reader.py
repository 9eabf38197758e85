"""Streaming reader for the item files of an X archive, every generation found in the wild:

- 2012–2018 ("Grailbird"): ``data/js/tweets/2013_01.js`` holding
  ``Grailbird.data.tweets_2013_01 = [ {tweet}, ... ]``, the owner in ``data/js/user_details.js``
  (``var user_details = {...}``), times like ``2013-01-31 20:41:41 +0000``;
- 2018–2020: ``tweet.js`` (``window.YTD.tweet.part0 = [ {tweet}, ... ]``, the tweet objects
  themselves), ``tweet-part1.js``, ``direct-message.js``, at the top of the zip or under data/;
- 2020–2022: the same names under ``data/``, each element wrapped as ``{"tweet": {...}}``;
- since late 2022: ``data/tweets.js`` (``window.YTD.tweets.part0``), ``tweets-part1.js``,
  ``direct-messages.js``, ``direct-messages-group.js``.

A part can be hundreds of megabytes: it is read from the zip member in chunks and decoded one
array element at a time with ``json.JSONDecoder.raw_decode`` over a buffer that holds one element
and a chunk. Whitespace between elements is skipped by a regular expression and dropped as it
is passed, so padding costs time in proportion to its size and no memory. A buffer grows by
doubling while an element is incomplete, so a large element is decoded O(log n) times, not once
per chunk. An element that is not valid JSON is handed on as a `Broken` value (it becomes an
ImportFailure) and reading resumes at the next value that has the shape of an element of that
file (a wrapped tweet, a tweet object, a DM conversation), wherever the bad one was. Media
members are never opened, and a zip member is refused (`ArchiveError`, naming it and the cap)
before it is read when it would decompress past ``MAX_MEMBER_BYTES`` or expands more than
``MAX_RATIO`` times: X's JSON compresses about 10:1, a decompression bomb 1000:1.
"""

from __future__ import annotations

import codecs
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CHUNK = 1 << 20
MAX_ELEMENT = 16 << 20  # one tweet or one DM conversation; beyond this the element is refused
PREFIX_MAX = 4096
# Zip members past these are refused unread. A 2 GB archive's tweets.js is a few hundred MB.
MAX_MEMBER_BYTES = 4 << 30
MAX_RATIO = 100
RATIO_FLOOR = 16 << 20  # small members may compress as well as they like
PREFIX_RE = re.compile(
    r"^\s*(?:window\.YTD\.[A-Za-z0-9_]+\.part\d+|Grailbird\.data\.[A-Za-z0-9_]+|var\s+[A-Za-z0-9_$]+)\s*=\s*"
)
# Item files, matched on the file name anywhere in the archive (the 2019 layout keeps them at
# the top, later ones under data/); -headers files hold no message text and are not read.
MEMBER_RE = re.compile(
    r"(?:^|/)(?P<kind>tweets?|direct-messages?-group|direct-messages?)(?:-part(?P<part>\d+))?\.js$"
)
GRAILBIRD_RE = re.compile(r"(?:^|/)data/js/tweets/(?P<year>\d{4})_(?P<month>\d{2})\.js$")
KINDS = {"tweet": "tweets", "tweets": "tweets", "direct-message": "direct-messages",
         "direct-messages": "direct-messages", "direct-message-group": "direct-messages-group",
         "direct-messages-group": "direct-messages-group"}
KIND_ORDER = {"tweets": 0, "direct-messages": 1, "direct-messages-group": 2}
_WHITESPACE = re.compile(r"\s*")
_SEPARATORS = re.compile(r"[\s,]*")
_AFTER_ELEMENT = re.compile(r"\s*(?:[,\]]|$)")
_CANDIDATE = re.compile(r"[,\[]\s*(\{)")
_decode = json.JSONDecoder().raw_decode


@dataclass(frozen=True, slots=True)
class Broken:
    """An element that could not be decoded, with why."""

    reason: str
    text: str


class ArchiveError(ValueError):
    """The archive, or one member of it, cannot be read (not a zip, no array, over a cap)."""


def is_tweet_element(value) -> bool:
    """``{"tweet": {...}}`` (2020 on) or the tweet object itself (before, and Grailbird)."""
    if not isinstance(value, dict):
        return False
    if isinstance(value.get("tweet"), dict):
        return True
    return ("id_str" in value or "id" in value) and ("created_at" in value or "full_text" in value)


def is_conversation_element(value) -> bool:
    return isinstance(value, dict) and isinstance(value.get("dmConversation"), dict)


ELEMENT_SHAPES: dict[str, Callable[[object], bool]] = {
    "tweets": is_tweet_element,
    "direct-messages": is_conversation_element,
    "direct-messages-group": is_conversation_element,
}


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
                raise ArchiveError(
                    f"{self.path.name} is not an X archive (neither a zip nor an unpacked archive folder): {exc}"
                ) from None
            self.names = sorted(n for n in self._zip.namelist() if n.endswith(".js"))

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self, name: str) -> IO[bytes]:
        if self._zip is None:
            return (self.path / name).open("rb")
        info = self._zip.getinfo(name)
        if info.file_size > MAX_MEMBER_BYTES:
            raise ArchiveError(f"{name} would decompress to {info.file_size:,} bytes, over the cap of "
                               f"{MAX_MEMBER_BYTES:,} bytes for one member")
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise ArchiveError(f"{name} expands {info.file_size // max(info.compress_size, 1):,} times "
                               f"({info.compress_size:,} to {info.file_size:,} bytes), over the cap of "
                               f"{MAX_RATIO} times: not a file X wrote")
        # ZipExtFile stops at the declared size, so the checks above bound what is read.
        return self._zip.open(info)

    def find(self, basename: str) -> str | None:
        """The member called ``basename`` (``account.js``), preferring one under data/."""
        hits = [n for n in self.names if n == basename or n.endswith("/" + basename)]
        hits.sort(key=lambda n: (not n.startswith("data/") and "/data/" not in n, len(n)))
        return hits[0] if hits else None

    def item_members(self) -> list[str]:
        """Tweets (Grailbird months in order, then parts in order: part0 is the file without
        -partN), then 1:1 DMs, then group DMs."""
        found = []
        for name in self.names:
            if "_media/" in name:
                continue
            if m := GRAILBIRD_RE.search(name):
                found.append((0, 0, int(m["year"]) * 100 + int(m["month"]), name))
            elif m := MEMBER_RE.search(name):
                found.append((KIND_ORDER[KINDS[m["kind"]]], 1, int(m["part"] or 0), name))
        return [name for *_k, name in sorted(found)]

    def load_small(self, name: str, limit: int = 4 << 20) -> object:
        """A small file (account.js, user_details.js) decoded whole."""
        with self.open(name) as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise ArchiveError(f"{name} is larger than {limit} bytes")
        text = data.decode("utf-8-sig", errors="replace")
        m = PREFIX_RE.match(text)
        body = text[m.end():] if m else text
        try:
            value, _end = json.JSONDecoder().raw_decode(body.strip())
        except ValueError as exc:
            raise ArchiveError(f"{name} is not valid: {exc}") from None
        return value


def member_kind(name: str) -> str:
    """``tweets``, ``direct-messages`` or ``direct-messages-group`` (whatever the generation
    called the file), or "" for any other file."""
    if GRAILBIRD_RE.search(name):
        return "tweets"
    m = MEMBER_RE.search(name)
    return KINDS[m["kind"]] if m else ""


def iter_elements(
    fh: IO[bytes], *, name: str = "", chunk: int = CHUNK, max_element: int = MAX_ELEMENT,
    is_element: Callable[[object], bool] = lambda value: isinstance(value, dict),
) -> Iterator[object]:
    """Yield each element of the array in ``fh`` (decoded JSON, or `Broken`). ``is_element``
    tells where a good element starts again after a broken one."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    decode = _decode
    buf = ""
    pos = 0
    eof = False

    def more(size: int) -> None:
        """Drop what is consumed and append ``size`` more bytes (decoded)."""
        nonlocal buf, pos, eof
        data = fh.read(size)
        if not data:
            eof = True
        buf = buf[pos:] + decoder.decode(data, final=not data)
        pos = 0

    # The prefix: "window.YTD.tweets.part0 = " (or "Grailbird.data.tweets_2013_01 =") then "[".
    while len(buf) < PREFIX_MAX and "[" not in buf and not eof:
        more(chunk)
    buf = buf.lstrip("\ufeff")
    m = PREFIX_RE.match(buf)
    pos = _WHITESPACE.match(buf, m.end() if m else 0).end()
    if pos >= len(buf) or buf[pos] != "[":
        raise ArchiveError(f"{name or 'file'}: expected 'window.YTD.<name>.partN = [' at the start")
    pos += 1
    while True:
        pos = _SEPARATORS.match(buf, pos).end()
        if pos >= len(buf):
            if eof:
                return  # no closing bracket: a truncated file ends here (its last element was broken)
            more(chunk)  # whitespace padding is dropped here, never accumulated
            continue
        if buf[pos] == "]":
            return
        while True:
            try:
                value, end = decode(buf, pos)
                break
            except json.JSONDecodeError as exc:
                if _incomplete(exc, buf) and not eof and len(buf) - pos < max_element:
                    more(max(chunk, len(buf) - pos))  # double: a big element is decoded O(log n) times
                    continue
                reason = f"invalid JSON: {exc}"
            except RecursionError:
                reason = "invalid JSON: nested too deeply"
            value = Broken(reason, buf[pos:pos + 2000])
            # more() keeps the buffer starting at the broken element, so the cap counts from it.
            while (end := _resync(buf, pos, is_element, final=eof)) is None and len(buf) - pos < max_element:
                more(max(chunk, len(buf) - pos))
            end = len(buf) if end is None else end
            break
        pos = end
        yield value


def _incomplete(exc: json.JSONDecodeError, buf: str) -> bool:
    """Whether decoding failed only because the buffer ends (more input may complete it)."""
    return exc.pos >= len(buf) - 8 or exc.msg.startswith("Unterminated string")


def _resync(buf: str, pos: int, is_element, *, final: bool) -> int | None:
    """Where the next good element starts after the broken one at ``pos``: the next ``{`` after
    ``,`` or ``[`` that decodes to a value of the element shape and is followed by ``,`` or
    ``]``. ``len(buf)`` when there is none in the whole input; None when more input is needed
    to tell (a candidate runs past the buffer's end, or none has been seen yet)."""
    at = pos + 1
    while m := _CANDIDATE.search(buf, at):
        start = m.start(1)
        try:
            value, end = _decode(buf, start)
        except json.JSONDecodeError as exc:
            if not final and _incomplete(exc, buf):
                return None
            at = start + 1
            continue
        except RecursionError:
            at = start + 1
            continue
        if is_element(value) and _AFTER_ELEMENT.match(buf, end):
            return start
        at = end  # a whole value nested in the broken element: no element starts inside it
    return len(buf) if final else None
