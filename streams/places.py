"""Places: where a device stayed, from its location fixes and region transitions, and how much
of it the public may see.

Visits are computed when a page asks, from the device's newest ``VISIT_WINDOW`` fixes (one
range scan of ``activity_place_idx``), not stored: a stored table would have to be rebuilt for
every late fix a phone resends after a day offline, every reprocess and every erasure, while a
window of 2,000 fixes is read and clustered in milliseconds whatever the size of the database.

- **Stay points** (Li et al., "Mining user similarity based on location history", 2008): a run
  of consecutive fixes all within ``STAY_RADIUS_M`` of its first fix, lasting at least
  ``STAY_MIN``, is a visit from its first fix to its last. A fix's own accuracy widens the
  radius it is judged by (by at most the radius itself), and a fix less accurate than
  ``MAX_ACCURACY_M`` neither starts nor breaks a stay: a cell-tower fix 2 km off is noise. Fixes
  more than ``MAX_GAP`` apart are not one stay (nothing is known of the time between).
- **Transitions**: an OwnTracks ``enter`` then ``leave`` of a region is a visit with exact times
  and the region's name; a stay point overlapping one is the same visit and is dropped.
- **Names**: the defined region (``place.defined``) whose circle holds the visit's centre, else
  the regions the fixes were in (``inregions``), else the ``place`` the fixes name.

The lifestream shows places only from devices whose ``places_public`` is on, with coordinates
rounded to ``MESH_LIFESTREAM_PLACE_PRECISION`` decimal places (``coarse_point``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .conf import conf
from .models import Device
from .selectors.places import PLACE_VERBS, device_place_events, device_region_events

# What makes a stay: 100 m is a building and its car park, 10 minutes more than a red light.
STAY_RADIUS_M = 100.0
STAY_MIN = dt.timedelta(minutes=10)
# Two fixes further apart than this say nothing about the time between (a phone off, a day
# without reports): a stay ends at the first of them. A night at home without a report is less.
MAX_GAP = dt.timedelta(hours=12)
MAX_ACCURACY_M = 1000.0
# How many of the newest fixes a device page clusters.
VISIT_WINDOW = 2000
EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True, slots=True)
class Fix:
    at: dt.datetime
    lat: float
    lon: float
    accuracy: float = 0.0
    places: tuple[str, ...] = ()  # what the device said it was in (inregions, or its place)


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    lat: float
    lon: float
    radius: float


@dataclass(frozen=True, slots=True)
class Transition:
    at: dt.datetime
    event: str  # "enter" or "leave"
    place: str
    lat: float | None = None
    lon: float | None = None


@dataclass(slots=True)
class Visit:
    arrival: dt.datetime
    departure: dt.datetime | None  # None: still there (the newest fix or an enter without leave)
    lat: float | None
    lon: float | None
    place: str = ""
    fixes: int = 0
    origin: str = "fixes"  # or "transition"
    extra: dict = field(default_factory=dict)

    @property
    def duration(self) -> dt.timedelta | None:
        return None if self.departure is None else self.departure - self.arrival


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _within(anchor: Fix, fix: Fix, radius: float) -> bool:
    return distance_m(anchor.lat, anchor.lon, fix.lat, fix.lon) <= radius + min(fix.accuracy, radius)


def stay_points(fixes: Iterable[Fix], *, radius: float = STAY_RADIUS_M, min_stay: dt.timedelta = STAY_MIN,
                max_accuracy: float = MAX_ACCURACY_M, max_gap: dt.timedelta = MAX_GAP,
                ongoing: bool = True) -> list[Visit]:
    """The stays in ``fixes`` (oldest first), each a Visit from its first fix to its last. With
    ``ongoing``, a stay that the newest fix is still part of has no departure."""
    usable = [f for f in fixes if f.accuracy <= max_accuracy]
    found: list[Visit] = []
    i = 0
    while i < len(usable):
        anchor = usable[i]
        j = i + 1
        while (j < len(usable) and usable[j].at - usable[j - 1].at <= max_gap
               and _within(anchor, usable[j], radius)):
            j += 1
        run = usable[i:j]
        if run[-1].at - anchor.at >= min_stay:
            found.append(_visit_of(run, still_there=ongoing and j == len(usable)))
            i = j
        else:
            i += 1
    return found


def _visit_of(run: list[Fix], *, still_there: bool) -> Visit:
    # The centre weights precise fixes more (1/accuracy², with 5 m as the floor: GPS at best).
    weights = [1 / max(f.accuracy, 5.0) ** 2 for f in run]
    total = sum(weights)
    lat = sum(f.lat * w for f, w in zip(run, weights, strict=True)) / total
    lon = sum(f.lon * w for f, w in zip(run, weights, strict=True)) / total
    named = Counter(name for f in run for name in f.places[:1])
    return Visit(arrival=run[0].at, departure=None if still_there else run[-1].at, lat=lat, lon=lon,
                 place=named.most_common(1)[0][0] if named else "", fixes=len(run))


def transition_visits(transitions: Iterable[Transition]) -> list[Visit]:
    """Each ``enter`` with the next ``leave`` of the same place (oldest first); an enter not
    left yet is a visit still going on. A leave with no enter before it says nothing about
    when the stay began: it is left out."""
    open_: dict[str, Transition] = {}
    found: list[Visit] = []
    for t in sorted(transitions, key=lambda t: t.at):
        if t.event == "enter":
            open_.setdefault(t.place, t)
        elif t.event == "leave" and t.place in open_:
            enter = open_.pop(t.place)
            found.append(Visit(arrival=enter.at, departure=t.at, lat=enter.lat, lon=enter.lon, place=t.place,
                               origin="transition"))
    found.extend(Visit(arrival=t.at, departure=None, lat=t.lat, lon=t.lon, place=t.place, origin="transition")
                 for t in open_.values())
    return found


def _overlaps(a: Visit, b: Visit, now: dt.datetime) -> bool:
    return a.arrival <= (b.departure or now) and b.arrival <= (a.departure or now)


def region_named(lat: float, lon: float, regions: Iterable[Region]) -> str:
    """The name of the nearest defined region whose circle holds the point, or ""."""
    best = min(((distance_m(lat, lon, r.lat, r.lon), r) for r in regions
                if distance_m(lat, lon, r.lat, r.lon) <= r.radius), default=None, key=lambda pair: pair[0])
    return best[1].name if best else ""


def visits(fixes: list[Fix], transitions: list[Transition] = (), regions: list[Region] = (),
           *, now: dt.datetime | None = None) -> list[Visit]:
    """Every visit, newest first: transitions' visits, and stay points that overlap none of them,
    each named (see the module's docstring)."""
    now = now or dt.datetime.now(dt.UTC)
    exact = transition_visits(transitions)
    stays = [v for v in stay_points(sorted(fixes, key=lambda f: f.at))
             if not any(_overlaps(v, t, now) for t in exact)]
    for v in stays:
        v.place = region_named(v.lat, v.lon, regions) or v.place
    return sorted([*exact, *stays], key=lambda v: v.arrival, reverse=True)


# --- reading stored events ----------------------------------------------------------------------


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def fix_from_extra(at: dt.datetime, extra: dict) -> Fix | None:
    """A stored location event's extra as a Fix, or None when it holds no usable position."""
    lat, lon = _number(extra.get("lat")), _number(extra.get("lon"))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    accuracy = _number(extra.get("accuracy")) or 0.0
    names = extra.get("inregions") if isinstance(extra.get("inregions"), list) else [extra.get("place")]
    places = tuple(n.strip() for n in names if isinstance(n, str) and n.strip())
    return Fix(at, lat, lon, max(accuracy, 0.0), places)


def transition_from_extra(at: dt.datetime, extra: dict) -> Transition | None:
    etype, place = extra.get("type"), extra.get("place")
    if etype not in ("location.enter", "location.leave") or not isinstance(place, str) or not place.strip():
        return None
    return Transition(at, etype.removeprefix("location."), place.strip(), _number(extra.get("lat")),
                      _number(extra.get("lon")))


def regions_from_extra(extra: dict) -> list[Region]:
    """The regions a ``place.defined`` event names (one waypoint, or a list of them)."""
    items = extra.get("places") if isinstance(extra.get("places"), list) else [extra]
    regions = []
    for item in items:
        if not isinstance(item, dict):
            continue
        name, lat, lon = item.get("name"), _number(item.get("latitude")), _number(item.get("longitude"))
        radius = _number(item.get("radius"))
        if isinstance(name, str) and name.strip() and lat is not None and lon is not None:
            regions.append(Region(name.strip(), lat, lon, radius if radius and radius > 0 else STAY_RADIUS_M))
    return regions


def device_visits(*, device: Device, now: dt.datetime | None = None) -> tuple[list[Visit], list[Fix]]:
    """A device's visits (newest first) and the fixes they came from (oldest first)."""
    fixes: list[Fix] = []
    transitions: list[Transition] = []
    for at, extra in device_place_events(device_id=device.pk, limit=VISIT_WINDOW):
        extra = extra if isinstance(extra, dict) else {}
        if extra.get("type") in ("location.enter", "location.leave"):
            if (t := transition_from_extra(at, extra)) is not None:
                transitions.append(t)
        elif (f := fix_from_extra(at, extra)) is not None:
            fixes.append(f)
    # The newest definition of a region wins (a region moved or resized is defined again).
    named: dict[str, Region] = {}
    for extra in device_region_events(device_id=device.pk):
        for region in regions_from_extra(extra if isinstance(extra, dict) else {}):
            named.setdefault(region.name, region)
    fixes.sort(key=lambda f: f.at)
    return visits(fixes, transitions, list(named.values()), now=now), fixes


# --- the device page ----------------------------------------------------------------------------

# The track drawn on the device page: its newest fixes, in a box of this many SVG units.
TRACK_FIXES = 500
TRACK_WIDTH, TRACK_HEIGHT, TRACK_PAD = 640, 320, 12
VISITS_SHOWN = 30


def osm_url(lat: float, lon: float, zoom: int = 16) -> str:
    """A link to the place on openstreetmap.org (a link, never an embedded map: that would be a
    request to a third party on page load)."""
    return f"https://www.openstreetmap.org/?mlat={lat:.5f}&mlon={lon:.5f}#map={zoom}/{lat:.5f}/{lon:.5f}"


def _duration_words(delta: dt.timedelta | None) -> str:
    if delta is None:
        return ""
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes or not (days or hours))
    return " ".join(parts[:2])


