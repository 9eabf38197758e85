"""Text and JSON that PostgreSQL, SQLite and every renderer accept, whatever a source sent.

PostgreSQL refuses NUL in text and jsonb, and no encoder accepts a lone UTF-16 surrogate
(``"\\ud83d"`` from a JSON string cut mid-emoji). Every connector and every door that stores what
arrived (webhooks, the device API, imports) cleans through here, so the rule is written once.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls except tab, newline and carriage return; DEL. NUL is among them.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SURROGATE = re.compile(r"[\ud800-\udfff]")
REPLACEMENT = "\ufffd"

# Deeper JSON than this is refused at the door and never rendered: real payloads (OwnTracks,
# Twilio, X) nest fewer than ten levels.
MAX_JSON_DEPTH = 32


def clean_text(value: str) -> str:
    """``value`` without NUL or other control characters; a lone surrogate becomes U+FFFD."""
    if not value:
        return ""
    value = CONTROL.sub("", value)
    if not value.isascii() and SURROGATE.search(value):
        value = SURROGATE.sub(REPLACEMENT, value)
    return value


def needs_cleaning(value: str) -> bool:
    return bool(CONTROL.search(value)) or (not value.isascii() and bool(SURROGATE.search(value)))


def clean_json(value: Any) -> Any:
    """``value`` with every string (object keys too) cleaned; other values unchanged.

    Iterative, so hostile nesting cannot exhaust the stack. Returns the same object when
    nothing needed cleaning, which is the common case and costs one walk.
    """
    if isinstance(value, str):
        return clean_text(value) if needs_cleaning(value) else value
    if not isinstance(value, dict | list):
        return value
    if not _has_dirty_string(value):
        return value
    return _rebuild(value)


def _has_dirty_string(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if needs_cleaning(item):
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
            if isinstance(dst, dict):
                dst[clean_text(key) if isinstance(key, str) else key] = item
            else:
                dst.append(item)
    return root


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
