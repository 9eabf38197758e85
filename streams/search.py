"""The full-text search index (write side): ingest queues activity ids in ``SearchPending``
(in its own transaction), and ``search_index_pending`` turns them into ``SearchDocument`` rows
(one ``to_tsvector('simple', subject || ' ' || text)`` per shown activity, GIN-indexed), in
batches, run by the ``search_index`` task that every ingest commit kicks (at most one queued at
a time) and by the beat. The ``simple`` configuration does not stem: mail is multilingual, and
a stemmer for the wrong language finds less than no stemmer at all.

The searches themselves are read in ``streams.selectors.search``. PostgreSQL only: on SQLite
(the embedded demo) searches match words directly and nothing is queued.
"""

from __future__ import annotations

from django.core.cache import cache
from django.db import connection, transaction

from .models import Activity, SearchDocument, SearchPending
from .queue import task_send
from .rawdb import IntArray, raw_cursor
from .selectors.search import DOCUMENT_SQL, DOCUMENTS_TABLE, PENDING_TABLE
from .visibility import visible_sql

INDEX_BATCH = 2000
KICK_KEY = "mesh:search-index-kicked"

_ACT = Activity._meta.db_table


def search_queue(*, activity_ids: list[int]) -> None:
    """Queue activities for (re)indexing, inside the caller's transaction, and kick the
    indexer once it commits. PostgreSQL only."""
    if not activity_ids or connection.vendor != "postgresql":
        return
    with raw_cursor() as cur:
        cur.execute(
            f"INSERT INTO {PENDING_TABLE} (activity_id) SELECT unnest(%s::bigint[]) ON CONFLICT DO NOTHING",
            [IntArray(activity_ids)],
        )
    search_index_kick()


_deferred = 0


class search_deferred:
    """Within this block commits do not kick the indexer (bulk loads and the benchmark drain
    the queue themselves, afterwards)."""

    def __enter__(self):
        global _deferred
        _deferred += 1

    def __exit__(self, *exc):
        global _deferred
        _deferred -= 1


def search_index_kick() -> None:
    """After the current transaction commits, make sure one ``search_index`` task is on its
    way (at most one per ~10 s: a bulk import commits hundreds of batches)."""
    if connection.vendor != "postgresql" or _deferred:
        return

    def kick():
        if cache.add(KICK_KEY, 1, timeout=10):
            try:
                task_send("search_index")
            except Exception:  # the broker is down: the beat's sweep indexes them later
                cache.delete(KICK_KEY)

    transaction.on_commit(kick)


def search_index_pending(*, batch: int = INDEX_BATCH, max_batches: int | None = None) -> int:
    """Build the documents of queued activities, ``batch`` per transaction, until the queue is
    empty (or ``max_batches``). Concurrent indexers take disjoint rows (SKIP LOCKED). Erased
    activities get no document. Returns how many queued entries were consumed."""
    if connection.vendor != "postgresql":
        SearchPending.objects.all().delete()
        return 0
    done = rounds = 0
    sql = f"""
        WITH batch AS MATERIALIZED (
            -- Once, as a CTE: as an IN subquery PostgreSQL may rescan it, and a rescan skips
            -- the rows this statement already deleted and takes the next ones.
            SELECT activity_id FROM {PENDING_TABLE} ORDER BY activity_id LIMIT %s FOR UPDATE SKIP LOCKED
        ), picked AS (
            DELETE FROM {PENDING_TABLE} q USING batch b WHERE q.activity_id = b.activity_id
            RETURNING q.activity_id
        ), written AS (
            INSERT INTO {DOCUMENTS_TABLE} (activity_id, document)
            SELECT a.id, {DOCUMENT_SQL.format(a="a")} FROM {_ACT} a JOIN picked p ON p.activity_id = a.id
            WHERE {visible_sql("a")}
            ON CONFLICT (activity_id) DO UPDATE SET document = EXCLUDED.document
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM picked), (SELECT count(*) FROM written)
    """
    while max_batches is None or rounds < max_batches:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql, [batch])
            picked, _written = cur.fetchone()
        done += picked
        rounds += 1
        if picked < batch:
            break
    return done


def search_forget(*, activity_ids: list[int]) -> None:
    """Drop the documents of erased activities (their words must not stay searchable)."""
    SearchDocument.objects.filter(activity_id__in=activity_ids).delete()
    SearchPending.objects.filter(activity_id__in=activity_ids).delete()
