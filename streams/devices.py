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

import dataclasses
import datetime as dt
import functools
import operator
import secrets as pysecrets
from collections.abc import Iterable

from django.db import IntegrityError, connection, transaction
from django.db.models import Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from connectors.base import RawItem

from .crypto import token_hash
from .models import Device, DeviceSeqRange, Workspace
from .rawdb import instance_from_row, prepared_rows, update_from_unnest

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


def device_columns_sql(device_alias: str = "d", workspace_alias: str = "w") -> str:
    """The columns `device_from_row` reads: a device's, then its workspace's."""
    columns = [f"{device_alias}.{f.column}" for f in Device._meta.concrete_fields]
    columns += [f"{workspace_alias}.{f.column}" for f in Workspace._meta.concrete_fields]
    return ", ".join(columns)


@functools.cache
def _device_by_token_sql() -> str:
    return (f"SELECT {device_columns_sql()} FROM {Device._meta.db_table} d JOIN {Workspace._meta.db_table} w "
            f"ON w.id = d.workspace_id WHERE d.token_hash = %s")


def device_from_row(row) -> tuple[Device, tuple]:
    """The device (its workspace attached) that a row starting with `device_columns_sql` names,
    and the rest of the row."""
    split = len(Device._meta.concrete_fields)
    end = split + len(Workspace._meta.concrete_fields)
    device = instance_from_row(Device, row[:split])
    Device.workspace.field.set_cached_value(device, instance_from_row(Workspace, row[split:end]))
    return device, tuple(row[end:])


def device_by_token(token: str) -> Device | None:
    """The device a bearer token names, revoked or not (callers refuse revoked ones), with its
    workspace. Read from the database on every request, so a revocation applies at once; one
    raw statement, prepared where connections persist: the ORM's ``select_related`` query took
    ~1 ms of Python to build, half of an up-to-date sync poll."""
    if not token_plausible(token):
        return None
    sql, digest = _device_by_token_sql(), token_hash(token)
    rows = prepared_rows("mesh_device_by_token_v1", sql, [digest])
    return device_from_row(rows[0])[0] if rows else None


def token_plausible(token: str) -> bool:
    """Whether a bearer token is worth a lookup (a huge one is refused unread)."""
    return bool(token) and len(token) <= 200


def item_seq(payload) -> int | None:
    """The ``seq`` a stored payload carries: a positive integer, else None (skip records carry
    none: their seq is not known to be held)."""
    if not isinstance(payload, dict) or "_error" in payload:
        return None
    seq = payload.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and 0 < seq <= MAX_SEQ:
        return seq
    return None


def devices_push_lock(device_ids: Iterable[int]) -> dict[int, int]:
    """First in the transaction that stores devices' pushed items: their row locks, taken in id
    order, so that concurrent batches of one device store one after the other (two batches
    inserting overlapping raw rows in different orders would deadlock) and batches of many
    devices (``mesh_mqtt``'s) cannot deadlock with each other. Returns each one's ``seq_high``."""
    return dict(Device.objects.select_for_update(no_key=True).filter(pk__in=list(device_ids)).order_by("pk")
                .values_list("pk", "seq_high"))


def device_push_lock(*, device: Device) -> int:
    return devices_push_lock([device.pk])[device.pk]


@dataclasses.dataclass(frozen=True, slots=True)
class DevicePush:
    """What one stored batch says about one device: the seqs its items carry, and when it was
    seen (None: not a sign of life, e.g. a retained MQTT message) or went offline (its last will)."""
    device_id: int
    seq_high: int  # as devices_push_lock read it
    seqs: frozenset[int]
    seen_at: dt.datetime | None
    offline_at: dt.datetime | None = None


@dataclasses.dataclass
class DeviceBatch:
    """One device's part of a batch of many devices' pushed items (``devices_events_store``):
    its items by the connector whose normalizer reads them, and when it was seen or went offline."""
    device: Device
    items: dict[str, list[RawItem]]
    seen_at: dt.datetime | None
    offline_at: dt.datetime | None = None


