"""Reads about a device as a member of the mesh: its presence (the one rule the device page, the
device list and ``mesh_device list`` show) and which of its seqs Mesh holds (the device API's
``GET /api/v1/devices/me/status``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from ..conf import conf
from ..models import Device, DeviceSeqRange

# Gaps a status answer lists at most: a device resends those first and asks again.
MAX_MISSING = 1000


@dataclass(frozen=True)
class Presence:
    """Where a device stands. ``state``: "online", "offline", "never seen" or "revoked";
    ``reason`` says why it is offline ("last will": the broker said it dropped off; "silent":
    nothing heard for ``MESH_DEVICE_OFFLINE_AFTER_SECONDS``). ``last_seen``: the latest of its
    last contact with Mesh and its newest event (never later than now). ``battery`` (0-100),
    ``charging``, ``place`` ({lat, lon, place, at}) and ``reported`` (a presence the device
    reported itself) come from its latest state, None or "" when unknown."""

    state: str
    reason: str
    last_seen: dt.datetime | None
    battery: float | None
    charging: bool | None
    place: dict | None
    reported: str

    def as_json(self) -> dict:
        return {"presence": self.state, "presence_reason": self.reason, "last_seen_at": self.last_seen,
                "battery": self.battery, "charging": self.charging,
                "place": dict(self.place) if self.place else None}


def device_presence(*, device: Device, now: dt.datetime | None = None) -> Presence:
    now = now or timezone.now()
    times = [t for t in (device.last_seen_at, device.last_event_at) if t is not None]
    last_seen = min(max(times), now) if times else None
    if device.is_revoked:
        state, reason = "revoked", ""
    elif last_seen is None:
        state, reason = "never seen", ""
    elif device.offline_at is not None and device.offline_at >= last_seen:
        state, reason = "offline", "last will"
    elif (now - last_seen).total_seconds() <= conf.DEVICE_OFFLINE_AFTER_SECONDS:
        state, reason = "online", ""
    else:
        state, reason = "offline", "silent"
    state_doc = device.state if isinstance(device.state, dict) else {}
    level = finite_number(_value(state_doc, "battery"))
    charging = _value(state_doc, "charging")
    place = None
    lat, lon = finite_number(_value(state_doc, "lat")), finite_number(_value(state_doc, "lon"))
    if lat is not None and lon is not None:
        name = _value(state_doc, "place")
        place = {"lat": lat, "lon": lon, "place": name if isinstance(name, str) else "",
                 "at": _at(state_doc.get("lat"))}
    reported = _value(state_doc, "presence")
    return Presence(
        state=state, reason=reason, last_seen=last_seen,
        battery=max(0.0, min(100.0, level)) if level is not None else None,
        charging=charging if isinstance(charging, bool) else None,
        place=place, reported=reported if isinstance(reported, str) else "",
    )


def owntracks_friends(*, device: Device, now: dt.datetime | None = None) -> list[dict]:
    """What the OwnTracks app shows as friends (its HTTP mode's answer): a card and the last
    location of each other device of the workspace that has one, not revoked, in the app's own
    message shapes. A device whose sync scope is ``own`` sees only itself, so none (``[]``).
    Each friend has a stable topic, its OwnTracks one if it has one, since the app keys
    friends by topic."""
    if device.sync_scope == "own":
        return []
    messages: list[dict] = []
    others = Device.objects.filter(workspace_id=device.workspace_id, revoked_at=None).exclude(pk=device.pk).order_by("pk")
    for other in others:
        presence = device_presence(device=other, now=now)
        if presence.place is None:
            continue
        topic = other.mqtt_topic if other.mqtt_topic.startswith("owntracks/") else f"owntracks/mesh/device-{other.pk}"
        tid = "".join(ch for ch in other.name if ch.isalnum())[:2].upper() or str(other.pk)[-2:]
        when = presence.place["at"] or presence.last_seen
        location = {"_type": "location", "topic": topic, "tid": tid, "lat": presence.place["lat"],
                    "lon": presence.place["lon"], "tst": int(when.timestamp()) if when else 0}
        if presence.battery is not None:
            location["batt"] = round(presence.battery)
        messages += [{"_type": "card", "topic": topic, "tid": tid, "name": other.name}, location]
    return messages


def device_seq_status(*, device: Device) -> dict:
    """``high_seq``: every seq from 1 to it is held; ``missing``: the gaps ``[first, last]``
    between it and ``max_seq``, the highest seq held (at most ``MAX_MISSING``, oldest first;
    ``missing_truncated`` says there are more). A seq is held once the event carrying it is
    stored raw (durable in the database, whatever its ingest later makes of it)."""
    high = Device.objects.filter(pk=device.pk).values_list("seq_high", flat=True).first() or 0
    ranges = list(DeviceSeqRange.objects.filter(device_id=device.pk).order_by("first")
                  .values_list("first", "last")[: MAX_MISSING + 1])
    missing, top = [], high
    for first, last in ranges:
        missing.append([top + 1, first - 1])
        top = last
    if len(ranges) > MAX_MISSING:
        top = DeviceSeqRange.objects.filter(device_id=device.pk).order_by("-last").values_list("last", flat=True)[0]
    return {"high_seq": high, "max_seq": top, "missing": missing[:MAX_MISSING],
            "missing_truncated": len(ranges) > MAX_MISSING}


def _value(state: dict, key: str) -> Any:
    entry = state.get(key)
    return entry.get("value") if isinstance(entry, dict) else entry


def _at(entry: Any) -> dt.datetime | None:
    if isinstance(entry, dict) and isinstance(entry.get("at"), str):
        try:
            return dt.datetime.fromisoformat(entry["at"])
        except ValueError:
            return None
    return None


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None (booleans, text, NaN, infinities: what a device sent)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None
