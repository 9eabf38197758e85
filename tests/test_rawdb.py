"""The raw cursor's own adapters: arrays sent as one literal and jsonb through orjson must
round-trip through PostgreSQL exactly like psycopg's own dumpers."""

from __future__ import annotations

import json

import pytest

from streams.rawdb import IntArray, TextArray, json_dumps, raw_cursor
from tests.factories import make_event

pytestmark = pytest.mark.django_db

AWKWARD = ["", "plain", "NULL", "null", 'quote"inside', "back\\slash", "\\", '"', "a,b", "{braces}", " spaced ",
           "new\nline", "tab\t", "émoji 👍", "רשת\u202e", "x" * 5000, "'single'", "\\\"", "}{", ","]


def test_text_array_round_trips_awkward_strings():
    with raw_cursor() as cur:
        cur.execute("SELECT %s::text[], cardinality(%s::text[])", [TextArray(AWKWARD), TextArray(AWKWARD)])
        values, n = cur.fetchone()
    assert values == AWKWARD and n == len(AWKWARD)


def test_empty_arrays_and_int_arrays():
    with raw_cursor() as cur:
        cur.execute("SELECT %s::text[], %s::bigint[], %s::bigint[], %s::int[]",
                    [TextArray([]), IntArray([]), IntArray([1, -2, 2**62]), IntArray([7, 8])])
        assert cur.fetchone() == ([], [], [1, -2, 2**62], [7, 8])
        cur.execute("SELECT k FROM unnest(%s::text[]) AS k WHERE k = ANY(%s)", [TextArray(["a", "b"]), TextArray(["b"])])
        assert cur.fetchall() == [("b",)]


def test_jsonb_through_orjson_and_the_fallback():
    cases = [
        {"a": 1, "nested": {"list": [1, 2.5, None, True], "s": 'q"\\'}},
        {1: "int key"},  # json.dumps turns keys into strings; orjson is told to as well
        {"big": 2**70},  # beyond 64 bits: orjson refuses, the standard library writes it
        {"text": "pair 👍 and \u00e9"},
    ]
    expected = [
        {"a": 1, "nested": {"list": [1, 2.5, None, True], "s": 'q"\\'}},
        {"1": "int key"},
        {"big": 2**70},
        {"text": "pair 👍 and \u00e9"},
    ]
    from psycopg.types.json import Jsonb

    with raw_cursor() as cur:
        for case, want in zip(cases, expected, strict=True):
            cur.execute("SELECT %s::jsonb", [Jsonb(case)])
            value = cur.fetchone()[0]  # Django's connection loads jsonb as text
            assert (json.loads(value) if isinstance(value, str) else value) == want
    assert isinstance(json_dumps({"a": 1}), bytes)
    assert isinstance(json_dumps({"big": 2**70}), str)


@pytest.mark.django_db(transaction=True)
def test_ingest_analyzes_hot_tables_that_changed_past_autovacuums_rule(workspace, device, settings):
    """streams.dbstats: a table changed by more than 1,000 rows + 20 % since its last analyze is
    analyzed (once, by whichever process gets the advisory lock); an unchanged one is not."""
    from django.db import connection

    from streams import dbstats
    from streams.models import Activity
    from tests.factories import ingest_events

    table = Activity._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {table}")
    ingest_events(workspace, device, [make_event(f"s{i}") for i in range(1200)])
    with connection.cursor() as cur:
        cur.execute("SELECT pg_stat_force_next_flush()")  # this backend's counters, now
    assert table in dbstats.statistics_refresh(force=True)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_stat_force_next_flush()")
    assert table not in dbstats.statistics_refresh(force=True)  # nothing changed since
    settings.MESH_INGEST_ANALYZE = False
    assert dbstats.statistics_refresh(force=True) == []


@pytest.mark.django_db(transaction=True)
def test_the_ranking_fold_analyzes_the_conversation_days_once_they_doubled(workspace):
    """They only grow between analyses, and growth alone does not stale the estimates: the fold
    analyzes them past 1,000 rows + 100 %, not at every chunk as the 20 % rule did."""
    import datetime as dt

    from django.db import connection

    from streams import dbstats
    from streams.models import Contact, ConversationDay

    contact = Contact.objects.create(workspace=workspace, name="Ana")
    table = ConversationDay._meta.db_table

    def grow(start: int, count: int) -> list[str]:
        ConversationDay.objects.bulk_create([
            ConversationDay(contact=contact, day=dt.date(2000, 1, 1) + dt.timedelta(days=start + i), channel="sms",
                            conversation="", inbound=1, outbound=0, mutual=0,
                            first_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC), last_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
            for i in range(count)])
        with connection.cursor() as cur:
            cur.execute("SELECT pg_stat_force_next_flush()")
        return [t for t in dbstats.fold_statistics_refresh() if t == table]

    assert grow(0, 4000) == [table]  # from empty
    assert grow(4000, 2000) == []  # +50 %
    assert grow(6000, 3100) == [table]  # 5,100 rows changed: past 1,000 + 4,000
    assert grow(9100, 1000) == []


@pytest.mark.django_db(transaction=True)
def test_the_ranking_fold_analyzes_its_queue_once_it_changed_past_the_same_rule(workspace, monkeypatch):
    """streams.dbstats.fold_statistics_refresh, before each chunk of the fold: the queue and the
    conversation-days that ingest and the fold grow and empty (stale, they made the fold's joins
    scan the whole activity table at 1,000,000 activities)."""
    from django.db import connection

    from streams import dbstats, ranking
    from streams.models import RankBatch

    table = RankBatch._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {table}")
    # Batches whose interactions a recount took out: empty, as the fold finds them.
    RankBatch.objects.bulk_create([RankBatch(workspace_id=workspace.pk, interactions=0, contact_ids=[],
                                             occurred_micros=[], channels=[], conversations=[], ways=[])
                                   for _ in range(1200)])
    with connection.cursor() as cur:
        cur.execute("SELECT pg_stat_force_next_flush()")
    analyzed: list[str] = []
    monkeypatch.setattr(ranking, "fold_statistics_refresh",
                        lambda: analyzed.extend(dbstats.fold_statistics_refresh()) or analyzed)
    ranking.rank_pending_refresh(workspace=workspace)
    assert analyzed.count(table) == 1  # before the first chunk; not again after it emptied the queue
    assert not RankBatch.objects.exists()
