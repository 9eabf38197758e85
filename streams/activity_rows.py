"""The dense timeline's one-line rows: calls, meetings, battery, locations and other device
events, and automated mail, each as a human label ("Missed call", "Call · 9 min 20 s",
"Meeting · 15 min", "Battery 78 %") instead of a card with a raw type; and the summary of a
folded run of them ("Battery 31–80 % · 7 reports"). Messages people wrote stay full cards.
No queries: values come from the decorated activity (streams.presenters).
"""

from __future__ import annotations

from .models import Activity


def human_duration(seconds) -> str:
    """ "45 s", "9 min 20 s", "15 min", "1 h 2 min"; "" for nothing or no number."""
    try:
        total = int(float(seconds))
    except (TypeError, ValueError, OverflowError):
        return ""
    if total <= 0:
        return ""
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if value == value and abs(value) != float("inf") else None


def _words(event_type: str) -> str:
    """``step_count`` → "Step count", ``app.opened`` → "App opened"."""
    text = event_type.replace(".", " ").replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else "Event"


def _extra(a: Activity) -> dict:
    return a.extra if isinstance(a.extra, dict) else {}


def _battery_level(a: Activity) -> float | None:
    return _number(_extra(a).get("battery"))


def _place(a: Activity) -> str:
    extra = _extra(a)
    place = extra.get("place")
    if isinstance(place, str) and place.strip():
        return place.strip()[:120]
    if a.text:
        return a.text[:120]
    lat, lon = _number(extra.get("lat")), _number(extra.get("lon"))
    return f"{lat:.4f}, {lon:.4f}" if lat is not None and lon is not None else ""


def activity_row(a: Activity) -> dict | None:
    """The row an activity is shown as, or None for a card (a message, a note with text).
    ``a`` is decorated: ``event_type`` and ``extra_items`` are set."""
    if a.channel == "email":
        if not a.automated:
            return None
        return {"icon": "email", "label": "Automated mail", "detail": a.subject or "(no subject)", "direction": ""}
    if a.channel != "device":
        return None
    etype = str(a.event_type or "")
    extra = _extra(a)
    if etype.startswith("sms.") or etype.startswith("mms."):
        return None
    if etype.startswith("call."):
        if etype == "call.missed":
            return {"icon": "missed", "label": "Missed call", "detail": a.subject or a.text, "direction": ""}
        length = human_duration(extra.get("duration", extra.get("duration_seconds")))
        return {"icon": "call", "label": f"Call · {length}" if length else "Call",
                "detail": a.subject or a.text, "direction": a.direction if a.direction in ("in", "out") else ""}
    if etype.startswith("meeting."):
        length = human_duration(extra.get("duration", extra.get("duration_seconds")))
        return {"icon": "meeting", "label": f"Meeting · {length}" if length else "Meeting",
                "detail": a.subject or a.text, "direction": ""}
    if etype == "battery":
        level = _battery_level(a)
        label = f"Battery {level:g} %" if level is not None else "Battery"
        if extra.get("charging") is True:
            label += " · charging"
        return {"icon": "battery", "label": label, "detail": a.text, "direction": ""}
    if etype == "location":
        return {"icon": "location", "label": "Location", "detail": _place(a), "direction": ""}
    if a.text or a.subject:
        return None  # a note someone wrote: a card
    detail = " · ".join(f"{key} {value}" for key, value in a.extra_items)
    return {"icon": "event", "label": _words(etype), "detail": detail[:160], "direction": ""}


def run_summary(items: list[Activity], noun: str) -> dict:
    """A folded run of rows of one kind (oldest first): "Battery 31–80 % · 7 reports",
    "Location · 5 updates" with the places, "12 step counts"."""
    first = items[0]
    n = len(items)
    if first.event_type == "battery":
        levels = [x for x in (_battery_level(a) for a in items) if x is not None]
        if levels:
            low, high = min(levels), max(levels)
            span = f"{low:g} %" if low == high else f"{low:g}–{high:g} %"
            return {"icon": "battery", "label": f"Battery {span} · {n} reports", "detail": ""}
    if first.event_type == "location":
        places = list(dict.fromkeys(p for p in (_place(a) for a in items) if p))
        detail = ", ".join(places[:3]) + (f" and {len(places) - 3} more" if len(places) > 3 else "")
        return {"icon": "location", "label": f"Location · {n} updates", "detail": detail}
    icon = first.row["icon"] if first.row else "event"
    return {"icon": icon, "label": f"{n} {noun}", "detail": ""}


DIRECTION_WORDS = {"in": "received", "out": "sent"}
X_VERBS = {"post": "post", "share": "repost", "mention": "mention", "reply": "reply"}
EVENT_WORDS = {"call.missed": "Missed call", "call.incoming": "Incoming call", "call.outgoing": "Outgoing call",
               "meeting.attended": "Meeting"}


def card_verb(a: Activity) -> str:
    """What a card's head says beside its channel: "received"/"sent" for messages, "post",
    "mention"… for X, the event in words for a device; never a raw type like ``sms.sent``."""
    etype = str(a.event_type or "")
    if (a.channel in ("email", "sms") or getattr(a, "is_dm", False) or etype.startswith(("sms.", "mms."))
            or a.verb in ("send", "receive")):
        return DIRECTION_WORDS.get(a.direction, "")
    if a.channel == "twitter":
        return X_VERBS.get(a.verb, _words(a.verb).lower())
    if a.channel == "device":
        return EVENT_WORDS.get(etype) or _words(etype)
    return _words(a.verb)
