"""Keep PostgreSQL's planner statistics current while ingest grows the tables.

Autovacuum normally re-analyzes a table after 10 % of it changed. Where it is off (as on this
project's machine), statistics taken when the tables were empty say "no rows" for the whole
load, and plans built on them drift: joins turn into hash joins over everything loaded so far,
and scans pick the wrong index (the dedup probe walked a workspace's time index per key, 18 s
a batch at 55,000 activities, before it was made estimate-proof; see ingest._existing_keys).
So ingest checks ``pg_stat_user_tables`` (a cheap read) at each of a process's first
``CHECK_EVERY`` batches and every ``CHECK_EVERY`` after, and analyzes the hot tables once they
changed by 1,000 rows + 20 %, one process at a time (an advisory lock; the others skip, not
wait). Twice autovacuum's 10 %: an ANALYZE samples a fixed number of rows but reads more pages
as the table grows (~0.55 s for the activities at 1,000,000), and at 10 % the analyses were a
tenth of a 1,000,000-activity load's CPU. Growth alone does not stale the estimates (the
planner scales the analyzed rows per page by the table's current size); what the rule guards
against is statistics from a nearly empty table, which the first analyses replace."""

from __future__ import annotations

import logging

from django.db import connection

from .conf import conf
from .models import (
    Activity,
    Contact,
    ConversationDay,
    Identity,
    Participant,
    RankBatch,
    TimelineEntry,
)

log = logging.getLogger(__name__)

CHECK_EVERY = 20
THRESHOLD = 1000  # rows, plus SCALE × the rows at the last analyze (autovacuum: 50 and 0.1)
SCALE = 0.2
GROWN = 1.0  # tables that only grow between analyses: once doubled (fold_statistics_refresh)
LOCK_KEY = 0x6D657368_0001  # "mesh" + 1: pg_try_advisory_lock namespace of this module

_calls = 0


def _tables() -> list[str]:
    return [m._meta.db_table for m in (Activity, Participant, TimelineEntry, Identity, Contact)]


def statistics_refresh(*, force: bool = False) -> list[str]:
    """Analyze the hot tables that changed enough since their last analyze; returns their
    names. Call outside a transaction (ingest does, before each batch's)."""
    global _calls
    if connection.vendor != "postgresql" or not conf.INGEST_ANALYZE:
        return []
    _calls += 1
    # Every batch at first (a workspace's first thousands of rows are when estimates are most
    # wrong), then every CHECK_EVERY.
    if not force and _calls > CHECK_EVERY and _calls % CHECK_EVERY:
        return []
    return _analyze_stale(_tables())


def fold_statistics_refresh() -> list[str]:
    """Before each chunk of the ranking fold: its queue, which ingest fills and the fold empties,
    past the same rule; the conversation-days, which only grow between analyses, once they have
    doubled (``GROWN``). At 1,000,000 activities stale estimates (203,796 conversation-days for
    1,523,325) once made the fold hash-join the whole activity table; it joins nothing now, and
    what the reads of conversation-days need is column statistics from more than a nearly empty
    table: at 20 % the fold re-analyzed them at almost every chunk (0.1-0.2 s each, up to a
    tenth of the fold's time)."""
    if connection.vendor != "postgresql" or not conf.INGEST_ANALYZE:
        return []
    return (_analyze_stale([RankBatch._meta.db_table])
            + _analyze_stale([ConversationDay._meta.db_table], scale=GROWN))


def _analyze_stale(tables: list[str], *, scale: float = SCALE) -> list[str]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE s.relname = ANY(%s) AND s.n_mod_since_analyze > %s + %s * GREATEST(c.reltuples, 0)",
            [tables, THRESHOLD, scale],
        )
        stale = [r[0] for r in cur.fetchall()]
        if not stale:
            return []
        cur.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
        if not cur.fetchone()[0]:
            return []
        try:
            for table in stale:
                cur.execute(f"ANALYZE {connection.ops.quote_name(table)}")
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    log.info("analyzed %s (changed by more than %d + %.0f%% since the last analyze)", ", ".join(stale),
             THRESHOLD, SCALE * 100)
    return stale
