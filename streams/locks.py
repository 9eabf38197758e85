"""Per-source sync locks: no two syncs of one source at once, and no wait after a crash.

A lock is a lease of ``LEASE_SECONDS`` that a heartbeat thread of the live holder renews every
``RENEW_SECONDS``: a holder that dies stops renewing, so its lease runs out within a minute
wherever it ran. The holder is recorded (host, pid and the process's start time), so a holder
that died on this host is seen at once and its lock taken over without waiting for the lease.

With Redis configured the lease is a Redis key with a TTL; without Redis (the embedded default)
it is a conditional UPDATE of the Source row. Both mark ``Source.sync_started_at`` and
``Source.sync_holder`` so the UI and the CLI can say who is syncing since when."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import socket
import threading

import redis
from django.conf import settings
from django.db import DatabaseError, connection, connections
from django.db.models import Q
from django.utils import timezone

from .models import Source

log = logging.getLogger(__name__)

LEASE_SECONDS = 60
RENEW_SECONDS = 15


class SourceBusy(Exception):
    """Another live sync of this source holds the lock."""

    def __init__(self, source_id: int, holder: Holder | None, since: dt.datetime | None):
        self.source_id, self.holder, self.since = source_id, holder, since
        who = f" by pid {holder.pid} on host {holder.host}" if holder else ""
        when = f" since {since.isoformat(timespec='seconds')}" if since else ""
        super().__init__(f"source {source_id} is being synced{who}{when}; try again later")


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a lock. ``started`` is the process's start time as the kernel counts it, so a
    pid reused by another process after a crash is not mistaken for the holder."""

    host: str
    pid: int
    started: str

    @classmethod
    def me(cls) -> Holder:
        return cls(socket.gethostname(), os.getpid(), _process_started(os.getpid()))

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(str(data["host"]), int(data["pid"]), str(data["started"]))
        except (ValueError, KeyError, TypeError):
            return None

    def dumps(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def is_gone(self, source_id: int) -> bool:
        """True only when this host can tell for sure that this holder no longer syncs the
        source: a holder on another host is trusted until its lease runs out."""
        if self.host != socket.gethostname():
            return False
        if self == Holder.me():
            return source_id not in _held
        return _process_started(self.pid) != self.started


def _process_started(pid: int) -> str:
    # Field 22 of /proc/<pid>/stat, after the parenthesised command name (which may hold spaces).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except FileNotFoundError:
        return ""  # no such process
    except OSError:
        return "unknown"  # no /proc: alive or not, we cannot tell, so the lease decides


@functools.cache
def redis_client():
    return redis.Redis.from_url(settings.REDIS_URL)


# Sources whose lock this process holds right now: a lock recorded as this process's but not
# in here was left behind by a run of this process that could not release it (the database
# went away at that moment), and is taken over like a dead holder's.
_held: set[int] = set()


@contextlib.contextmanager
def source_lock(source_id: int):
    """Hold the sync lock of one source for the duration of the block; raise SourceBusy if a
    live holder has it."""
    lease = _RedisLease(source_id) if settings.REDIS_URL else _DatabaseLease(source_id)
    lease.acquire()
    _held.add(source_id)
    stop = threading.Event()
    heartbeat = threading.Thread(target=_renew_until, args=(lease, stop), name=f"lease-{source_id}", daemon=True)
    heartbeat.start()
    try:
        yield
    finally:
        stop.set()
        heartbeat.join()
        _held.discard(source_id)
        lease.release()


def _renew_until(lease, stop: threading.Event) -> None:
    try:
        while not stop.wait(RENEW_SECONDS):
            try:
                if not lease.renew():
                    log.warning("sync lock of source %s was taken over: this run lost its lease", lease.source_id)
                    return
            except Exception:  # a blip of Redis or the database: the next beat tries again
                log.exception("could not renew the sync lock of source %s", lease.source_id)
    finally:
        if not settings.REDIS_URL:
            connections.close_all()  # this thread's own database connection


class _RedisLease:
    # Compare-and-set scripts: only the holder renews or deletes, and only a dead holder's
    # exact value is deleted when its lock is taken over.
    RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
    DELETE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

    def __init__(self, source_id: int):
        self.source_id = source_id
        self.holder = Holder.me()
        self.since = timezone.now()
        self.value = json.dumps({"holder": self.holder.dumps(), "since": self.since.isoformat()})
        # Keyed by database too: two Mesh databases (test runs, instances) may share one Redis.
        self.key = f"mesh:sync-lock:{connection.settings_dict.get('NAME', '')}:{source_id}"

    def acquire(self) -> None:
        r = redis_client()
        if not r.set(self.key, self.value, nx=True, ex=LEASE_SECONDS):
            current = r.get(self.key)
            holder, since = self._read(current)
            if current is None or (holder and holder.is_gone(self.source_id) and r.eval(self.DELETE, 1, self.key, current)):
                if r.set(self.key, self.value, nx=True, ex=LEASE_SECONDS):
                    return self._mark()
                current = r.get(self.key)
                holder, since = self._read(current)
            raise SourceBusy(self.source_id, holder, since)
        self._mark()

    def _mark(self) -> None:
        Source.objects.filter(pk=self.source_id).update(sync_started_at=self.since, sync_holder=self.holder.dumps())

    @staticmethod
    def _read(value: bytes | None) -> tuple[Holder | None, dt.datetime | None]:
        try:
            data = json.loads(value)
            return Holder.parse(data["holder"]), dt.datetime.fromisoformat(data["since"])
        except (TypeError, ValueError, KeyError):
            return None, None

    def renew(self) -> bool:
        return bool(redis_client().eval(self.RENEW, 1, self.key, self.value, LEASE_SECONDS))

    def release(self) -> None:
        # Whatever is down (the database, Redis), the rest is released: the lease runs out
        # by itself, and the marks on the Source are overwritten by the next holder.
        with contextlib.suppress(Exception):
            redis_client().eval(self.DELETE, 1, self.key, self.value)
        with contextlib.suppress(DatabaseError):
            Source.objects.filter(pk=self.source_id, sync_holder=self.holder.dumps()).update(
                sync_started_at=None, sync_holder=""
            )


class _DatabaseLease:
    def __init__(self, source_id: int):
        self.source_id = source_id
        self.holder = Holder.me().dumps()

    def acquire(self) -> None:
        now = timezone.now()
        free = Q(sync_holder="") | Q(sync_lease_until=None) | Q(sync_lease_until__lt=now)
        if self._claim(free, now):
            return
        row = Source.objects.filter(pk=self.source_id).values("sync_holder", "sync_started_at").first()
        if row is None:
            return  # no such source: nothing to guard (the caller finds that out itself)
        holder = Holder.parse(row["sync_holder"])
        if holder and holder.is_gone(self.source_id) and self._claim(Q(sync_holder=row["sync_holder"]), now):
            return
        raise SourceBusy(self.source_id, holder, row["sync_started_at"])

    def _claim(self, condition: Q, now: dt.datetime) -> bool:
        return bool(
            Source.objects.filter(condition, pk=self.source_id).update(
                sync_started_at=now, sync_holder=self.holder,
                sync_lease_until=now + dt.timedelta(seconds=LEASE_SECONDS),
            )
        )

    def renew(self) -> bool:
        return bool(
            Source.objects.filter(pk=self.source_id, sync_holder=self.holder).update(
                sync_lease_until=timezone.now() + dt.timedelta(seconds=LEASE_SECONDS)
            )
        )

    def release(self) -> None:
        with contextlib.suppress(DatabaseError):  # the database went away: see Holder.is_gone
            Source.objects.filter(pk=self.source_id, sync_holder=self.holder).update(
                sync_started_at=None, sync_holder="", sync_lease_until=None
            )
