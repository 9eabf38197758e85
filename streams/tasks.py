"""Celery tasks: thin, idempotent, arguments are ids. The work is in services."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from celery import shared_task
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Min, Q
from django.utils import timezone

from connectors.base import ConnectorError, registry

from . import linking, ranking, sync
from .conf import conf
from .locks import SourceBusy, redis_client
from .models import InboundItem, Source, Workspace
from .search import KICK_KEY, search_index_pending
from .services import inbound_process, source_sync
from .timelines import activities_fan_out

log = logging.getLogger(__name__)

MAX_BACKOFF = 3600


def backoff(retries: int) -> int:
    return min(MAX_BACKOFF, 30 * 2**retries)


@shared_task(acks_late=True)
def dispatch_due_sources() -> list[int]:
    """Every minute (beat): enqueue a sync of each due source, and sweep stranded pushed items
    (the workers sweep too, beat or not: see ``inbound_sweeper``)."""
    now = timezone.now()
    pollable = [k for k, cls in registry.connectors.items() if cls.pollable]
    due = Source.objects.filter(enabled=True, interval_seconds__gt=0, connector__in=pollable).filter(
        Q(next_run_at__isnull=True) | Q(next_run_at__lte=now)
    ).filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
    sent = []
    for source in due.only("pk", "interval_seconds", "next_run_at"):
        # Claim with a conditional UPDATE: a second beat (or a duplicate delivery) finds
        # next_run_at moved and sends nothing.
        claimed = Source.objects.filter(pk=source.pk, next_run_at=source.next_run_at).update(
            next_run_at=now + dt.timedelta(seconds=source.interval_seconds)
        )
        if claimed:
            sync_source.delay(source.pk, trigger="beat")
            sent.append(source.pk)
    inbound_sweep_stranded()
    return sent


@shared_task(bind=True, acks_late=True, max_retries=8)
def sync_source(self, source_id: int, since: str | None = None, trigger: str = "task") -> dict:
    source = Source.objects.select_related("workspace").filter(pk=source_id).first()
    if source is None or not source.enabled:
        return {"skipped": "source gone or disabled"}
    try:
        run = source_sync(
            source=source, since=dt.datetime.fromisoformat(since) if since else None, trigger=trigger
        )
    except SourceBusy:
        return {"skipped": "busy"}
    except (OperationalError, InterfaceError) as exc:
        # The database went away mid-sync (a restart, a failover): every stored batch kept its
        # cursor, so the retry resumes after the last one. Soon: such outages are short.
        if self.request.is_eager:
            raise
        raise self.retry(exc=exc, countdown=min(60, 2 * 2**self.request.retries)) from exc
    except ConnectorError as exc:
        if exc.permanent or self.request.is_eager:
            return {"error": exc.message, "permanent": exc.permanent}
        if exc.retry_at:
            countdown = max(1, int((exc.retry_at - timezone.now()).total_seconds()))
        else:
            countdown = backoff(self.request.retries)
        raise self.retry(exc=exc, countdown=countdown) from exc
    return {"run": run.pk, "fetched": run.fetched, "new": run.new, "duplicate": run.duplicate, "failed": run.failed}


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def ingest_inbound(item_ids: list[int]) -> dict:
    return inbound_process(item_ids=item_ids).counts()


@shared_task(acks_late=True)
def merge_activities(activity_ids: list[int]) -> int:
    """Fan activities out to their timelines (ingest does this in its own transaction; this task
    is the repair path, e.g. after restoring activities from a backup)."""
    return activities_fan_out(activity_ids=activity_ids)


@shared_task(acks_late=True)
def search_index(budget_s: float = 20.0) -> int:
    """Build search documents for queued activities (kicked after ingest commits, and every
    minute by the beat). Works for at most ``budget_s`` and then re-queues itself if more is
    waiting, so one long backlog never holds a worker process for minutes."""
    cache.delete(KICK_KEY)  # ingests from now on may kick again
    start, done = time.monotonic(), 0
    while time.monotonic() - start < budget_s:
        n = search_index_pending(max_batches=1)
        done += n
        if n == 0:
            return done
    search_index.delay(budget_s)
    return done


@shared_task(acks_late=True)
def rank_refresh() -> int:
    """Every minute (beat): re-score the contacts ingest queued, and every contact once a day."""
    return ranking.rank_refresh_all()


@shared_task(acks_late=True)
def sync_prune() -> int:
    """Hourly (beat): drop sync change log rows past MESH_SYNC_HORIZON_DAYS."""
    return sync.sync_prune()


@shared_task(acks_late=True)
def merge_suggestions_refresh() -> int:
    """Daily (beat): every workspace's merge suggestions looked at again (streams.linking), so
    new evidence shows without anyone asking, and auto-merges run where a workspace set a score.
    Returns the number of open suggestions."""
    return sum(linking.merge_suggestions_refresh(workspace=ws).suggested for ws in Workspace.objects.order_by("pk"))


@shared_task(acks_late=True)
def inbound_sweep_stranded(received_before: str | None = None) -> int:
    """Re-send the ingest of pushed items still pending after ``MESH_INBOUND_SWEEP_SECONDS``
    (or received before ``received_before``): their task died with a worker or with a Redis
    wipe. One task per scope is enough, since ``inbound_process`` drains the scope of the item
    it is given; sending one again for an item another task holds is harmless (it is skipped).
    Returns the number of scopes re-sent."""
    before = (
        dt.datetime.fromisoformat(received_before) if received_before
        else timezone.now() - dt.timedelta(seconds=conf.INBOUND_SWEEP_SECONDS)
    )
    firsts = list(
        InboundItem.objects.filter(state=InboundItem.State.PENDING, received_at__lt=before)
        .values("scope").annotate(first=Min("pk")).values_list("first", flat=True)
    )
    for pk in firsts:
        ingest_inbound.delay([pk])
    if firsts:
        log.warning("re-sent the ingest of %d scope(s) with stranded pushed items", len(firsts))
    return len(firsts)


def inbound_sweeper(*, started: dt.datetime, stop: threading.Event) -> None:
    """Run in each worker's main process (mesh_site.celery starts it when the worker is
    ready): sweep once for what was pending when the worker started, then every
    ``MESH_INBOUND_SWEEP_SECONDS``. A Redis key claimed for one period makes one worker of
    many sweep each period. Never touches the database here: the sweep itself is a task."""
    period = conf.INBOUND_SWEEP_SECONDS
    key = f"mesh:inbound-sweep:{connection.settings_dict.get('NAME', '')}"
    start_sweep_due = True
    while True:
        try:
            if start_sweep_due:
                inbound_sweep_stranded.delay(started.isoformat())
                start_sweep_due = False
            elif redis_client().set(key, 1, nx=True, ex=period):
                inbound_sweep_stranded.delay()
        except Exception:  # Redis is down or restarting: try again soon
            log.exception("could not queue the sweep of stranded pushed items")
        if stop.wait(5 if start_sweep_due else period):
            return
