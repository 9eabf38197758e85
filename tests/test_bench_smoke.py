"""mesh_bench as a smoke test (CI never asserts timings): the benchmark must keep running
against the current code, through the real ingest path, and report every figure."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from bench.workload import Workload
from streams.models import Activity, Contact, TimelineEntry
from streams.timelines import workspace_timelines_rebuild

KEYS = {
    "activities", "ingest_per_s", "reingest_per_s", "timeline_first_p95_ms", "timeline_deep_p95_ms",
    "contact_page_p95_ms", "feed_p95_ms", "merge_s", "peak_rss_mb", "peer", "speedup_first", "speedup_deep",
}


def test_workload_is_deterministic_and_zipf_shaped():
    a = [i.payload for i in Workload(activities=2000, contacts=300, seed=5).items()]
    b = [i.payload for i in Workload(activities=2000, contacts=300, seed=5).items()]
    assert a == b
    hot = sum(1 for p in a if p["c"] == 0) / len(a)
    assert 0.06 < hot < 0.14
    assert {p["ch"] for p in a} == {"email", "sms", "twitter", "device"}


def test_mesh_bench_runs_through_the_real_ingest_path(db):
    out = io.StringIO()
    call_command("mesh_bench", "--activities", "2000", "--contacts", "200", "--devices", "10", "--samples", "5",
                 "--skip-peer", "--json", stdout=out, stderr=io.StringIO())
    result = json.loads(out.getvalue())
    assert KEYS <= set(result)
    assert result["activities"] == 2000 and result["ingested_new"] == 2000
    assert Activity.objects.filter(workspace__slug="bench", dedup_key__startswith="bench:").count() == 2000
    assert result["ingest_per_s"] > 0 and result["reingest_per_s"] > 0
    assert result["contacts"]["hot"]["items"] > result["contacts"]["typical"]["items"]
    # What the fast write path stored is what a from-scratch rebuild gives.
    ws = Contact.objects.filter(workspace__slug="bench").first().workspace
    before = sorted(TimelineEntry.objects.values_list("kind", "owner_id", "activity_id", "occurred_at"))
    counts = sorted(Contact.objects.filter(workspace=ws).values_list("pk", "activity_count", "last_activity_at"))
    workspace_timelines_rebuild(workspace_id=ws.pk)
    assert sorted(TimelineEntry.objects.values_list("kind", "owner_id", "activity_id", "occurred_at")) == before
    assert sorted(Contact.objects.filter(workspace=ws).values_list("pk", "activity_count", "last_activity_at")) == counts


@pytest.mark.django_db(transaction=True)
def test_mesh_bench_with_two_ingest_processes():
    """--workers 2: forked processes, each with its own connection, ingest alternate batches
    concurrently; together they store every item once, with the timelines a rebuild gives, and
    the search queue drained afterwards."""
    from streams.models import SearchDocument

    out = io.StringIO()
    call_command("mesh_bench", "--activities", "4000", "--contacts", "300", "--devices", "10", "--samples", "3",
                 "--skip-peer", "--workers", "2", "--json", stdout=out, stderr=io.StringIO())
    result = json.loads(out.getvalue())
    assert result["ingest_workers"] == 2 and result["ingested_new"] == 4000
    assert result["search_indexed"] == 4000
    assert SearchDocument.objects.filter(activity__dedup_key__startswith="bench:").count() == 4000
    ws = Contact.objects.filter(workspace__slug="bench").first().workspace
    assert Activity.objects.filter(workspace=ws, dedup_key__startswith="bench:").count() == 4000
    before = sorted(TimelineEntry.objects.values_list("kind", "owner_id", "activity_id", "occurred_at"))
    counts = sorted(Contact.objects.filter(workspace=ws).values_list("pk", "activity_count", "last_activity_at"))
    workspace_timelines_rebuild(workspace_id=ws.pk)
    assert sorted(TimelineEntry.objects.values_list("kind", "owner_id", "activity_id", "occurred_at")) == before
    assert sorted(Contact.objects.filter(workspace=ws).values_list("pk", "activity_count", "last_activity_at")) == counts


@pytest.mark.django_db(transaction=True)
def test_mesh_bench_with_the_peer(tmp_path, monkeypatch):
    """The peer runs in its own process against the same (committed) data."""
    from django.db import connection

    s = connection.settings_dict
    monkeypatch.setenv(
        "DATABASE_URL", f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    )
    out = io.StringIO()
    call_command("mesh_bench", "--activities", "600", "--contacts", "60", "--devices", "3", "--samples", "3",
                 "--json", stdout=out, stderr=io.StringIO())
    try:
        result = json.loads(out.getvalue())
        peer = result["peer"]
        assert peer["hot"]["first"]["n"] == 3 and peer["first_p95_ms"] > 0
        assert result["speedup_first"] is not None
    finally:
        # The peer's tables are unknown to this process's Django: drop them, or the test
        # database flush cannot truncate the tables they reference.
        with connection.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS actstream_action, actstream_follow CASCADE")
            cur.execute("DELETE FROM django_migrations WHERE app = 'actstream'")
