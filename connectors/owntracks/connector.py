"""OwnTracks: the phone app's messages as device events.

Three doors, one normalizer (``messages.py``): the app's HTTP mode posts to
``POST /api/v1/owntracks`` (``views.py``, the device token as the Basic password); an MQTT
client hands each message on ``owntracks/<user>/<device>[/…]`` to ``mqtt_message``; and
``mesh_import owntracks FILE --device ID`` reads a file of messages, one per line, as JSON or
as the OwnTracks Recorder's ``.rec`` lines (``<time>\\t<tag>\\t<json>``). A message's identity
is its type and time, so the same fix arriving by two doors is one event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from connectors import times
from connectors.base import ActivityDraft, Batch, ConfigError, Connector, RawItem
from connectors.config import DeviceFileConfig

from .messages import NotOwnTracks, mqtt_raw_item, normalize_message, parse_message, raw_item

MAX_LINE_BYTES = 1_000_000


class OwnTracksConnector(Connector):
    key = "owntracks"
    label = "OwnTracks"
    channel = "device"
    Config = DeviceFileConfig
    importable = True
    urls = "connectors.owntracks.urls"
    url_mount = "api/v1/owntracks"
    # What an MQTT client subscribes to for this connector (the app publishes locations and its
    # last will on the base topic, transitions on /event).
    mqtt_topics: ClassVar[tuple[str, ...]] = ("owntracks/+/+", "owntracks/+/+/event", "owntracks/+/+/lwt")

    def device_id(self) -> int:
        device = self.config.device or self.context.get("device_id")
        if not device:
            raise ConfigError("OwnTracks messages need a device (--device ID)")
        return int(device)

    @classmethod
    def mqtt_message(cls, topic: str, payload: bytes, received_at: dt.datetime | None = None) -> RawItem | None:
        """One MQTT message as the raw item to store for the device the topic maps to (the
        caller stores it under this connector's key, as the HTTP endpoint does); None for an
        empty payload. Raises ValueError for one that is not an OwnTracks message."""
        return mqtt_raw_item(topic, payload, received_at)

    @classmethod
    def mqtt_will(cls, item: RawItem) -> bool:
        """The broker's last will for the app (``_type: lwt``): the device dropped off."""
        return isinstance(item.payload, dict) and item.payload.get("_type") == "lwt"

    def fetch(self, cursor, *, since=None) -> Iterator[Batch]:
        """Read the file at config.path from the byte offset in the cursor; a line that is not a
        message is handed on as an item that fails with its reason."""
        if not self.config.path:
            raise ConfigError("no path: use mesh_import owntracks FILE --device ID")
        self.device_id()
        offset = int((cursor or {}).get("offset", 0))
        line_no = int((cursor or {}).get("line", 0))
        items: list[RawItem] = []
        with Path(self.config.path).open("rb") as fh:
            fh.seek(offset)
            while line := fh.readline(MAX_LINE_BYTES + 1):
                line_no += 1
                if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                    while line and not line.endswith(b"\n"):
                        line = fh.readline(MAX_LINE_BYTES)
                    items.append(RawItem(f"line-{line_no}", {"_error": f"line {line_no} is longer than 1 MB"}))
                elif line.strip():
                    items.append(_line_item(line.decode("utf-8", errors="replace"), line_no))
                if len(items) >= self.config.batch_size:
                    yield Batch(items, {"offset": fh.tell(), "line": line_no})
                    items = []
            yield Batch(items, {"offset": fh.tell(), "line": line_no})

    def normalize(self, raw: RawItem) -> ActivityDraft:
        return normalize_message(raw, device=self.device_id(), places_public=bool(self.context.get("places_public")))


def _line_item(text: str, line_no: int) -> RawItem:
    """A JSON line, or a Recorder line (``2026-05-01T10:00:00Z\\t*   \\t{…}``: the time it was
    received, a tag, the message)."""
    received = None
    body = text.strip()
    if not body.startswith("{") and "\t" in body:
        stamp, _, body = body.partition("\t")
        body = body.partition("\t")[2] if not body.lstrip().startswith("{") else body
        try:
            received = times.parse_time(stamp.strip(), epoch=False, assume_utc=True)
        except ValueError:
            received = None
    try:
        message = parse_message(body)
    except NotOwnTracks as exc:
        return RawItem(f"line-{line_no}", {"_error": f"line {line_no}: {exc}", "_text": body[:2000]})
    if message is None:
        return RawItem(f"line-{line_no}", {"_error": f"line {line_no}: empty message"})
    return raw_item(message, received)
