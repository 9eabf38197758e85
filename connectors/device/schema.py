"""The device event schema, shared by the HTTP ingest API and the JSONL file import.

An event: ``{"id", "type", "occurred_at", "seq"?, "data"?, "participants"?, "visibility"?}``.
``validate_event`` returns every problem it finds as (field, message), so a client can fix all
of them from one 400. Both doors clean every string first (``clean_json``): NUL and other
control characters go, a lone surrogate becomes U+FFFD, ids and object keys included, so an
event's identity is its cleaned id.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from connectors import times
from connectors.base import MAX_CLOCK_SKEW
from connectors.text import MAX_JSON_DEPTH, json_depth

TYPE_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
ID_MAX = 200
ROLES = {"from", "to", "cc", "bcc", "author", "mention", "subject"}
# Nothing a device reports predates 1980; a clock ahead by more than every connector's
# allowed skew is wrong.
MIN_YEAR = 1980
MAX_AHEAD = MAX_CLOCK_SKEW
# What one event's ``data`` may hold, as JSON: real events (OwnTracks, notifications) are a few
# hundred bytes. Bounded so that no stored event can make a page slow or deep to render.
MAX_DATA_BYTES = 65_536
# ``seq``, the device's own sequence number (1, 2, 3, …), is a PostgreSQL bigint.
MAX_SEQ = 2**63 - 1


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (use null or a number)")


def parse_json(data: str | bytes) -> Any:
    """``json.loads`` for untrusted input: NaN/Infinity are refused (PostgreSQL's jsonb cannot
    store them) and every failure, including absurd nesting, is a ValueError."""
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def parse_time(value: Any, *, now: dt.datetime | None = None) -> dt.datetime:
    """RFC 3339 with an offset, or epoch seconds (OwnTracks' ``tst``), within the years a
    device event may carry. Raises ValueError."""
    if isinstance(value, dt.datetime):  # only text and numbers come over the wire
        raise ValueError("must be an RFC 3339 string with a UTC offset, or epoch seconds")
    when = times.parse_time(value)
    now = now or dt.datetime.now(dt.UTC)
    if when.year < MIN_YEAR:
        raise ValueError(f"timestamp before {MIN_YEAR}")
    if when > now + MAX_AHEAD:
        raise ValueError("timestamp is in the future")
    return when


def too_deep(event: dict) -> list[tuple[str, str]]:
    """The fields of ``event`` nested deeper than ``MAX_JSON_DEPTH``: any field, known or not,
    since the raw event is stored as it came."""
    return [(field, f"nested deeper than {MAX_JSON_DEPTH} levels") for field, value in event.items()
            if isinstance(value, dict | list) and json_depth(value) > MAX_JSON_DEPTH]


def validate_event(event: Any) -> list[tuple[str, str]]:
    if not isinstance(event, dict):
        return [("", "event must be a JSON object")]
    errors: list[tuple[str, str]] = []
    eid = event.get("id")
    if eid is None:
        errors.append(("id", "required"))
    elif isinstance(eid, bool) or not isinstance(eid, str | int):
        errors.append(("id", "must be a string or an integer"))
    elif not str(eid).strip() or len(str(eid)) > ID_MAX:
        errors.append(("id", f"must be 1 to {ID_MAX} characters"))
    etype = event.get("type")
    if etype is None:
        errors.append(("type", "required"))
    elif not isinstance(etype, str) or not TYPE_RE.match(etype):
        errors.append(("type", "must be a lowercase name like 'call.incoming' or 'location'"))
    if "occurred_at" not in event:
        errors.append(("occurred_at", "required"))
    else:
        try:
            parse_time(event["occurred_at"])
        except ValueError as exc:
            errors.append(("occurred_at", str(exc)))
    errors.extend(too_deep(event))
    data = event.get("data", {})
    if not isinstance(data, dict):
        errors.append(("data", "must be a JSON object"))
    elif json_depth(data) <= MAX_JSON_DEPTH and len(json.dumps(data)) > MAX_DATA_BYTES:
        errors.append(("data", f"larger than {MAX_DATA_BYTES} bytes as JSON"))
    if "seq" in event:
        seq = event["seq"]
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq <= MAX_SEQ:
            errors.append(("seq", f"must be a whole number from 1 to {MAX_SEQ}"))
    visibility = event.get("visibility", "private")
    if visibility not in ("private", "public"):
        errors.append(("visibility", "must be 'private' or 'public'"))
    participants = event.get("participants", [])
    if not isinstance(participants, list):
        errors.append(("participants", "must be a list"))
    else:
        for i, p in enumerate(participants):
            where = f"participants[{i}]"
            if not isinstance(p, dict):
                errors.append((where, "must be an object with kind, value and role"))
                continue
            if not isinstance(p.get("kind"), str) or not p.get("kind"):
                errors.append((f"{where}.kind", "required string (email, phone, x, ...)"))
            if not isinstance(p.get("value"), str | int) or isinstance(p.get("value"), bool) or str(p.get("value", "")).strip() == "":
                errors.append((f"{where}.value", "required string"))
            role = p.get("role", "to")
            if not isinstance(role, str) or role not in ROLES:
                errors.append((f"{where}.role", f"must be one of {', '.join(sorted(ROLES))}"))
            if "name" in p and not isinstance(p["name"], str):
                errors.append((f"{where}.name", "must be a string"))
    return errors


def check_batch(events: list) -> tuple[list[dict], list[dict], int]:
    """A batch of events as (the events to store, each id once; the problems, as
    ``{"index", "id", "field", "error"}``; how many were repeats of an earlier event of the
    batch). Two events with one id and different content, or two with one ``seq``, are a
    problem: which of them would the id or the seq name?"""
    errors: list[dict] = []
    accepted: list[dict] = []
    first_seen: dict[str, int] = {}
    seq_seen: dict[int, int] = {}
    repeated = 0
    for index, event in enumerate(events):
        problems = validate_event(event)
        for field, message in problems:
            errors.append({"index": index, "id": event.get("id") if isinstance(event, dict) else None,
                           "field": field, "error": message})
        if problems:
            continue
        event_id = str(event["id"])
        if event_id in first_seen:
            if events[first_seen[event_id]] != event:
                errors.append({"index": index, "id": event["id"], "field": "id",
                               "error": f"duplicate id in this batch (also at index {first_seen[event_id]}) with different content"})
            else:
                repeated += 1
            continue
        seq = event.get("seq")
        if seq is not None and seq_seen.setdefault(seq, index) != index:
            errors.append({"index": index, "id": event["id"], "field": "seq",
                           "error": f"seq {seq} is also at index {seq_seen[seq]}, another event"})
            continue
        first_seen[event_id] = index
        accepted.append(event)
    return accepted, errors, repeated
