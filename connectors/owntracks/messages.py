"""OwnTracks messages (owntracks.org/booklet/tech/json/) as Mesh device events: pure functions,
shared by the HTTP endpoint, the file import and an MQTT client.

Each ``_type`` becomes one event of the device vocabulary (``streams/demo/phone_events.jsonl``):

- ``location`` → ``location`` {lat, lon, accuracy, battery, charging, place, text, …}
- ``transition`` → ``location.enter`` / ``location.leave`` with ``place`` = the region's ``desc``
- ``waypoint`` / ``waypoints`` → ``place.defined`` (a region's name, centre and radius, under
  keys other than lat/lon/place: a region is not where the device is)
- ``lwt`` → ``presence.offline``; ``status`` → ``status``; ``card`` → ``card``

Any other ``_type`` (beacon, steps, cmd, configuration, encrypted, …) is kept raw and becomes a
skip record (``BadItem`` → an import failure naming the type): nothing is lost, nothing is
guessed. A message's identity is (type, ``tst``[, event, region]) — content-hashed for the
types that carry no time — so a resend, over HTTP or MQTT, is the same item.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math

from connectors import times
from connectors.base import MAX_CLOCK_SKEW, ActivityDraft, BadItem, RawItem
from connectors.text import MAX_JSON_DEPTH, clean_json, json_depth

KNOWN_TYPES = ("location", "transition", "waypoint", "waypoints", "lwt", "status", "card")
# Fields of a ``configuration`` dump that hold secrets (the endpoint password is the device
# token): never stored, even raw.
SECRET_FIELDS = ("password", "encryptionKey", "tlsClientCrtPassword", "passphrase", "secret")
MIN_YEAR = 1980
# OwnTracks' ``bs``: 0 unknown, 1 unplugged, 2 charging, 3 full (plugged in).
CHARGING = {1: False, 2: True, 3: True}
NETWORK = {"w": "wifi", "m": "mobile", "o": "offline"}
MAX_TEXT = 200


class NotOwnTracks(ValueError):
    """A body that is not an OwnTracks message at all (the door answers 400)."""


def parse_message(body: bytes | str) -> dict | None:
    """A message body as the stored payload: a cleaned JSON object with an ``_type``; None for
    an empty body (the app posts one when a friend is deleted: nothing to store). Secrets of a
    configuration dump are removed. Raises NotOwnTracks with a plain reason."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not body.strip():
        return None
    try:
        doc = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise NotOwnTracks("body is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise NotOwnTracks(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise NotOwnTracks("body must be a JSON object with an _type (an OwnTracks message)")
    if json_depth(doc) > MAX_JSON_DEPTH:
        raise NotOwnTracks(f"message nested deeper than {MAX_JSON_DEPTH} levels")
    doc = clean_json(doc)
    if not isinstance(doc.get("_type"), str) or not doc["_type"].strip():
        raise NotOwnTracks("message has no _type: not an OwnTracks message")
    for name in SECRET_FIELDS:
        if name in doc:
            doc[name] = "(removed)"
    return doc


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def with_topic(message: dict, topic: str) -> dict:
    """The message with the topic it came on (``owntracks/<user>/<device>``), as iOS adds it in
    HTTP mode, so that a message stored from MQTT and one posted over HTTP look alike."""
    base = "/".join(topic.split("/")[:3])
    if topic and not isinstance(message.get("topic"), str):
        return {**message, "topic": base}
    return message


def topic_from_headers(user: str, device: str) -> str:
    """The topic the app would have published on, from the ``X-Limit-U``/``X-Limit-D`` headers."""
    user, device = user.strip()[:100], device.strip()[:100]
    return f"owntracks/{user}/{device}" if user and device else ""


def message_key(message: dict) -> str:
    """The message's identity: ``<type>/<tst>`` (``/<event>/<region>`` for a transition), or a
    digest of its content for the types that carry no time."""
    kind = str(message.get("_type"))[:40]
    tst = message.get("tst")
    if kind in ("location", "lwt", "waypoint", "transition") and _is_number(tst):
        key = f"{kind}/{int(tst)}"
        if kind == "transition":
            region = str(message.get("rid") or message.get("desc") or "")[:80]
            key += f"/{str(message.get('event'))[:10]}/{region}"
        return key
    canonical = json.dumps({k: v for k, v in message.items() if k != "topic"}, sort_keys=True, ensure_ascii=False)
    return f"{kind}/{hashlib.sha256(canonical.encode()).hexdigest()[:24]}"


def raw_item(message: dict, received_at: dt.datetime | None = None) -> RawItem:
    """The item to store for a message (its external id is its key, unique within the device)."""
    return RawItem(f"ot/{message_key(message)}", message, received_at)


def mqtt_raw_item(topic: str, payload: bytes, received_at: dt.datetime | None = None) -> RawItem | None:
    """One MQTT message on ``owntracks/<user>/<device>[/event|/lwt|…]`` as the item to store,
    or None for an empty (retained-clearing) payload. Raises NotOwnTracks for a payload that is
    not an OwnTracks message."""
    message = parse_message(payload)
    if message is None:
        return None
    return raw_item(with_topic(message, topic), received_at)


# --- normalizing --------------------------------------------------------------------------------


def normalize_message(raw: RawItem, *, device: int, places_public: bool = False) -> ActivityDraft:
    """One stored message as the device event draft. ``places_public``: the device's places go
    to the lifestream (its fixes and transitions are made public; the lifestream still checks
    the device's setting when it reads, so turning it off hides them all at once)."""
    message = raw.payload
    if not isinstance(message, dict):
        raise BadItem("an OwnTracks message must be a JSON object")
    if "_error" in message:
        raise BadItem(str(message["_error"]))
    kind = message.get("_type")
    build = BUILDERS.get(kind) if isinstance(kind, str) else None
    if kind == "encrypted":
        raise BadItem("OwnTracks message is encrypted (the app's payload encryption): kept raw, not readable "
                      "without its key; turn encryption off in the app to import its messages")
    if build is None:
        raise BadItem(f"OwnTracks message of type {str(kind)[:40]!r} is kept raw and not imported "
                      f"(Mesh reads {', '.join(KNOWN_TYPES)})")
    etype, extra, text, when = build(message, raw)
    place_event = etype.startswith("location")
    return ActivityDraft(
        channel="device",
        verb=etype.split(".")[0],
        direction="none",
        occurred_at=when,
        dedup_key=f"owntracks:{device}/{message_key(message)}"[:255],
        text=text,
        device=str(device),
        visibility="public" if (places_public and place_event) else "private",
        extra={"type": etype, **extra},
    )


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _time(value, field: str) -> dt.datetime:
    if not _is_number(value):
        raise BadItem(f"{field} must be epoch seconds (a number), not {json.dumps(value)[:40]}")
    try:
        when = times.parse_time(value)
    except ValueError as exc:
        raise BadItem(f"{field}: {exc}") from None
    if when.year < MIN_YEAR:
        raise BadItem(f"{field} {int(value)} is before {MIN_YEAR}")
    if when > dt.datetime.now(dt.UTC) + MAX_CLOCK_SKEW:
        raise BadItem(f"{field} {int(value)} is in the future")
    return when


def _message_time(message: dict, raw: RawItem) -> dt.datetime:
    """When a message with no required ``tst`` happened: its ``tst`` or ``created_at``, else
    when Mesh received it."""
    for field in ("tst", "created_at"):
        if field in message:
            return _time(message[field], field)
    if raw.received_at is not None:
        return raw.received_at
    raise BadItem("message has no tst or created_at, and no time it was received")


def _point(message: dict, *, required: bool) -> dict:
    lat, lon = message.get("lat"), message.get("lon")
    if lat is None and lon is None and not required:
        return {}
    if not (_is_number(lat) and -90 <= lat <= 90):
        raise BadItem(f"lat must be a number from -90 to 90, not {json.dumps(lat)[:40]}")
    if not (_is_number(lon) and -180 <= lon <= 180):
        raise BadItem(f"lon must be a number from -180 to 180, not {json.dumps(lon)[:40]}")
    point = {"lat": lat, "lon": lon}
    if _is_number(message.get("acc")) and message["acc"] >= 0:
        point["accuracy"] = message["acc"]
    return point


def _text(value) -> str:
    return value.strip()[:MAX_TEXT] if isinstance(value, str) else ""


def _strings(value) -> list[str]:
    return [v[:MAX_TEXT] for v in value if isinstance(v, str) and v.strip()][:20] if isinstance(value, list) else []


def _copy(message: dict, pairs: dict[str, str]) -> dict:
    """The fields present in ``message`` (OwnTracks' name → Mesh's), numbers and short strings only."""
    out = {}
    for theirs, ours in pairs.items():
        value = message.get(theirs)
        if _is_number(value) or (isinstance(value, str) and value.strip()):
            out[ours] = value if _is_number(value) else value.strip()[:MAX_TEXT]
    return out


def _location(message: dict, raw: RawItem):
    when = _time(message.get("tst"), "tst")
    extra = _point(message, required=True)
    regions = _strings(message.get("inregions"))
    if regions:
        extra["place"] = regions[0]
        extra["inregions"] = regions
    if _is_number(message.get("batt")):
        extra["battery"] = message["batt"]
    if message.get("bs") in CHARGING:
        extra["charging"] = CHARGING[message["bs"]]
    if message.get("conn") in NETWORK:
        extra["network"] = NETWORK[message["conn"]]
    extra.update(_copy(message, {"alt": "altitude", "vel": "velocity", "cog": "course", "t": "trigger",
                                 "tid": "tid", "SSID": "ssid", "BSSID": "bssid", "poi": "poi"}))
    if _strings(message.get("inrids")):
        extra["region_ids"] = _strings(message["inrids"])
    text = f"At {regions[0]}" if regions else ""
    return "location", extra, text, when


def _transition(message: dict, raw: RawItem):
    when = _time(message.get("tst"), "tst")
    event = message.get("event")
    if event not in ("enter", "leave"):
        raise BadItem(f"transition event must be 'enter' or 'leave', not {json.dumps(event)[:40]}")
    extra = _point(message, required=False)
    name = _text(message.get("desc"))
    if name:
        extra["place"] = name
    extra.update(_copy(message, {"t": "trigger", "tid": "tid", "rid": "region_id"}))
    if _is_number(message.get("wtst")):
        extra["region_created_at"] = _time(message["wtst"], "wtst").isoformat()
    region = name or "a region"
    text = f"Arrived at {region}" if event == "enter" else f"Left {region}"
    return f"location.{event}", extra, text, when


def _region(message: dict) -> dict:
    """A waypoint as a named region. Its centre is not where the device is: latitude/longitude,
    not lat/lon (which the device's state and the places read as its position)."""
    name = _text(message.get("desc"))
    if not name:
        raise BadItem("a waypoint needs a desc (its name)")
    region = {"name": name}
    lat, lon = message.get("lat"), message.get("lon")
    if lat is not None or lon is not None:
        point = _point(message, required=True)
        region.update(latitude=point["lat"], longitude=point["lon"])
    if _is_number(message.get("rad")) and message["rad"] >= 0:
        region["radius"] = message["rad"]
    if isinstance(message.get("rid"), str) and message["rid"].strip():
        region["region_id"] = message["rid"].strip()[:80]
    return region


def _waypoint(message: dict, raw: RawItem):
    when = _time(message.get("tst"), "tst")
    region = _region(message)
    return "place.defined", region, f"Place defined: {region['name']}", when


def _waypoints(message: dict, raw: RawItem):
    items = message.get("waypoints")
    if not isinstance(items, list) or not all(isinstance(w, dict) for w in items):
        raise BadItem("waypoints must be a list of waypoint objects")
    regions = [_region(w) for w in items]
    stamps = [w["tst"] for w in items if _is_number(w.get("tst"))]
    when = _time(max(stamps), "tst") if stamps else _message_time(message, raw)
    names = ", ".join(r["name"] for r in regions)
    return "place.defined", {"places": regions}, f"Places defined: {names}"[:MAX_TEXT], when


def _lwt(message: dict, raw: RawItem):
    connected = _time(message.get("tst"), "tst")
    # The broker publishes the will when it loses the app; tst is when the app connected.
    when = raw.received_at if raw.received_at is not None and raw.received_at >= connected else connected
    return "presence.offline", {"presence": "offline", "connected_at": connected.isoformat()}, "", when


def _status(message: dict, raw: RawItem):
    when = _message_time(message, raw)
    extra = {k: v for k, v in message.items() if k in ("iOS", "android") and isinstance(v, dict)}
    return "status", extra, "", when


def _card(message: dict, raw: RawItem):
    when = _message_time(message, raw)
    extra = _copy(message, {"name": "name", "tid": "tid"})
    # The face is a base64 PNG: it stays in the raw message, not in what pages show.
    return "card", extra, extra.get("name", ""), when


BUILDERS = {
    "location": _location, "transition": _transition, "waypoint": _waypoint, "waypoints": _waypoints,
    "lwt": _lwt, "status": _status, "card": _card,
}
