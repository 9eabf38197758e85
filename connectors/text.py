"""Text and JSON that PostgreSQL, SQLite and every renderer accept, whatever a source sent.

PostgreSQL refuses NUL in text and jsonb, and no encoder accepts a lone UTF-16 surrogate
(``"\\ud83d"`` from a JSON string cut mid-emoji); jsonb and SQLite's JSON refuse NaN and
infinities, which Python's ``json.loads`` accepts. Every connector and every door that stores what
arrived (webhooks, the device API, imports) cleans through here, so the rule is written once.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

# C0 controls except tab, newline and carriage return; DEL. NUL is among them.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SURROGATE = re.compile(r"[\ud800-\udfff]")
# CONTROL as bytes: UTF-8 never puts them inside a multi-byte character.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
REPLACEMENT = "\ufffd"

# Deeper JSON than this is refused at the door and never rendered: real payloads (OwnTracks,
# Twilio, X) nest fewer than ten levels.
MAX_JSON_DEPTH = 32
# orjson refuses to encode deeper values, so whatever it encodes is no deeper than this.
ORJSON_MAX_DEPTH = 254


def clean_text(value: str) -> str:
    """``value`` without NUL or other control characters; a lone surrogate becomes U+FFFD."""
    if not value:
        return ""
    value = CONTROL.sub("", value)
    if not value.isascii() and SURROGATE.search(value):
        value = SURROGATE.sub(REPLACEMENT, value)
    return value


def needs_cleaning(value: str) -> bool:
    """Whether ``clean_text`` would change ``value``. Encoding refuses a lone surrogate, and
    deleting the control bytes from the encoding shows whether there were any: both run in C
    without a regex's per-character steps, and every string ingested passes here."""
    try:
        encoded = value.encode()
    except UnicodeEncodeError:
        return True
    return len(encoded.translate(None, _CONTROL_BYTES)) != len(encoded)


class TooDeep(ValueError):
    pass


def clean_json(value: Any, *, max_depth: int | None = None) -> Any:
    """``value`` with every string (object keys too) cleaned and NaN or infinities as None;
    other values unchanged. ``max_depth``: raise TooDeep for a value nested deeper.

    Iterative, so hostile nesting cannot exhaust the stack. Returns the same object when
    nothing needed cleaning, which is the common case and costs one orjson encoding (a
    microsecond for a tweet; a walk in Python costs ten times that).
    """
    if isinstance(value, str):
        return clean_text(value) if needs_cleaning(value) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, dict | list):
        return value
    try:
        encoded = orjson.dumps(value)
    except TypeError:  # a lone surrogate, deeper than orjson goes, a key or type it does not know
        encoded = None
    if max_depth is not None and (encoded is None or max_depth < ORJSON_MAX_DEPTH):
        if _deeper_than(value, encoded, max_depth):
            raise TooDeep(f"nested deeper than {max_depth} levels")
    if encoded is not None and not _may_be_dirty(encoded):
        # orjson writes NaN and infinities as null: only a value with a null can hold one.
        if b"null" not in encoded or _all_finite(value):
            return value
    if not _needs_rebuild(value):
        return value
    return _rebuild(value)


def _may_be_dirty(encoded: bytes) -> bool:
    # How orjson writes what CONTROL removes (it refuses surrogates outright): DEL as it is,
    # the others escaped. Most text has no backslash at all, and one memchr says so. A marker
    # may be an escaped backslash followed by "u00", "b" or "f": then the walk decides.
    if b"\x7f" in encoded:
        return True
    return b"\\" in encoded and (b"\\u00" in encoded or b"\\b" in encoded or b"\\f" in encoded)


def _deeper_than(value: Any, encoded: bytes | None, limit: int) -> bool:
    # Nothing nests deeper than it has brackets: the count answers for the usual value.
    if encoded is not None and encoded.count(b"{") + encoded.count(b"[") <= limit:
        return False
    return json_depth(value, limit=limit) > limit


def _all_finite(value: Any) -> bool:
    # Values only: keys are strings, and orjson has already vouched for every string.
    # Most values are strings: one type() call skips them (subclasses take the slow branch).
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            continue
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _needs_rebuild(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if needs_cleaning(item):
                return True
        elif isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _rebuild(value: Any) -> Any:
    # Depth-first copy with an explicit stack: (source container, target container) pairs.
    root: Any = {} if isinstance(value, dict) else []
    stack = [(value, root)]
    while stack:
        src, dst = stack.pop()
        pairs = src.items() if isinstance(src, dict) else enumerate(src)
        for key, item in pairs:
            if isinstance(item, dict | list):
                child: Any = {} if isinstance(item, dict) else []
                stack.append((item, child))
                item = child
            elif isinstance(item, str) and needs_cleaning(item):
                item = clean_text(item)
            elif isinstance(item, float) and not math.isfinite(item):
                item = None
            if isinstance(dst, dict):
                dst[clean_text(key) if isinstance(key, str) else key] = item
            else:
                dst.append(item)
    return root


def json_deeper_than(value: Any, limit: int, *, encoded: bytes | None = None) -> bool:
    """Whether ``value`` nests deeper than ``limit``: one orjson encoding answers for the usual
    value (pass ``encoded`` when you have it), a walk for the rest."""
    if not isinstance(value, dict | list):
        return False
    if encoded is None:
        try:
            encoded = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            pass
    return _deeper_than(value, encoded, limit)


def json_depth(value: Any, *, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of ``value`` (a scalar is 0, ``[]`` is 1), counted up to ``limit + 1``."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
            stack.extend((child, depth) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