def items_seqs(items: Iterable[RawItem]) -> frozenset[int]:
    return frozenset(s for item in items if (s := item_seq(item.payload)) is not None)


def devices_push_record(pushes: list[DevicePush]) -> None:
    """After ``devices_push_lock`` and the raw store, in the same transaction: the seqs held and
    the devices seen or offline, in one update of the devices (on PostgreSQL one statement for
    all of them: a batch of many devices costs no more round trips than a batch of one)."""
    highs = _seqs_hold({p.device_id: (p.seq_high, p.seqs) for p in pushes if p.seqs})
    changed = sorted((p for p in pushes if p.device_id in highs or p.seen_at or p.offline_at),
                     key=lambda p: p.device_id)
    if not changed:
        return
    if connection.vendor == "postgresql":
        # GREATEST ignores NULLs: a time not given keeps the device's.
        update_from_unnest(Device._meta.db_table, [p.device_id for p in changed],
                           "seq_high = d.seq_high, last_seen_at = GREATEST(t.last_seen_at, d.seen_at), "
                           "offline_at = GREATEST(t.offline_at, d.offline_at)", [
                               ("seq_high", "bigint", [highs.get(p.device_id, p.seq_high) for p in changed]),
                               ("seen_at", "timestamptz", [_iso(p.seen_at) for p in changed]),
                               ("offline_at", "timestamptz", [_iso(p.offline_at) for p in changed])])
        return
    for p in changed:
        fields = {"seq_high": highs.get(p.device_id, p.seq_high)}
        for name, at in (("last_seen_at", p.seen_at), ("offline_at", p.offline_at)):
            if at is not None:
                fields[name] = Coalesce(Greatest(name, Value(at)), Value(at))
        Device.objects.filter(pk=p.device_id).update(**fields)


def device_push_record(*, device: Device, items: Iterable[RawItem], seq_high: int,
                       seen_at: dt.datetime | None) -> None:
    """``devices_push_record`` for one device's batch (the HTTP doors')."""
    devices_push_record([DevicePush(device.pk, seq_high, items_seqs(items), seen_at)])


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at else None


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


def _seqs_hold(pending: dict[int, tuple[int, frozenset[int]]]) -> dict[int, int]:
    """Merge each device's seqs into its held ranges: {device id: (seq_high, seqs)} in, {device
    id: new seq_high} out. One read of the ranges the seqs touch and at most one delete and one
    insert, whatever the number of devices."""
    highs = {device_id: high for device_id, (high, _) in pending.items()}
    runs = {device_id: r for device_id, (high, seqs) in pending.items() if (r := _runs(sorted(s for s in seqs if s > high)))}
    if not runs:
        return highs
    near = functools.reduce(operator.or_, (Q(device_id=d, first__lte=r[-1][1] + 1, last__gte=r[0][0] - 1)
                                           for d, r in runs.items()))
    touching: dict[int, list[tuple[int, int, int]]] = {}
    for pk, device_id, first, last in (DeviceSeqRange.objects.filter(near).order_by("device_id", "first")
                                       .values_list("pk", "device_id", "first", "last")):
        touching.setdefault(device_id, []).append((pk, first, last))
    drop: list[int] = []
    add: list[DeviceSeqRange] = []
    for device_id, device_runs in runs.items():
        before = [(first, last) for _, first, last in touching.get(device_id, [])]
        merged = _merge(before + device_runs)
        if merged[0][0] == highs[device_id] + 1:  # the held prefix grows: that range joins seq_high
            highs[device_id] = merged[0][1]
            merged = merged[1:]
        if merged != before:
            drop += [pk for pk, _, _ in touching.get(device_id, [])]
            add += [DeviceSeqRange(device_id=device_id, first=first, last=last) for first, last in merged]
    if drop:
        DeviceSeqRange.objects.filter(pk__in=drop).delete()
    if add:
        DeviceSeqRange.objects.bulk_create(add)
    return highs
