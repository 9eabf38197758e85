"""Places read: a device's newest location events and the regions it defined, each one range
scan of the partial index ``activity_place_idx`` (device, verb, newest first). What they mean
(stays, visits, names) is worked out in ``streams.places``."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q

from ..models import Activity, Device
from ..visibility import visible_q

# A device defines a handful of regions; a few hundred definitions is already an odd phone.
REGION_EVENTS = 500
# The verbs of place activities: fixes and transitions ("location"), regions ("place"). The
# partial index activity_place_idx lists the same.
PLACE_VERBS = ("location", "place")


def place_hidden_q(*, workspace) -> Q:
    """Activities that say where a device was (a place verb, or a position in their extra) from
    a device whose places are not public, or from no device: the lifestream leaves them out
    whatever their own visibility (``Device.places_public``)."""
    is_place = Q(channel="device") & (Q(verb__in=PLACE_VERBS) | Q(extra__has_key="lat"))
    public_devices = Device.objects.filter(workspace=workspace, places_public=True).values("pk")
    return is_place & ~Q(device_id__in=public_devices)


def device_place_events(*, device_id: int, limit: int) -> list[tuple[dt.datetime, dict]]:
    """(occurred_at, extra) of the device's newest shown ``location`` events (fixes and region
    transitions), newest first."""
    return list(
        Activity.objects.filter(visible_q(), device_id=device_id, verb="location")
        .order_by("-occurred_at", "-id")
        .values_list("occurred_at", "extra")[:limit]
    )


def device_region_events(*, device_id: int) -> list[dict]:
    """The extra of the device's shown ``place`` events (regions it defined), newest first."""
    return list(
        Activity.objects.filter(visible_q(), device_id=device_id, verb="place")
        .order_by("-occurred_at", "-id")
        .values_list("extra", flat=True)[:REGION_EVENTS]
    )
