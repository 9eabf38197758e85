"""The Mesh benchmark: a deterministic workload through the real ingest path on PostgreSQL,
then the reads people do, with percentiles. Driven by ``manage.py mesh_bench``.

Rates are medians over segments (ingest: every tenth of the load; re-ingest: 3 runs over the
same sample); latencies are p50/p95/max over ``--samples`` requests (≥ 200 by default).
"""

from __future__ import annotations

import gc
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field

from django.db import connection, transaction

from mesh_site.heap import heap_frozen

from .workload import BenchConnector, Workload

WORKSPACE = "bench"


def pct(samples: list[float]) -> dict:
    ordered = sorted(samples)
    if not ordered:
        return {"p50": None, "p95": None, "max": None, "n": 0}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"p50": round(at(0.5), 3), "p95": round(at(0.95), 3), "max": round(ordered[-1], 3), "n": len(ordered)}


def timed_ms(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM where there is /proc: it belongs to the
    address space, so it starts afresh at exec. ``ru_maxrss`` survives exec on Linux: a child
    started by a parent that had just generated a big input reported the parent's peak
    (a 200,000-tweet import showed 300 MB; its own peak is 109 MB)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@dataclass
class Bench:
    activities: int = 1_000_000
    contacts: int = 10_000
    devices: int = 100
    seed: int = 42
    samples: int = 200
    keep: bool = False
    workers: int = 1
    log: object = sys.stderr
    results: dict = field(default_factory=dict)

    def say(self, message: str) -> None:
        print(message, file=self.log, flush=True)

    # -- setup ------------------------------------------------------------------------------
    def workspace(self):
        from streams.crypto import token_hash
        from streams.models import Device, Workspace
        from streams.services import workspace_get_or_create

        existing = Workspace.objects.filter(slug=WORKSPACE).first()
        if existing and not self.keep:
            self.say("dropping the previous bench workspace ...")
            self._drop(existing)
            existing = None
        ws = existing or workspace_get_or_create(slug=WORKSPACE, name="Benchmark")
        if existing is None:
            self._people(ws)
        have = Device.objects.filter(workspace=ws).count()
        Device.objects.bulk_create(
            [Device(workspace=ws, name=f"device {i}", token_hash=token_hash(f"bench-{ws.pk}-{i}"))
             for i in range(have, self.devices)]
        )
        return ws

    def _people(self, ws) -> None:
        """A CRM knows its customers: each synthetic person is one contact with their email
        address, phone number and X id, as after an address-book import. So the hot person's
        mail, texts, calls and posts are one timeline (~10% of all items)."""
        from bench.workload import contact_email, contact_phone, contact_x
        from streams.models import Contact, Identity

        for start in range(0, self.contacts, 2000):
            people = range(start, min(start + 2000, self.contacts))
            contacts = Contact.objects.bulk_create([Contact(workspace=ws, name=f"Person {n}") for n in people])
            Identity.objects.bulk_create([
                Identity(workspace=ws, kind=kind, value=value, display=f"Person {n}", contact=c, home_contact=c)
                for n, c in zip(people, contacts, strict=True)
                for kind, value in (("email", contact_email(n)), ("phone", contact_phone(n)), ("x", contact_x(n)))
            ])

    def _drop(self, ws) -> None:
        drop_workspace(ws)

    def device_map(self, ws) -> dict[int, int]:
        from streams.models import Device

        ids = list(Device.objects.filter(workspace=ws).order_by("pk").values_list("pk", flat=True))
        return dict(enumerate(ids))

    # -- writes -----------------------------------------------------------------------------
    def ingest(self, ws, workload: Workload) -> None:
        """Time what Mesh does (``ingest_batch``: normalize, resolve, write, fan out, commit),
        not the synthetic generator (``Workload.items`` makes ~1 KB of random words per item,
        which cost as much again). With ``--workers N`` the batches are spread over N processes,
        each with its own connection, like a Celery worker with ``--concurrency N``: the rate
        is then items over wall time. Search documents are built afterwards and timed apart
        (in production the ``search_index`` task does it alongside)."""
        from streams.models import Activity

        if self.keep and Activity.objects.filter(workspace=ws).count() >= self.activities:
            self.say(f"--keep: reusing {self.activities} loaded activities")
            self.results["ingest_per_s"] = None
            return
        with connection.cursor() as cur:
            # The people just created: what a long-lived database knows. Not the still empty
            # activity tables: statistics saying "empty" make every index look as good as the
            # primary key for the foreign-key checks of the load.
            cur.execute("ANALYZE streams_contact, streams_identity, streams_device")
        if self.workers > 1:
            rates, done, new, wall = self._ingest_parallel(ws, workload)
        else:
            rates, done, new, wall = self._ingest_serial(ws, workload)
        self.results["ingest_per_s"] = round(statistics.median(rates))
        self.results["ingest_overall_per_s"] = round(done / wall)
        self.results["ingest_segments_per_s"] = [round(r) for r in rates]
        self.results["ingest_workers"] = self.workers
        self.results["ingested_new"] = new
        self.search_drain(done, wall)
        with connection.cursor() as cur:
            cur.execute("ANALYZE")

    def _ingest_serial(self, ws, workload: Workload):
        from streams.ingest import ingest_batch
        from streams.search import search_deferred

        connector = _Mapped(self.device_map(ws))
        segment = max(workload.batch_size, self.activities // 10)
        rates, done, seg_done, seg_time, busy, new = [], 0, 0, 0.0, 0.0, 0
        with search_deferred():
            for batch in workload.batches():
                t = time.perf_counter()
                new += ingest_batch(workspace=ws, connector=connector, items=batch).new
                spent = time.perf_counter() - t
                busy += spent
                seg_time += spent
                done += len(batch)
                seg_done += len(batch)
                if seg_done >= segment:
                    rates.append(seg_done / seg_time)
                    self.say(f"  ingested {done:,} ({rates[-1]:,.0f}/s, peak RSS {peak_rss_mb()} MB)")
                    seg_done, seg_time = 0, 0.0
        if seg_done:
            rates.append(seg_done / seg_time)
        return rates, done, new, busy

    def _ingest_parallel(self, ws, workload: Workload):
        import multiprocessing

        from django.db import connections

        connections.close_all()  # each process opens its own connection
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        procs = [ctx.Process(target=_ingest_worker, args=(ws.pk, workload, self.workers, i, queue))
                 for i in range(self.workers)]
        start = time.perf_counter()
        for p in procs:
            p.start()
        reports = []
        marks = []  # (wall time, items) as progress arrives, for segment rates
        total = 0
        while len(reports) < self.workers:
            kind, payload = queue.get()
            if kind == "progress":
                total += payload
                marks.append((time.perf_counter() - start, total))
                if total % max(1, self.activities // 10) < workload.batch_size:
                    self.say(f"  ingested {total:,} ({total / marks[-1][0]:,.0f}/s overall)")
            elif kind == "failed":
                for p in procs:
                    p.terminate()
                raise RuntimeError(f"an ingest worker failed:\n{payload}")
            else:
                reports.append(payload)
        for p in procs:
            p.join()
        wall = time.perf_counter() - start
        self.results["worker_peak_rss_mb"] = max(r["rss"] for r in reports)
        segment = max(workload.batch_size, self.activities // 10)
        rates, last_t, last_n = [], 0.0, 0
        for t, n in marks:
            if n - last_n >= segment:
                rates.append((n - last_n) / (t - last_t))
                last_t, last_n = t, n
        return rates or [total / wall], total, sum(r["new"] for r in reports), wall

    def search_drain(self, done: int, ingest_s: float) -> None:
        """Build the search documents the load queued, timed: the indexer's rate, and the rate
        of ingest and indexing one after the other (the worst case: no overlap at all)."""
        from streams.search import search_index_pending

        t = time.perf_counter()
        indexed = search_index_pending()
        spent = time.perf_counter() - t
        self.results["search_indexed"] = indexed
        self.results["search_index_per_s"] = round(indexed / spent) if spent and indexed else None
        self.results["ingest_then_index_per_s"] = round(done / (ingest_s + spent)) if done else None
        self.say(f"  search documents: {indexed:,} in {spent:.1f} s")

    def rank(self, ws) -> None:
        """Drain the strength queue, as the beat does within a minute of a load."""
        from streams.ranking import rank_pending_refresh

        t = time.perf_counter()
        refreshed = rank_pending_refresh(workspace=ws)
        self.results["rank_refresh_s"] = round(time.perf_counter() - t, 1)
        self.say(f"  strengths: {refreshed:,} contacts in {self.results['rank_refresh_s']} s")

    def reingest(self, ws, workload: Workload) -> None:
        from streams.ingest import ingest_batch

        connector = _Mapped(self.device_map(ws))
        sample = Workload(activities=min(self.activities, 100_000), contacts=self.contacts, devices=self.devices,
                          seed=self.seed, batch_size=workload.batch_size)
        rates = []
        for _ in range(3):
            busy, dup = 0.0, 0
            for batch in sample.batches():  # generation not timed, as for ingest
                t = time.perf_counter()
                dup += ingest_batch(workspace=ws, connector=connector, items=batch).duplicate
                busy += time.perf_counter() - t
            rates.append(dup / busy)
        self.results["reingest_per_s"] = round(statistics.median(rates))

    # -- reads ------------------------------------------------------------------------------
    def contacts_to_read(self, ws, workload: Workload) -> dict:
        from bench.workload import contact_email
        from streams.models import Identity

        picks = {
            "hot": 0,
            "middling": workload.contact_near_share(0.001),
            "typical": workload.contact_near_share(100 / max(self.activities, 1)),
        }
        out = {}
        for name, n in picks.items():
            ident = Identity.objects.filter(workspace=ws, kind="email", value=contact_email(n)).first()
            if ident is None or ident.contact_id is None:
                from bench.workload import contact_phone

                ident = Identity.objects.filter(workspace=ws, kind="phone", value=contact_phone(n)).first()
            if ident is not None and ident.contact_id:
                out[name] = ident.contact
        return out

    def reads(self, ws, workload: Workload) -> None:
        from streams.models import TimelineEntry
        from streams.selectors import Cursor, timeline_for_contact

        contacts = self.contacts_to_read(ws, workload)
        self.results["contacts"] = {k: {"id": c.pk, "items": c.activity_count} for k, c in contacts.items()}
        first, deep = {}, {}
        for name, contact in contacts.items():
            first[name] = pct(timed_ms(lambda c=contact: timeline_for_contact(contact=c), self.samples))
            # 1,000 pages deep (or as deep as the timeline goes): the cursor of row 50,000.
            depth = min(50 * 1000, max(contact.activity_count - 50, 0))
            row = (
                TimelineEntry.objects.filter(kind="c", owner_id=contact.pk)
                .order_by("-occurred_at", "-activity_id").values_list("occurred_at", "activity_id")[depth : depth + 1]
            )
            cursor = Cursor(*row[0]) if row else None
            deep[name] = pct(timed_ms(lambda c=contact, k=cursor: timeline_for_contact(contact=c, before=k), self.samples))
            deep[name]["depth_rows"] = depth
        self.results["timeline_first"] = first
        self.results["timeline_deep"] = deep
        self.results["timeline_first_p95_ms"] = first.get("hot", {}).get("p95")
        self.results["timeline_deep_p95_ms"] = deep.get("hot", {}).get("p95")
        self.contact_page(contacts.get("hot"))
        self.feed(contacts.get("hot"))

    def contact_page(self, contact) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from streams.services import workspace_add_member

        if contact is None:
            self.results["contact_page_p95_ms"] = None
            return
        user, _ = get_user_model().objects.get_or_create(username="bench-reader")
        workspace_add_member(workspace=contact.workspace, user=user)
        client = Client()
        client.force_login(user)
        url = f"/contacts/{contact.pk}/"
        assert client.get(url).status_code == 200
        # As a server serves it: gunicorn's entry point freezes the heap it loaded
        # (mesh_site.heap), and this process has just ingested the load. Also timed without.
        self.results["contact_page_unfrozen"] = pct(timed_ms(lambda: client.get(url), self.samples))
        with heap_frozen():
            page = pct(timed_ms(lambda: client.get(url), self.samples))
        self.results["contact_page"] = page
        self.results["contact_page_p95_ms"] = page["p95"]

    def feed(self, contact) -> None:
        """The RSS feed of the hot contact, if the feeds module is there."""
        try:
            from django.test import Client

            from streams.feed_tokens import feed_token_create  # type: ignore[attr-defined]
        except Exception:  # feeds not installed in this build
            self.results["feed_p95_ms"] = None
            return
        if contact is None:
            self.results["feed_p95_ms"] = None
            return
        try:
            created = feed_token_create(workspace=contact.workspace, contact=contact)
            token = created[1] if isinstance(created, tuple) else getattr(created, "token", created)
            client = Client()
            url = f"/feeds/{token}.rss"
            response = client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"feed answered {response.status_code}")
            from django.test import override_settings

            # Rendered every time (the figure the target names), then as served from the
            # cache of rendered feeds when there is one (Redis in production).
            self.results["feed_cached_unfrozen"] = pct(timed_ms(lambda: client.get(url), self.samples))
            with heap_frozen():  # as a server serves it (contact_page says why)
                with override_settings(MESH_FEED_CACHE=False):
                    page = pct(timed_ms(lambda: client.get(url), self.samples))
                self.results["feed_cached"] = pct(timed_ms(lambda: client.get(url), self.samples))
            self.results["feed"] = page
            self.results["feed_p95_ms"] = page["p95"]
        except Exception as exc:  # report, do not die: the other figures still count
            self.say(f"feed benchmark skipped: {exc}")
            self.results["feed_p95_ms"] = None

    def merge(self, ws) -> None:
        """Two fresh contacts with 10,000 items each (scaled down for small runs), merged."""
        from connectors.base import RawItem
        from streams.ingest import ingest_batch
        from streams.models import Identity
        from streams.services import contact_merge, contact_unmerge

        n = max(100, min(10_000, self.activities // 100))
        connector = _MergeConnector()
        items = [RawItem(f"m{side}-{i}", {"side": side, "i": i}) for side in ("a", "b") for i in range(n)]
        for i in range(0, len(items), 1000):
            ingest_batch(workspace=ws, connector=connector, items=items[i : i + 1000])
        a = Identity.objects.get(workspace=ws, kind="email", value="merge-a@bench.example").contact
        b = Identity.objects.get(workspace=ws, kind="email", value="merge-b@bench.example").contact
        t = time.perf_counter()
        contact_merge(workspace=ws, target=a, other=b)
        self.results["merge_s"] = round(time.perf_counter() - t, 3)
        self.results["merge_items_each"] = n
        contact_unmerge(workspace=ws, contact=a)  # leave the data as it was

    # -- all --------------------------------------------------------------------------------
    def run(self) -> dict:
        if connection.vendor != "postgresql":
            raise RuntimeError("mesh_bench measures PostgreSQL: set DATABASE_URL=postgres://...")
        workload = Workload(activities=self.activities, contacts=self.contacts, devices=self.devices, seed=self.seed)
        ws = self.workspace()
        self.results["activities"] = self.activities
        self.say(f"ingesting {self.activities:,} activities for {self.contacts:,} contacts ...")
        gc.collect()
        self.ingest(ws, workload)
        self.results["peak_rss_mb"] = peak_rss_mb()
        self.rank(ws)
        self.say("re-ingesting (all duplicates) ...")
        self.reingest(ws, workload)
        self.say("reading ...")
        self.reads(ws, workload)
        self.say("merging ...")
        self.merge(ws)
        return self.results


def _ingest_worker(workspace_id: int, workload: Workload, workers: int, index: int, queue) -> None:
    """One ingest process: every ``workers``-th batch, starting at ``index``."""
    from django.db import connection

    from streams.ingest import ingest_batch
    from streams.models import Workspace
    from streams.search import search_deferred

    try:
        ws = Workspace.objects.get(pk=workspace_id)
        connector = _Mapped(Bench.device_map(None, ws))
        new = 0
        with search_deferred():
            for n, batch in enumerate(workload.batches()):
                if n % workers != index:
                    continue
                new += ingest_batch(workspace=ws, connector=connector, items=batch).new
                queue.put(("progress", len(batch)))
        queue.put(("done", {"new": new, "rss": peak_rss_mb()}))
    except BaseException:
        import traceback

        queue.put(("failed", traceback.format_exc()))
        raise
    finally:
        connection.close()


class _Mapped(BenchConnector):
    """The workload's device numbers → this workspace's device ids."""

    def __init__(self, device_ids: dict[int, int]):
        super().__init__({}, {})
        self.device_ids = device_ids

    def normalize(self, raw):
        draft = super().normalize(raw)
        if draft.device is not None:
            draft.device = str(self.device_ids.get(int(draft.device), "")) or None
        return draft


class _MergeConnector(BenchConnector):
    def normalize(self, raw):
        import datetime as dt

        from connectors.base import ActivityDraft, ParticipantDraft

        p = raw.payload
        return ActivityDraft(
            channel="email", verb="receive", direction="in",
            occurred_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=p["i"]),
            dedup_key=f"bench-merge:{p['side']}:{p['i']}", subject="merge", text="x" * 200,
            participants=[ParticipantDraft("from", "email", f"merge-{p['side']}@bench.example")],
        )


def drop_workspace(ws) -> None:
    """Delete a bench workspace and everything in it fast: raw deletes in dependency order
    (identities are PROTECTed), then VACUUM ANALYZE outside a transaction. Shared by every
    benchmark that loads a workspace of its own."""
    from streams.models import (
        Activity,
        Contact,
        Identity,
        Participant,
        SearchDocument,
        SearchPending,
        TimelineEntry,
    )

    with connection.cursor() as cur:
        # Fresh statistics first (autovacuum may be off): stale ones turn these joins into
        # a nested loop over the whole workspace per row.
        cur.execute("ANALYZE")
    with transaction.atomic(), connection.cursor() as cur:
        # No sync tombstones for a workspace that goes whole (migration 0013's triggers), and
        # none of its log rows left behind.
        cur.execute("SET LOCAL mesh.sync_log = 'off'")
        cur.execute("DELETE FROM streams_change WHERE workspace_id = %s", [ws.pk])
        contact_ids = list(Contact.objects.filter(workspace=ws).values_list("pk", flat=True))
        device_ids = list(ws.devices.values_list("pk", flat=True))
        te = connection.ops.quote_name(TimelineEntry._meta.db_table)
        cur.execute(f"DELETE FROM {te} WHERE kind = 'c' AND owner_id = ANY(%s)", [contact_ids])
        cur.execute(f"DELETE FROM {te} WHERE kind = 'd' AND owner_id = ANY(%s)", [device_ids])
        Participant.objects.filter(activity__workspace=ws)._raw_delete(connection.alias)
        SearchDocument.objects.filter(activity__workspace=ws)._raw_delete(connection.alias)
        cur.execute(
            f"DELETE FROM {connection.ops.quote_name(SearchPending._meta.db_table)} p USING "
            f"{connection.ops.quote_name(Activity._meta.db_table)} a "
            "WHERE a.id = p.activity_id AND a.workspace_id = %s", [ws.pk],
        )
        Activity.objects.filter(workspace=ws)._raw_delete(connection.alias)
        Identity.objects.filter(workspace=ws).update(contact=None, home_contact=None)
        Identity.objects.filter(workspace=ws)._raw_delete(connection.alias)
        Contact.objects.filter(workspace=ws).update(merged_into=None)
        ws.delete()
    if connection.in_atomic_block:  # VACUUM cannot run in a transaction (tests)
        return
    with connection.cursor() as cur:
        # Autovacuum may be off (it is on this machine): the dead index entries left by the
        # delete made the planner's index probes read thousands of pages per query
        # (7 ms of planning for a 0.5 ms timeline page).
        cur.execute("VACUUM ANALYZE")
