"""The one parser of the timestamps connectors meet: RFC 3339 / ISO 8601 text or epoch seconds.

The device API, the X API and archive, and Twilio's cursors all read times through it, so "Z",
offsets, fractional seconds and epoch milliseconds mean the same thing everywhere.
"""

from __future__ import annotations

import datetime as dt

# Epoch values above this are milliseconds (1e11 seconds is the year 5138).
EPOCH_MILLISECONDS_ABOVE = 1e11


class NoOffset(ValueError):
    """A timestamp without a UTC offset, where one is required."""


def parse_time(value, *, epoch: bool = True, assume_utc: bool = False) -> dt.datetime:
    """``value`` as an aware UTC datetime: RFC 3339 text (``Z`` or an offset) or, with
    ``epoch``, a number of epoch seconds (milliseconds above 1e11). Text without an offset is
    UTC with ``assume_utc``, else ``NoOffset``. Raises ValueError with a reason a person can
    read."""
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, int | float) and not isinstance(value, bool) and epoch:
        try:
            when = dt.datetime.fromtimestamp(value / 1000 if value > EPOCH_MILLISECONDS_ABOVE else value, dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("epoch seconds out of range") from None
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an RFC 3339 timestamp: {value[:40]!r}") from None
    else:
        raise ValueError("must be an RFC 3339 string with a UTC offset" + (", or epoch seconds" if epoch else ""))
    if when.tzinfo is None:
        if not assume_utc:
            raise NoOffset("timestamp needs a UTC offset (e.g. 2026-05-01T12:00:00Z)")
        when = when.replace(tzinfo=dt.UTC)
    try:
        return when.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("timestamp out of range") from None
