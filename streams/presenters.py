"""How activities, devices and sources look on a page: plain display values prepared from what
is stored (templates escape them all), the timeline's grouping into blocks, the lifestream's
runs, and the cached rendering of activities (and, through ``render_cached``, of the contact
list's rows: streams.contact_list). Views hand in what selectors read."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from functools import cached_property

from django.core.cache import cache
from django.template.loader import get_template
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from connectors.text import MAX_JSON_DEPTH

from .activity_rows import activity_row, card_verb, run_summary
from .attachments import attachments_served
from .feeds.entries import owner_wrote
from .models import Activity, Contact, Device
from .people import identity_text
from .places import public_extra, public_place_line
from .selectors.devices import device_presence, finite_number

# --- activities: display values ------------------------------------------------------------------

# Extra fields that are shown elsewhere, or are bookkeeping, not something to read.
HIDDEN_EXTRA = {"type", "title", "text", "summary", "thread", "direction", "invalid_participants", "lat", "lon"}
DELIVERY_LABELS = {
    "queued": "queued", "accepted": "queued", "scheduled": "scheduled", "sending": "sending", "sent": "sent",
    "delivered": "delivered", "read": "read", "undelivered": "not delivered", "failed": "failed",
    "receiving": "receiving", "received": "received",
}
DELIVERY_BAD = {"undelivered", "failed"}
# Declared types offered a "View" link; the server shows one inline only if its bytes agree.
PREVIEW_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def _duration(seconds) -> str:
    try:
        total = int(float(seconds))
    except (TypeError, ValueError):
        return str(seconds)
    hours, rest = divmod(abs(total), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


# A stored value is shown as at most this much text: ``extra`` and device state hold whatever a
# source sent, and an item stored before the doors bounded it must still render.
PLAIN_CHARS = 300


def _plain(value, *, limit: int = PLAIN_CHARS) -> str:
    """A JSON value as short readable text (still escaped by the template): at most ``limit``
    characters, nesting deeper than ``MAX_JSON_DEPTH`` shown as "…". The walk stops as soon as
    the text is long enough, so a huge or deeply nested value costs no more than a small one."""
    parts: list[str] = []
    room = limit + 1  # one more than shown, to know whether to end with "…"

    def add(text: str) -> None:
        nonlocal room
        parts.append(text[:room])
        room -= len(parts[-1])

    def walk(item, depth: int) -> None:
        if isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                add("…")
                return
            pairs = item.items() if isinstance(item, dict) else ((None, v) for v in item)
            for i, (key, child) in enumerate(pairs):
                if room <= 0:
                    return
                if i:
                    add(", ")
                if key is not None:
                    add(f"{key}: ")
                walk(child, depth + 1)
        elif isinstance(item, bool):
            add("yes" if item else "no")
        elif item is None:
            add("—")
        else:
            add(str(item))

    walk(value, 0)
    text = "".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _map_url(lat, lon) -> str:
    """A link (never an embedded map: that would be a request to a third party on page load)."""
    la, lo = finite_number(lat), finite_number(lon)
    if la is None or lo is None or not (-90 <= la <= 90 and -180 <= lo <= 180):
        return ""
    return f"https://www.openstreetmap.org/?mlat={la:.5f}&mlon={lo:.5f}#map=16/{la:.5f}/{lo:.5f}"


def _extra_items(extra: dict) -> list[tuple[str, str]]:
    extra = extra if isinstance(extra, dict) else {}
    items: list[tuple[str, str]] = []
    if "lat" in extra and "lon" in extra:
        items.append(("location", f"{_plain(extra['lat'])}, {_plain(extra['lon'])}"))
    for key, value in extra.items():
        if key in HIDDEN_EXTRA:
            continue
        if key in ("duration", "duration_seconds"):
            text = _duration(value)
        elif key == "battery" and isinstance(value, int | float) and not isinstance(value, bool):
            text = f"{value:g}%"
        else:
            text = _plain(value)
        items.append((key.replace("_", " "), text[:300]))
    return items


def _http_url(url: str) -> str:
    """Only http(s) links are rendered as links: no javascript: or data: from a source."""
    url = (url or "").strip()
    return url if url.lower().startswith(("http://", "https://")) else ""


def _size(n) -> str:
    try:
        n = int(n)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def decorate_activities(activities: list[Activity], *, region: str = "") -> list[Activity]:
    """Attach display values to each activity of a page (no queries: the selector attached
    each activity's participants as ``persons``). ``region``: the workspace's, for phone
    numbers (national format at home)."""
    for a in activities:
        extra = a.extra if isinstance(a.extra, dict) else {}
        a.extra_items = _extra_items(extra) if a.channel == "device" else []
        # Stored extra is whatever a source sent: only a string is a type or a snippet.
        etype = extra.get("type") if a.channel == "device" else None
        a.event_type = etype if isinstance(etype, str) else a.verb
        a.map_url = _map_url(extra.get("lat"), extra.get("lon")) if a.channel == "device" else ""
        a.link = _http_url(a.url)
        snippet = extra.get("snippet") if a.channel == "email" else None
        a.snippet = snippet if isinstance(snippet, str) else ""
        a.has_html = bool((a.html or "").strip())
        a.remote_images = _int(extra.get("remote_images_blocked"))
        a.tracking_pixels = _int(extra.get("tracking_pixels"))
        delivery = extra.get("delivery") if isinstance(extra.get("delivery"), dict) else {}
        state = str(delivery.get("state") or "")
        a.delivery = {
            "state": state, "label": DELIVERY_LABELS.get(state, state.replace("_", " ")),
            "bad": state in DELIVERY_BAD, "error_code": _plain(delivery.get("error_code") or ""),
        } if state and not (a.direction == "in" and state in ("received", "receiving")) else None
        a.is_dm = a.channel == "twitter" and a.verb in ("message", "dm", "direct_message")
        served = attachments_served(connector=a.connector)
        a.attachment_list = [
            {"name": _plain(att.get("name") or att.get("filename") or "attachment"),
             "type": _plain(att.get("mediaType") or att.get("content_type") or att.get("type") or ""),
             "size": _size(att.get("size")), "inline": bool(att.get("content_id")),
             # Its place in the stored list is its URL (/activities/<id>/attachments/<index>).
             "index": index if served else None,
             "preview": served and str(att.get("mediaType") or att.get("type") or "").lower() in PREVIEW_TYPES}
            for index, att in enumerate(a.attachments or []) if isinstance(att, dict)
        ]
        a.people = [
            {"role": p.role, "name": p.name, "label": p.label,
             "contact_id": None if p.is_self else p.contact_id, "is_self": p.is_self,
             "text": identity_text(p.kind, p.value, p.display, region)}
            for p in a.persons
        ]
        a.row = activity_row(a)
        a.verb_label = card_verb(a)
    return activities


# Rendered rows are cached (activities, contact-list rows): the same rows are shown again and again
# (every visit, every "older" click), and rendering 50 of them with Django templates costs more
# than reading them. A key holds everything its fragment depends on, so an entry is never stale.
FRAGMENT_VERSION = "web-4"
FRAGMENT_SECONDS = 24 * 3600


def render_cached(items: list, *, template: str, kind: str, key_parts, context, ready=None) -> None:
    """Set ``item.fragment`` to ``template`` rendered with ``context(item)``, from the cache under a key
    made from ``key_parts(item)`` (naming all the HTML shows); not if ``ready(keys)``: page_cache."""
    if not items:
        return
    keys = [f"mesh:frag:{FRAGMENT_VERSION}:{kind}:"
            + hashlib.blake2b(repr(key_parts(item)).encode(), digest_size=12).hexdigest() for item in items]
    if ready is not None and ready(keys):
        return
    cached = cache.get_many(keys)
    fresh = {}
    for item, key in zip(items, keys, strict=True):
        html = cached.get(key)
        if html is None:
            html = fresh[key] = get_template(template).render(context(item))  # the loader caches it
        item.fragment = mark_safe(html)  # our own template's output: every value in it was escaped
    if fresh:
        cache.set_many(fresh, FRAGMENT_SECONDS)


def render_activities(activities: list[Activity], *, contact: Contact | None = None, hide_device: bool = False,
                      highlight: list[str] | None = None, live: bool = False, show_date: bool = False, ready=None) -> None:
    """Set ``a.fragment`` (the rendered ``_activity.html``) on each activity. Its key: the
    activity's updated_at (bumped by delivery-state changes and reprocessing), its participants'
    contacts (merges), its device's name, and how the page shows it."""
    # Times are rendered in the reader's zone (streams.timezones): part of the key.
    page_key = (contact.pk if contact else None, hide_device, tuple(highlight or ()), live, show_date,
                timezone.get_current_timezone_name())
    for a in activities:
        # Nothing the page already says: not the contact whose page it is, not the owner (the
        # direction says which way it went).
        a.shown_people = [p for p in a.people if not p["is_self"] and not (contact and p["contact_id"] == contact.pk)]
    render_cached(
        activities, template="streams/_activity.html", kind="a",
        key_parts=lambda a: (a.pk, a.updated_at.isoformat(), a.device.name if a.device else "",
                             tuple((p.role, p.contact_id, p.display) for p in a.persons),
                             tuple(p["text"] for p in a.people), page_key),
        context=lambda a: {"a": a, "contact": contact, "hide_device": hide_device, "highlight": highlight or [],
                           "live": live, "show_date": show_date}, ready=ready)


@dataclass
class Block:
    """What the timeline shows as one piece: a single activity, an email thread, an SMS
    conversation (a run of texts on one day), or a folded run of one device event (battery
    reports, location updates). Items are oldest first, to read top to bottom."""

    kind: str  # "single", "thread", "sms", "run"
    items: list[Activity] = field(default_factory=list)

    @property
    def newest(self) -> Activity:
        return self.items[-1]

    @property
    def oldest(self) -> Activity:
        return self.items[0]

    @cached_property
    def day(self) -> dt.date:
        # Read several times per block by the template; the block is complete by then.
        return _local_day(self.newest)

    @property
    def subject(self) -> str:
        return next((a.subject for a in self.items if a.subject), "")

    @property
    def summary(self) -> dict:
        """A run's one line ("Battery 31–80 % · 7 reports")."""
        return run_summary(self.items, _run_noun(self.oldest))


def _thread_of(a: Activity) -> str:
    extra = a.extra if isinstance(a.extra, dict) else {}
    return a.thread_key or str(extra.get("thread") or "")


def timeline_blocks(activities: list[Activity], *, conversations: bool = True) -> list[Block]:
    """Group a newest-first page: every message of an email thread on the page joins the
    thread's newest one; consecutive texts of one day read as one conversation; consecutive
    one-line device events of one kind on one day fold into a run, as on the lifestream
    (``_similar_key``, ``AGGREGATE_MIN``). Days are the reader's (the active time zone).
    Without ``conversations`` (a device's page, where texts are with different people) only
    runs are folded."""
    blocks: list[Block] = []
    threads: dict[str, Block] = {}
    for a in activities:
        if conversations and a.channel == "email" and _thread_of(a):
            key = _thread_of(a)
            block = threads.get(key)
            if block is None:
                block = threads[key] = Block("thread")
                blocks.append(block)
            block.items.insert(0, a)
            continue
        last = blocks[-1] if blocks else None
        if conversations and (a.channel == "sms" or (a.channel == "device" and str(a.event_type).startswith("sms."))):
            if last is not None and last.kind == "sms" and _local_day(last.oldest) == _local_day(a):
                last.items.insert(0, a)
                continue
            blocks.append(Block("sms", [a]))
            continue
        if getattr(a, "row", None) and a.channel == "device":
            if last is not None and last.kind == "run" and _same_run(last.oldest, a):
                last.items.insert(0, a)
                continue
            blocks.append(Block("run", [a]))
            continue
        blocks.append(Block("single", [a]))
    # A run too short to fold is its items, newest first like the page.
    folded: list[Block] = []
    for block in blocks:
        if block.kind == "run" and len(block.items) < AGGREGATE_MIN:
            folded.extend(Block("single", [a]) for a in reversed(block.items))
        else:
            folded.append(block)
    return folded


# --- devices and sources -------------------------------------------------------------------------

def device_state_items(state: dict) -> list[dict]:
    items = []
    for key, entry in sorted((state or {}).items()):
        if isinstance(entry, dict) and "value" in entry:
            value, at = entry.get("value"), entry.get("at")
        else:
            value, at = entry, None
        if key == "battery" and isinstance(value, int | float) and not isinstance(value, bool):
            text = f"{value:g}%"
        else:
            text = _plain(value)
        when = None
        if isinstance(at, str):
            try:
                when = dt.datetime.fromisoformat(at)
            except ValueError:
                when = None
        items.append({"key": key.replace("_", " "), "value": text[:300], "at": when, "raw": value})
    return items


def device_status(device: Device, now: dt.datetime | None = None) -> dict:
    """Presence, last seen, battery and last place as a page shows them: the values of
    ``selectors.device_presence`` (the one rule), with their display text."""
    presence = device_presence(device=device, now=now)
    state = {i["key"]: i for i in device_state_items(device.state)}
    place = presence.place
    location = None
    if place:
        location = {"lat": state["lat"]["value"], "lon": state["lon"]["value"], "place": place["place"],
                    "at": place["at"], "map_url": _map_url(place["lat"], place["lon"])}
    return {
        "presence": presence.state, "reason": presence.reason, "seen": presence.last_seen,
        "reported_presence": presence.reported,
        "battery": state.get("battery"), "battery_level": presence.battery,
        "charging": presence.charging, "location": location,
    }


def lag_words(seconds: int | None) -> str:
    """A lag as people say it: "40 seconds", "5 hours", "3 days"."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{max(seconds, 0)} second{'' if seconds == 1 else 's'}"
    now = timezone.now()
    return timesince(now - dt.timedelta(seconds=seconds), now, depth=1)


def connector_info(cls) -> dict | None:
    # Plain values: a template would call the class (it calls whatever is callable).
    if cls is None:
        return None
    return {"key": cls.key, "label": cls.label or cls.key, "pollable": cls.pollable, "importable": cls.importable}


# --- lifestream --------------------------------------------------------------------------------

AGGREGATE_MIN = 3  # a run of this many similar items becomes one line
RUN_NOUNS = {
    "location": "location updates", "battery": "battery reports", "presence": "presence updates",
    "network": "network changes", "step_count": "step counts", "steps": "step counts",
    "call.incoming": "incoming calls", "call.outgoing": "outgoing calls", "call.missed": "missed calls",
    "post": "posts", "ping": "pings",
}


@dataclass
class LifeEntry:
    items: list[Activity]
    noun: str = ""
    source_name: str = ""

    @property
    def first(self) -> Activity:
        return self.items[0]

    @property
    def oldest(self) -> Activity:
        return self.items[-1]

    @property
    def aggregated(self) -> bool:
        return len(self.items) > 1

    @property
    def day(self) -> dt.date:
        return _local_day(self.first)


def _similar_key(a: Activity) -> tuple | None:
    """Items with the same key in a row are aggregated; None: always shown on its own."""
    if a.channel == "device":
        return ("device", a.device_id, a.event_type)
    return None  # messages and posts are what people come to read


def _local_day(a: Activity) -> dt.date:
    """The item's day where the reader is (the active time zone: streams.timezones)."""
    return timezone.localtime(a.occurred_at).date()


def _same_run(a: Activity, b: Activity) -> bool:
    """Two items that fold into one run: similar (``_similar_key``) and on the same day."""
    key = _similar_key(a)
    return key is not None and key == _similar_key(b) and _local_day(a) == _local_day(b)


def _run_noun(a: Activity) -> str:
    return RUN_NOUNS.get(a.event_type) or f"{str(a.event_type).replace('_', ' ')} events"


def decorate_lifestream_activities(activities: list[Activity]) -> list[Activity]:
    """Display values for the public page, under the feeds' rule "the lifestream names no one"
    (docs/feeds.md): the subject, text, link and details of an item are shown only where the
    owner wrote it; anything else (a received message, a device's note about a call) shows its
    kind and time. The page never shows participants, and a place only coarsened
    (``streams.places.public_extra``)."""
    for a in activities:
        a.public_place = ""
        if a.channel == "device":
            a.extra = public_extra(a.verb, a.extra)
            a.public_place = public_place_line(a.verb, a.extra)
    for a in decorate_activities(activities):
        sender = next((p for p in a.persons if p.role in ("from", "author")), None)
        if owner_wrote(a, a.persons, sender):
            a.shown_subject, a.shown_text = a.subject, a.text
            if a.public_place:  # said once, on its own line
                a.extra_items = []
        else:
            a.shown_subject = a.shown_text = a.link = a.public_place = ""
            a.extra_items = []
    return activities


def lifestream_entries(activities: list[Activity]) -> list[LifeEntry]:
    """Newest first, with each run of similar items (a device's location updates on one day)
    as one entry."""
    entries: list[LifeEntry] = []
    run: list[Activity] = []

    def flush():
        if len(run) >= AGGREGATE_MIN:
            a = run[0]
            entries.append(LifeEntry(list(run), noun=_run_noun(a), source_name=a.device.name if a.device else ""))
        else:
            entries.extend(LifeEntry([x]) for x in run)
        run.clear()

    for a in activities:
        key = _similar_key(a)
        if run and (key is None or not _same_run(run[0], a)):
            flush()
        if key is None:
            entries.append(LifeEntry([a]))
        else:
            run.append(a)
    flush()
    return entries