def track_geometry(fixes: list[Fix], found: list[Visit]) -> dict | None:
    """The newest fixes as an SVG polyline in a ``TRACK_WIDTH`` × ``TRACK_HEIGHT`` box
    (equirectangular: east–west distances scaled by the cosine of the latitude, so a block
    looks square), the visits as points on it, and the words for people who cannot see it."""
    track = fixes[-TRACK_FIXES:]
    if not track:
        return None
    south, north = min(f.lat for f in track), max(f.lat for f in track)
    west, east = min(f.lon for f in track), max(f.lon for f in track)
    squeeze = math.cos(math.radians((south + north) / 2))
    span_x, span_y = (east - west) * squeeze, north - south
    scale = min((TRACK_WIDTH - 2 * TRACK_PAD) / span_x if span_x else math.inf,
                (TRACK_HEIGHT - 2 * TRACK_PAD) / span_y if span_y else math.inf)
    scale = 0.0 if scale == math.inf else scale
    off_x = (TRACK_WIDTH - span_x * scale) / 2
    off_y = (TRACK_HEIGHT - span_y * scale) / 2

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return round(off_x + (lon - west) * squeeze * scale, 1), round(off_y + (north - lat) * scale, 1)

    marks = []
    for number, v in enumerate(found, 1):
        if v.lat is not None and v.lon is not None and south <= v.lat <= north and west <= v.lon <= east:
            x, y = xy(v.lat, v.lon)
            marks.append({"x": x, "y": y, "number": number, "place": v.place})
    wide_m = distance_m(south, west, south, east) if east > west else 0.0
    tall_m = distance_m(south, west, north, west) if north > south else 0.0
    span_deg = max(east - west, north - south, 1e-4)
    zoom = max(2, min(18, int(math.log2(360 / span_deg))))
    return {
        "width": TRACK_WIDTH, "height": TRACK_HEIGHT,
        "points": " ".join("{},{}".format(*xy(f.lat, f.lon)) for f in track),
        "start": dict(zip(("x", "y"), xy(track[0].lat, track[0].lon), strict=True)),
        "end": dict(zip(("x", "y"), xy(track[-1].lat, track[-1].lon), strict=True)),
        "marks": marks, "fixes": len(track), "first_at": track[0].at, "last_at": track[-1].at,
        "size": f"{wide_m / 1000:.1f} km east–west by {tall_m / 1000:.1f} km north–south",
        "map_url": osm_url((south + north) / 2, (west + east) / 2, zoom),
    }


