"""Device events: pushed over HTTP (``POST /api/v1/devices/events``) or MQTT
(``mesh/devices/<name>/events``, through ``mesh_mqtt``), or imported from a JSONL file
(``mesh_import device FILE.jsonl --device ID``). All three share one schema and one normalizer,
and an event's identity is (device, event id), so an event that came through two doors is one."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from connectors.base import (
    ActivityDraft,
    BadItem,
    Batch,
    ConfigError,
    Connector,
    ParticipantDraft,
    RawItem,
)
from connectors.config import DeviceFileConfig
from connectors.text import MAX_JSON_DEPTH, clean_json, clean_text, json_depth

from .schema import check_batch, parse_json, parse_time, too_deep, validate_event

MAX_LINE_BYTES = 1_000_000

# Event types whose direction follows from the name.
INCOMING = ("incoming", "received", "missed")
OUTGOING = ("outgoing", "sent", "dialed")


class DeviceConnector(Connector):
    key = "device"
    label = "Device events"
    channel = "device"
    Config = DeviceFileConfig
    importable = True
    # Devices push their events to POST /api/v1/devices/events (views.py), an API, not a hook.
    urls = "connectors.device.urls"
    url_mount = "api/v1/devices/"
    # MQTT (mesh_mqtt): the same JSON as the API's POST, on the device's base topic + /events.
    mqtt_topics = ("mesh/devices/+/events",)

    def device_id(self) -> int:
        device = self.config.device or self.context.get("device_id")
        if not device:
            raise ConfigError("device events need a device (--device ID)")
        return int(device)

    def fetch(self, cursor, *, since=None) -> Iterator[Batch]:
        """Read the JSONL file at config.path. The cursor is the byte offset after the last
        line of the stored batch, so a crash resumes after it. Unparseable lines are handed on
        (as items that fail to normalize) rather than dropped."""
        if not self.config.path:
            raise ConfigError("no path: use mesh_import device FILE.jsonl --device ID")
        path = Path(self.config.path)
        device = self.device_id()
        offset = int((cursor or {}).get("offset", 0))
        items: list[RawItem] = []
        with path.open("rb") as fh:
            fh.seek(offset)
            line_no = int((cursor or {}).get("line", 0))
            while True:
                line = fh.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                    while line and not line.endswith(b"\n"):  # skip the rest of a huge line
                        line = fh.readline(MAX_LINE_BYTES)
                    line_no += 1
                    items.append(RawItem(f"{device}/line-{line_no}", {"_error": "line longer than 1 MB", "_line": line_no}))
                else:
                    line_no += 1
                    text = line.decode("utf-8", errors="replace").strip()
                    if text:
                        items.append(self._raw(device, text, line_no))
                if len(items) >= self.config.batch_size:
                    yield Batch(items, {"offset": fh.tell(), "line": line_no})
                    items = []
            yield Batch(items, {"offset": fh.tell(), "line": line_no})

    def mqtt_message(self, topic: str, payload: bytes, received_at: dt.datetime | None = None) -> list[RawItem]:
        """``{"events": [...]}``, as ``POST /api/v1/devices/events`` takes it. Each valid event is
        the item the API stores for it (a resend through either door is a duplicate); an invalid
        one, which no one is there to answer, becomes a skip record keyed by its content, so
        that a corrected event with the same id is still stored."""
        device = self.device_id()
        if len(payload) > settings.MESH_INGEST_MAX_BYTES:
            raise ValueError(f"payload larger than {settings.MESH_INGEST_MAX_BYTES} bytes")
        try:
            doc = clean_json(parse_json(payload))
        except ValueError as exc:
            raise ValueError(f"payload is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
            raise ValueError('payload must be a JSON object {"events": [...]}')
        events = doc["events"]
        if len(events) > settings.MESH_INGEST_MAX_EVENTS:
            raise ValueError(f"more than {settings.MESH_INGEST_MAX_EVENTS} events in one message")
        accepted, errors, _ = check_batch(events)
        items = [RawItem(f"{device}/{event['id']}", event, received_at) for event in accepted]
        for index in dict.fromkeys(e["index"] for e in errors):
            reasons = "; ".join(f"{e['field'] or 'event'}: {e['error']}" for e in errors if e["index"] == index)
            text = json.dumps(events[index], ensure_ascii=False, sort_keys=True)
            digest = hashlib.sha256(text.encode()).hexdigest()[:32]
            items.append(RawItem(f"{device}/invalid-{digest}",
                                 {"_error": f"event {index} of an MQTT message: {reasons}", "_text": text[:2000]},
                                 received_at))
        return items

    @staticmethod
    def _raw(device: int, text: str, line_no: int) -> RawItem:
        line_key = f"{device}/line-{line_no}"
        try:
            # Cleaned as the HTTP API cleans a batch: the same event is the same item either way.
            event = clean_json(parse_json(text))
        except ValueError as exc:
            return RawItem(line_key, {"_error": f"line {line_no}: invalid JSON: {exc}", "_text": clean_text(text[:2000])})
        if not isinstance(event, dict):
            value = event if json_depth(event) <= MAX_JSON_DEPTH else clean_text(text[:2000])
            return RawItem(line_key, {"_error": f"line {line_no}: event must be a JSON object", "_value": value})
        eid = event.get("id")
        key = f"{device}/{eid}" if isinstance(eid, str | int) and not isinstance(eid, bool) else line_key
        if deep := too_deep(event):
            # The failure keeps the line as text, not the nested value: failures are stored and shown.
            return RawItem(key, {"_error": "; ".join(f"{f}: {m}" for f, m in deep), "_text": clean_text(text[:2000])})
        return RawItem(key, event)

    def normalize(self, raw: RawItem) -> ActivityDraft:
        event = raw.payload
        if isinstance(event, dict) and "_error" in event:
            raise BadItem(event["_error"])
        errors = validate_event(event)
        if errors:
            raise BadItem("; ".join(f"{f or 'event'}: {m}" for f, m in errors))
        device = self.device_id()
        etype: str = event["type"]
        data = event.get("data") or {}
        participants = [
            ParticipantDraft(
                role=p.get("role", "to"), kind=p["kind"], value=str(p["value"]), display=p.get("name", "") or ""
            )
            for p in event.get("participants", [])
        ]
        return ActivityDraft(
            channel="device",
            verb=etype.split(".")[0][:32],
            direction=_direction(etype, data, participants),
            occurred_at=parse_time(event["occurred_at"]),
            dedup_key=f"device:{device}/{event['id']}",
            subject=str(data.get("title", ""))[:500],
            text=str(data.get("text") or data.get("summary") or "")[:10000],
            participants=participants,
            device=str(device),
            visibility=event.get("visibility", "private"),
            thread_key=str(data.get("thread", ""))[:255],
            extra={**data, "type": etype},
        )


def _direction(etype: str, data: dict, participants: list[ParticipantDraft]) -> str | None:
    if data.get("direction") in ("in", "out", "none"):
        return data["direction"]
    words = etype.split(".")
    if any(w in INCOMING for w in words):
        return "in"
    if any(w in OUTGOING for w in words):
        return "out"
    roles = {p.role for p in participants}
    if "from" in roles:
        # Only Mesh knows whether the sender is one of the owner's own identities (then "out",
        # else "in"): leave it to ingest.
        return None
    if "to" in roles:
        return "out"
    return "none"
