"""Per-source sync locks: no two syncs of one source at once.

With Redis configured the lock is a Redis lock with a timeout (it disappears if the holder
dies); without Redis (the embedded default) the claim is a conditional UPDATE in the database.
Both mark ``Source.sync_started_at`` so the UI can show "syncing now"."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from .models import Source

LOCK_TIMEOUT = 3600


class SourceBusy(Exception):
    """Another sync of this source holds the lock."""


@functools.cache
def redis_client():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL)


@contextlib.contextmanager
def source_lock(source_id: int, timeout: int = LOCK_TIMEOUT):
    now = timezone.now()
    if settings.REDIS_URL:
        # Keyed by database too: two Mesh databases (test runs, instances) may share one Redis.
        db = connection.settings_dict.get("NAME", "")
        lock = redis_client().lock(f"mesh:sync-lock:{db}:{source_id}", timeout=timeout, blocking=False)
        if not lock.acquire():
            raise SourceBusy(f"source {source_id} is already syncing")
        Source.objects.filter(pk=source_id).update(sync_started_at=now)
        try:
            yield
        finally:
            Source.objects.filter(pk=source_id).update(sync_started_at=None)
            with contextlib.suppress(Exception):
                lock.release()
        return
    stale = now - dt.timedelta(seconds=timeout)
    claimed = (
        Source.objects.filter(pk=source_id)
        .filter(Q(sync_started_at=None) | Q(sync_started_at__lt=stale))
        .update(sync_started_at=now)
    )
    if not claimed:
        raise SourceBusy(f"source {source_id} is already syncing")
    try:
        yield
    finally:
        Source.objects.filter(pk=source_id, sync_started_at=now).update(sync_started_at=None)