def device_places_panel(*, device: Device, now: dt.datetime | None = None) -> dict:
    """What the device page shows of its places: its visits (newest first, with their words)
    and its track."""
    found, fixes = device_visits(device=device, now=now)
    found = found[:VISITS_SHOWN]
    rows = [{
        "number": n, "place": v.place, "arrival": v.arrival, "departure": v.departure,
        "duration": _duration_words(v.duration), "origin": v.origin, "fixes": v.fixes,
        "position": f"{v.lat:.4f}, {v.lon:.4f}" if v.lat is not None and v.lon is not None else "",
        "map_url": osm_url(v.lat, v.lon) if v.lat is not None and v.lon is not None else "",
    } for n, v in enumerate(found, 1)]
    return {"visits": rows, "track": track_geometry(fixes, found), "public": device.places_public,
            "precision": _precision()}


# --- the public side ----------------------------------------------------------------------------


def coarse_point(lat, lon) -> tuple[float, float] | None:
    """A position as the public sees it: rounded to MESH_LIFESTREAM_PLACE_PRECISION decimal
    places (2: about 1 km), or None when it is not a position."""
    la, lo = _number(lat), _number(lon)
    if la is None or lo is None or not (-90 <= la <= 90 and -180 <= lo <= 180):
        return None
    digits = _precision()
    return round(la, digits), round(lo, digits)


