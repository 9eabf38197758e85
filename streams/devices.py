"""Devices in the mesh: what Mesh records about a device as its events arrive, whichever door
they came through (the device API, OwnTracks over HTTP, MQTT through ``mesh_mqtt``).

- **seq**: a pushed event may carry ``seq``, the device's own sequence number (1, 2, 3, …).
  A seq is *held* once its event is stored raw, in the transaction that stores it
  (``streams.services.device_events_store``): durable in the database, so the device need not
  send it again whatever ingest later makes of it. Mesh keeps ``Device.seq_high`` (every seq
  from 1 to it is held) and the ranges held above it (``DeviceSeqRange``, merged on write under
  the device's row lock, so concurrent batches of one device apply one after the other). A seq
  already held changes nothing.
- **presence**: the device seen at each contact (``last_seen_at``), and offline from its MQTT
  last will (``offline_at``); the rule that reads them is ``selectors.devices.device_presence``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Coalesce, Greatest

from connectors.base import RawItem

from .models import Device, DeviceSeqRange

# A seq is a PostgreSQL bigint.
MAX_SEQ = 2**63 - 1


class TopicTaken(ValueError):
    """Another device already has this MQTT topic."""


def item_seq(payload) -> int | None:
    """The ``seq`` a stored payload carries: a positive integer, else None (skip records carry
    none: their seq is not known to be held)."""
    if not isinstance(payload, dict) or "_error" in payload:
        return None
    seq = payload.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and 0 < seq <= MAX_SEQ:
        return seq
    return None


def device_push_record(*, device: Device, items: Iterable[RawItem], seen_at: dt.datetime | None) -> None:
    """Inside the transaction that stores ``items`` raw: the device seen at ``seen_at`` (None:
    not a sign of life, e.g. a retained MQTT message), and the seqs the items carry held. Both
    take the device's row lock, which orders concurrent batches of one device."""
    seqs = sorted({s for item in items if (s := item_seq(item.payload)) is not None})
    if seen_at is not None:
        Device.objects.filter(pk=device.pk).update(
            last_seen_at=Coalesce(Greatest("last_seen_at", Value(seen_at)), Value(seen_at)))
    if seqs:
        _seqs_hold(device.pk, seqs)


def device_offline(*, device: Device, at: dt.datetime) -> None:
    """The broker delivered the device's last will at ``at``: offline until heard again."""
    Device.objects.filter(pk=device.pk).update(
        offline_at=Coalesce(Greatest("offline_at", Value(at)), Value(at)))


def device_set_mqtt_topic(*, device: Device, topic: str) -> None:
    """The base topic the device publishes under ("" to clear); TopicTaken when another device
    has it, ValueError when it is not a plain topic."""
    topic = topic.strip().strip("/")
    if any(c in topic for c in "+#\x00") or len(topic) > 200:
        raise ValueError("a topic has no wildcards (+, #) and at most 200 characters")
    try:
        with transaction.atomic():
            Device.objects.filter(pk=device.pk).update(mqtt_topic=topic)
    except IntegrityError:
        raise TopicTaken(f"another device already publishes under {topic!r}") from None
    device.mqtt_topic = topic


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted distinct seqs as ranges of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for s in seqs:
        if runs and s == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], s)
        else:
            runs.append((s, s))
    return runs


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or adjacent ranges joined."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _seqs_hold(device_id: int, seqs: list[int]) -> None:
    high = (Device.objects.select_for_update(no_key=True).filter(pk=device_id)
            .values_list("seq_high", flat=True).get())
    runs = _runs([s for s in seqs if s > high])
    if not runs:
        return
    lo, hi = runs[0][0], runs[-1][1]
    touching = list(DeviceSeqRange.objects.filter(device_id=device_id, first__lte=hi + 1, last__gte=lo - 1)
                    .order_by("first").values_list("pk", "first", "last"))
    before = [(first, last) for _, first, last in touching]
    merged = _merge(before + runs)
    new_high = high
    if merged[0][0] == high + 1:  # the held prefix grows: that range joins seq_high
        new_high = merged[0][1]
        merged = merged[1:]
    if merged != before:
        DeviceSeqRange.objects.filter(pk__in=[pk for pk, _, _ in touching]).delete()
        DeviceSeqRange.objects.bulk_create(
            [DeviceSeqRange(device_id=device_id, first=first, last=last) for first, last in merged])
    if new_high != high:
        Device.objects.filter(pk=device_id).update(seq_high=new_high)
