"""Devices in the mesh: their tokens, and what Mesh records about a device as its events
arrive, whichever door they came through (the device API, OwnTracks over HTTP, MQTT through
``mesh_mqtt``). ``streams.services`` re-exports what connectors call.

- **seq**: a pushed event may carry ``seq``, the device's own sequence number (1, 2, 3, …).
  A seq is *held* once its event is stored raw, in the transaction that stores it
  (``streams.services.device_events_store``): durable in the database, so the device need not
  send it again whatever ingest later makes of it. Mesh keeps ``Device.seq_high`` (every seq
  from 1 to it is held) and the ranges held above it (``DeviceSeqRange``, merged on write). The
  transaction takes the device's row lock first, so concurrent batches of one device apply one
  after the other. A seq already held changes nothing.
- **presence**: the device seen at each contact (``last_seen_at``), and offline from its MQTT
  last will (``offline_at``); the rule that reads them is ``selectors.devices.device_presence``.
"""

from __future__ import annotations

import datetime as dt
import secrets as pysecrets
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from connectors.base import RawItem

from .crypto import token_hash
from .models import Device, DeviceSeqRange, Workspace

# A seq is a PostgreSQL bigint.
MAX_SEQ = 2**63 - 1


class TopicTaken(ValueError):
    """Another device already has this MQTT topic."""


def device_create(*, workspace: Workspace, name: str, kind: str = "") -> tuple[Device, str]:
    """Create a device and return it with its token (shown once; only the hash is stored)."""
    token = "mesh_dev_" + pysecrets.token_urlsafe(32)  # 256 bits
    device = Device.objects.create(
        workspace=workspace, name=name, kind=kind, token_hash=token_hash(token), token_prefix=token[:12]
    )
    return device, token


def device_rotate_token(*, device: Device) -> str:
    token = "mesh_dev_" + pysecrets.token_urlsafe(32)
    device.token_hash = token_hash(token)
    device.token_prefix = token[:12]
    device.revoked_at = None
    device.save(update_fields=["token_hash", "token_prefix", "revoked_at"])
    return token


def device_revoke(*, device: Device) -> None:
    Device.objects.filter(pk=device.pk, revoked_at=None).update(revoked_at=timezone.now())


def device_by_token(token: str) -> Device | None:
    if not token or len(token) > 200:
        return None
    return Device.objects.select_related("workspace").filter(token_hash=token_hash(token)).first()


def item_seq(payload) -> int | None:
    """The ``seq`` a stored payload carries: a positive integer, else None (skip records carry
    none: their seq is not known to be held)."""
    if not isinstance(payload, dict) or "_error" in payload:
        return None
    seq = payload.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and 0 < seq <= MAX_SEQ:
        return seq
    return None


def device_push_lock(*, device: Device) -> int:
    """First in the transaction that stores a device's pushed items: the device's row lock, so
    that concurrent batches of one device store one after the other (two batches inserting
    overlapping raw rows in different orders would deadlock). Returns its ``seq_high``."""
    return (Device.objects.select_for_update(no_key=True).filter(pk=device.pk)
            .values_list("seq_high", flat=True).get())


def device_push_record(*, device: Device, items: Iterable[RawItem], seq_high: int,
                       seen_at: dt.datetime | None) -> None:
    """After ``device_push_lock`` (which read ``seq_high``) and the raw store, in the same
    transaction: the seqs the items carry held, and the device seen at ``seen_at`` (None: not
    a sign of life, e.g. a retained MQTT message), in one update of the device."""
    seqs = sorted({s for item in items if (s := item_seq(item.payload)) is not None})
    new_high = _seqs_hold(device.pk, seqs, seq_high) if seqs else seq_high
    changes = {}
    if new_high != seq_high:
        changes["seq_high"] = new_high
    if seen_at is not None:
        changes["last_seen_at"] = Coalesce(Greatest("last_seen_at", Value(seen_at)), Value(seen_at))
    if changes:
        Device.objects.filter(pk=device.pk).update(**changes)


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


def _seqs_hold(device_id: int, seqs: list[int], high: int) -> int:
    """Merge ``seqs`` into the device's held ranges; returns its new ``seq_high``."""
    runs = _runs([s for s in seqs if s > high])
    if not runs:
        return high
    lo, hi = runs[0][0], runs[-1][1]
    touching = list(DeviceSeqRange.objects.filter(device_id=device_id, first__lte=hi + 1, last__gte=lo - 1)
                    .order_by("first").values_list("pk", "first", "last"))
    before = [(first, last) for _, first, last in touching]
    merged = _merge(before + runs)
    if merged[0][0] == high + 1:  # the held prefix grows: that range joins seq_high
        high = merged[0][1]
        merged = merged[1:]
    if merged != before:
        DeviceSeqRange.objects.filter(pk__in=[pk for pk, _, _ in touching]).delete()
        DeviceSeqRange.objects.bulk_create(
            [DeviceSeqRange(device_id=device_id, first=first, last=last) for first, last in merged])
    return high