def _precision() -> int:
    return max(0, min(5, int(conf.LIFESTREAM_PLACE_PRECISION)))


def public_extra(verb: str, extra: dict) -> dict:
    """What the lifestream may show of a device event's extra: for one that says where the
    device was (a place verb, or a position), its type, the place's name and its coarse
    position, nothing else (accuracy, network names, region ids and centres each narrow it
    down); any other event's extra as it is."""
    extra = extra if isinstance(extra, dict) else {}
    if verb not in PLACE_VERBS and "lat" not in extra and "lon" not in extra:
        return extra
    shown = {key: extra[key] for key in ("type", "place", "name") if isinstance(extra.get(key), str)}
    point = coarse_point(extra.get("lat"), extra.get("lon"))
    if point is not None:
        shown["lat"], shown["lon"] = point
    return shown


def public_place_line(verb: str, extra: dict) -> str:
    """A public place event in words, from its coarsened extra (``public_extra``): "Jardin,
    near 48.85, 2.34"; "" for an event that is not a place."""
    if verb not in PLACE_VERBS or not isinstance(extra, dict):
        return ""
    name = next((extra[k].strip() for k in ("place", "name") if isinstance(extra.get(k), str) and extra[k].strip()), "")
    point = coarse_point(extra.get("lat"), extra.get("lon"))
    near = f"near {point[0]:.{_precision()}f}, {point[1]:.{_precision()}f}" if point else ""
    return ", ".join(part for part in (name, near) if part)


def device_places_public_set(*, device: Device, public: bool) -> Device:
    """Whether the device's places may reach the public lifestream (coarsened). Turning it off
    hides every place it ever sent at once; turning it on shows only fixes sent as public."""
    Device.objects.filter(pk=device.pk).update(places_public=public)
    device.places_public = public
    return device
