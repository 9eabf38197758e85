"""Phone numbers as the SMS connectors compare them (own numbers, thread keys): Mesh's identity
normalization, so that a connector's notion of "the same number" is the core's."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=65536)
def e164(value: str, region: str = "US") -> str:
    """The core identity normalization of a phone number, or the value as given if it is none."""
    # Imported here: a connector module loads before Django's apps are ready (entry points,
    # the conformance kit), and streams.services needs them.
    from streams.services import InvalidIdentity, normalize_phone

    try:
        return normalize_phone(value, region)
    except InvalidIdentity:
        return (value or "").strip()
