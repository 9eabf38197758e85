"""Feed benchmark: a 50-item feed for the busiest contact, uncached, Redis-cached and 304.

    DB_CONN_MAX_AGE=60 DATABASE_URL=postgres://postgres@127.0.0.1:5432/mesh_bench \\
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m bench.feed_bench --activities 1000000 [--requests 300]

Loads ``bench.workload.Workload(activities=N)`` through the real ``ingest_batch`` into the
workspace ``bench`` unless it already holds N activities (the hottest contact gets ~10% of
them: 100,000 of 1,000,000), migrates first, then times the feed view in-process (Django's
request handling for the view, no HTTP server, no network). Figures are per request: p50,
p95, p99 and max in milliseconds, for each format, for the first page and for a page deep in
the history, uncached (``MESH_FEED_CACHE`` off), served from Redis, and answered 304.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mesh_site.settings")
    import django

    django.setup()


def load(*, workspace, activities: int, progress) -> float:
    from bench.workload import BenchConnector, Workload
    from streams.ingest import ingest_batch

    workload = Workload(activities=activities)
    connector = BenchConnector({}, {}, context={"region": workspace.region, "workspace": workspace.slug,
                                                 "self_identities": ["email:me@mesh.example"]})
    start = time.perf_counter()
    done = 0
    for batch in workload.batches():
        ingest_batch(workspace=workspace, connector=connector, items=batch)
        done += len(batch)
        if done % 50_000 < len(batch):
            rate = done / (time.perf_counter() - start)
            progress(f"loaded {done:,} / {activities:,} ({rate:,.0f}/s)")
    return time.perf_counter() - start


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p):
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 3)

    return {"p50": pct(50), "p95": pct(95), "p99": pct(99), "max": round(ordered[-1] * 1000, 3),
            "mean": round(statistics.fmean(ordered) * 1000, 3), "n": len(ordered)}


def time_view(view, factory, path: str, kwargs: dict, *, n: int, headers: dict | None = None,
              expect: int = 200) -> dict:
    samples = []
    for _ in range(n):
        request = factory.get(path, headers=headers or {})
        t0 = time.perf_counter()
        response = view(request, **kwargs)
        samples.append(time.perf_counter() - t0)
        assert response.status_code == expect, (response.status_code, response.content[:200])
    return percentiles(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activities", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per case")
    parser.add_argument("--workspace", default="bench")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    _setup()

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import RequestFactory

    from streams.feed_tokens import feed_token_create
    from streams.feeds import views as feeds
    from streams.models import Activity, Identity, TimelineEntry
    from streams.services import contact_merge, workspace_get_or_create

    def note(msg):
        print(msg, file=sys.stderr, flush=True)

    call_command("migrate", verbosity=0)
    workspace = workspace_get_or_create(slug=args.workspace, name="Benchmark")
    have = Activity.objects.filter(workspace=workspace).count()
    load_seconds = None
    if have < args.activities:
        note(f"{have:,} activities in {workspace.slug}: loading {args.activities:,} through ingest_batch …")
        load_seconds = load(workspace=workspace, activities=args.activities, progress=note)
    from bench.workload import contact_email, contact_phone, contact_x

    hot = Identity.objects.get(workspace=workspace, kind="email", value=contact_email(0)).contact.root()
    # One relationship, as a user would have it: the busiest person's phone and X contacts
    # merged into their email contact (done once; the merge rebuilds the timeline).
    for kind, value in (("phone", contact_phone(0)), ("x", contact_x(0))):
        other = Identity.objects.filter(workspace=workspace, kind=kind, value=value).first()
        if other is not None and other.contact_id != hot.pk and other.contact.merged_into_id is None:
            note(f"merging {kind}:{value} into contact {hot.pk} …")
            contact_merge(workspace=workspace, target=hot, other=other.contact)
            load_seconds = load_seconds or 0.0
    if load_seconds is not None:
        with connection.cursor() as cur:
            cur.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load: index-only scans
    entries = TimelineEntry.objects.filter(kind="c", owner_id=hot.pk).count()
    _row, token = feed_token_create(workspace=workspace, contact=hot, tier="full")
    factory = RequestFactory()
    results: dict = {
        "activities": Activity.objects.filter(workspace=workspace).count(),
        "contact_timeline_entries": entries,
        "database": connection.vendor,
        "redis": bool(settings.REDIS_URL),
        "load_seconds": round(load_seconds, 1) if load_seconds else None,
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
        "cases": {},
    }
    deep = TimelineEntry.objects.filter(kind="c", owner_id=hot.pk).order_by("-occurred_at", "-activity_id")[
        entries // 2]
    from streams.selectors import Cursor

    deep_cursor = Cursor(deep.occurred_at, deep.activity_id).encode()
    n = args.requests
    for fmt in feeds.GENERATORS:
        path = f"/feeds/{token}.{fmt}"
        kwargs = {"token": token, "fmt": fmt}
        settings.MESH_FEED_CACHE = False
        first = feeds.token_feed(factory.get(path), **kwargs)
        etag = first["ETag"]
        results["cases"][f"{fmt} uncached"] = time_view(feeds.token_feed, factory, path, kwargs, n=n)
        results["cases"][f"{fmt} uncached, page deep in history"] = time_view(
            feeds.token_feed, factory, f"{path}?before={deep_cursor}", kwargs, n=n)
        results["cases"][f"{fmt} 304 If-None-Match"] = time_view(
            feeds.token_feed, factory, path, kwargs, n=n, headers={"If-None-Match": etag}, expect=304)
        if settings.REDIS_URL:
            settings.MESH_FEED_CACHE = True
            feeds.token_feed(factory.get(path), **kwargs)  # fill
            results["cases"][f"{fmt} from Redis"] = time_view(feeds.token_feed, factory, path, kwargs, n=n)
    if connection.vendor == "postgresql":
        # A prepared statement pays only on its generic plan: custom plans past the first five
        # mean that every execution was planned again.
        with connection.cursor() as cur:
            cur.execute("SELECT name, generic_plans, custom_plans FROM pg_prepared_statements ORDER BY name")
            results["prepared_plans"] = {name: {"generic": g, "custom": c} for name, g, c in cur.fetchall()}
    # The same without prepared statements (what runs when connections are not persistent).
    settings.MESH_FEED_CACHE = False
    settings.MESH_FEED_PREPARED = False
    path, kwargs = f"/feeds/{token}.atom", {"token": token, "fmt": "atom"}
    etag = feeds.token_feed(factory.get(path), **kwargs)["ETag"]
    results["cases"]["atom uncached, ORM path"] = time_view(feeds.token_feed, factory, path, kwargs, n=n)
    results["cases"]["atom 304, ORM path"] = time_view(
        feeds.token_feed, factory, path, kwargs, n=n, headers={"If-None-Match": etag}, expect=304)
    del settings.MESH_FEED_PREPARED
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{results['activities']:,} activities; the contact's timeline has {entries:,} entries "
              f"({results['database']}, Redis {'on' if results['redis'] else 'off'}, {results['machine']})")
        for case, r in results["cases"].items():
            print(f"  {case:<40} p50 {r['p50']:7.3f} ms  p95 {r['p95']:7.3f} ms  p99 {r['p99']:7.3f} ms  (n={r['n']})")
        if results.get("prepared_plans"):
            print("  prepared statements (generic/custom plans): " + ", ".join(
                f"{name} {p['generic']}/{p['custom']}" for name, p in results["prepared_plans"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
