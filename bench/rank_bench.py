"""What keeping relationship strength current costs, and how fast its pages are
(``mesh_bench_rank``; figures in docs/benchmarks.md, "Relationship strength").

1. Ingest cost: the same synthetic workload (bench/workload.py: Zipf-like contacts, four
   channels, threads) is ingested twice into fresh workspaces, once with ingest's ranking step
   switched off (nothing queued) and once with it on, in alternating order over ``rounds``;
   folding the queue into conversation-days and re-scoring its contacts
   (``rank_pending_refresh``, the beat's job) is run as the beat runs it: every minute of the
   ranked run's wall time (the ``rank-refresh`` schedule in settings), or every ``drain_every``
   batches when that is given; its time is added to the ranked run. ``plain=False`` loads the
   ranked workspace only (the in-run share needs nothing else).
   Overhead = (ranked ingest + re-scoring) / plain ingest - 1, medians over the rounds; and,
   robust to load drifting between runs, the ranking step's and the fold's time measured inside
   the ranked run over the rest of that run's ingest time (``within_run_pct``; the same with
   CPU time of this process and its PostgreSQL backend: ``within_run_cpu_pct``).
2. ``mesh_rank --rebuild`` of the loaded workspace, and that it gives the rows ingest kept.
3. Read latencies (p50/p95/max ms over ``samples`` requests through Django's test client, warm)
   on the ranked workspace with every tier given a cadence, so that most contacts are overdue
   (the worst case for the going-cold page): the contact list sorted by strength (first page
   and a page 5,000 contacts deep), the going-cold page, its JSON feed, and
   ``mesh_contacts cold --json``'s query. They are measured in a fresh process
   (``mesh_bench_rank --reads-only``), as a web server's worker serves them: the ingest leaves
   this process's heap large and fragmented, which made the going-cold page's p95 up to twice
   as slow. Inside a test's transaction a child could not see the rows, so they are measured
   here then; ``reads["process"]`` says which ("fresh" or "this").
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import connection

from mesh_site.heap import heap_frozen

from .run import Bench, _Mapped, drop_workspace, pct
from .workload import Workload

PLAIN, RANKED = "bench-rank-plain", "bench-rank"


def _cpu_clock():
    """CPU seconds of this process plus its PostgreSQL backend's when the server runs on this
    machine (read from /proc): on a shared machine, CPU is steadier than wall time, and most of
    ranking's work is the server's."""
    pid = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
    ticks = os.sysconf("SC_CLK_TCK")

    def clock() -> float:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                utime, stime = fh.read().rsplit(")", 1)[1].split()[11:13]
            return time.process_time() + (int(utime) + int(stime)) / ticks
        except (OSError, TypeError):  # no local server: this process only
            return time.process_time()
    return clock


def _vacuumed() -> None:
    """Dead rows cleared and statistics current, as autovacuum keeps a database in service (it is
    off on the benchmark machine): the earlier loads' dropped workspaces and the re-scorings'
    rewritten rows otherwise slowed every later load and read (docs/benchmarks.md)."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return  # SQLite, or a test's transaction, where VACUUM cannot run
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")


def _database_url() -> str:
    """The database this process is connected to, as a DATABASE_URL for a child process."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    address = (f"{credentials}@" if credentials else "") + (db["HOST"] or "") + (f":{db['PORT']}" if db["PORT"] else "")
    options = urlencode(db.get("OPTIONS") or {})
    return f"postgres://{address}/{quote(db['NAME'], safe='')}" + (f"?{options}" if options else "")


def _timed(fn, n: int) -> dict:
    """Wall-time percentiles over ``n`` calls after one, and this process's mean CPU per call."""
    fn()
    samples, cpu = [], time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return {**pct(samples), "cpu_ms_mean": round((time.process_time() - cpu) * 1000 / max(n, 1), 2)}


class RankBench:
    def __init__(self, *, activities: int = 100_000, contacts: int = 10_000, rounds: int = 1,
                 drain_every: int | None = None, samples: int = 100, plain: bool = True, log=None):
        self.activities, self.contacts, self.rounds = activities, contacts, rounds
        self.drain_every, self.samples, self.plain, self.log = drain_every, samples, plain, log
        self.fold_every_s = None if drain_every else float(settings.CELERY_BEAT_SCHEDULE["rank-refresh"]["schedule"])
        self.results: dict = {"activities": activities, "contacts": contacts, "rounds": rounds,
                              "drain_every_batches": drain_every, "fold_every_s": self.fold_every_s}

    def say(self, message: str) -> None:
        if self.log is not None:
            self.log.write(message + "\n")
            self.log.flush()

    def _drop(self, slug: str) -> None:
        from streams.models import ContactStrength, ConversationDay, RankBatch, Workspace

        old = Workspace.objects.filter(slug=slug).first()
        if old is not None:
            ConversationDay.objects.filter(contact__workspace=old)._raw_delete(connection.alias)
            ContactStrength.objects.filter(workspace=old)._raw_delete(connection.alias)
            RankBatch.objects.filter(workspace_id=old.pk)._raw_delete(connection.alias)
            drop_workspace(old)

    def _fresh(self, slug: str):
        """An empty workspace whose people are contacts already (one per person, with their
        email, phone and X identities), as mesh_bench loads them."""
        from streams.services import workspace_get_or_create

        self._drop(slug)
        _vacuumed()
        ws = workspace_get_or_create(slug=slug, name=slug)
        Bench(contacts=self.contacts)._people(ws)
        with connection.cursor() as cur:
            cur.execute("ANALYZE streams_contact, streams_identity")
        return ws

    def _load(self, slug: str, *, ranked: bool) -> dict:
        from streams import ingest
        from streams.ranking import rank_pending_refresh
        from streams.search import search_deferred

        ws = self._fresh(slug)
        workload = Workload(activities=self.activities, contacts=self.contacts, devices=0, batch_size=1000)
        connector = _Mapped({})
        step = ingest._ranking_update
        in_step = [0.0, 0.0]  # wall, CPU
        cpu = _cpu_clock()

        def timed_step(*args):
            t, c = time.perf_counter(), cpu()
            step(*args)
            in_step[0] += time.perf_counter() - t
            in_step[1] += cpu() - c

        # Also timed from inside the same run: on a shared machine the load drifts between runs.
        ingest._ranking_update = timed_step if ranked else (lambda *args: None)
        ingest_s = refresh_s = ingest_cpu = refresh_cpu = 0.0
        folds = 0

        def fold():
            nonlocal refresh_s, refresh_cpu, folds
            t, c = time.perf_counter(), cpu()
            rank_pending_refresh(workspace=ws)
            refresh_s += time.perf_counter() - t
            refresh_cpu += cpu() - c
            folds += 1

        def due(n: int) -> bool:
            if self.drain_every:
                return n % self.drain_every == 0
            return time.perf_counter() - last_fold >= self.fold_every_s

        try:
            last_fold = time.perf_counter()
            with search_deferred():
                for n, batch in enumerate(workload.batches(), 1):
                    t, c = time.perf_counter(), cpu()
                    ingest.ingest_batch(workspace=ws, connector=connector, items=batch)
                    ingest_s += time.perf_counter() - t
                    ingest_cpu += cpu() - c
                    if ranked and due(n):
                        fold()
                        last_fold = time.perf_counter()
            if ranked:
                fold()
        finally:
            ingest._ranking_update = step
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
        rate = self.activities / ingest_s
        self.say(f"  {slug}: {rate:,.0f} activities/s ingest, {refresh_s:.1f} s folding and re-scoring ({folds} folds)")
        return {"ingest_s": ingest_s, "refresh_s": refresh_s, "step_s": in_step[0], "ingest_cpu_s": ingest_cpu,
                "refresh_cpu_s": refresh_cpu, "step_cpu_s": in_step[1], "folds": folds}

    def ingest_cost(self) -> None:
        plain, ranked = [], []
        for r in range(self.rounds):
            order = [(False, plain), (True, ranked)] if r % 2 == 0 else [(True, ranked), (False, plain)]
            for is_ranked, into in order:
                if not (is_ranked or self.plain):
                    continue
                self.say(f"round {r + 1}: ingest {self.activities:,} {'with' if is_ranked else 'without'} ranking ...")
                into.append(self._load(RANKED if is_ranked else PLAIN, ranked=is_ranked))
        ranked_s = statistics.median(x["ingest_s"] for x in ranked)
        refresh_s = statistics.median(x["refresh_s"] for x in ranked)
        figures = {
            "ranked_per_s": round(self.activities / ranked_s),
            "rescoring_s": round(refresh_s, 2),
            # The step's and the re-scoring's share of the ranked run's own ingest time.
            "within_run_pct": self._within(ranked, ""),
            "within_run_cpu_pct": self._within(ranked, "_cpu"),
            "rounds": [{"ranked_s": round(q["ingest_s"], 2), "step_s": round(q["step_s"], 2),
                        "rescoring_s": round(q["refresh_s"], 2), "ranked_cpu_s": round(q["ingest_cpu_s"], 2),
                        "step_cpu_s": round(q["step_cpu_s"], 2), "rescoring_cpu_s": round(q["refresh_cpu_s"], 2),
                        "folds": q["folds"]} for q in ranked],
        }
        if plain:
            plain_s = statistics.median(x["ingest_s"] for x in plain)
            figures.update({
                "plain_per_s": round(self.activities / plain_s),
                "ingest_step_overhead_pct": round(100 * (ranked_s / plain_s - 1), 1),
                "total_overhead_pct": round(100 * ((ranked_s + refresh_s) / plain_s - 1), 1),
            })
            for row, p in zip(figures["rounds"], plain, strict=True):
                row.update(plain_s=round(p["ingest_s"], 2), plain_cpu_s=round(p["ingest_cpu_s"], 2))
            self._drop(PLAIN)  # the plain copy is not needed for the reads
        self.results["ingest"] = figures

    @staticmethod
    def _within(ranked: list[dict], kind: str) -> float:
        """The step's and the fold's share of the rest of the ranked run's ingest, in %, median."""
        return round(100 * statistics.median(
            (x[f"step{kind}_s"] + x[f"refresh{kind}_s"]) / (x[f"ingest{kind}_s"] - x[f"step{kind}_s"]) for x in ranked), 1)

    def rebuild(self) -> None:
        from streams.models import ContactStrength, ConversationDay, Workspace
        from streams.ranking import workspace_rank_rebuild

        ws = Workspace.objects.get(slug=RANKED)
        rows = ConversationDay.objects.filter(contact__workspace=ws)
        before = sorted(rows.values_list("contact_id", "day", "channel", "conversation", "inbound", "outbound",
                                         "mutual", "first_at", "last_at"))
        t = time.perf_counter()
        workspace_rank_rebuild(workspace=ws)
        spent = time.perf_counter() - t
        after = sorted(rows.values_list("contact_id", "day", "channel", "conversation", "inbound", "outbound",
                                        "mutual", "first_at", "last_at"))
        self.results["rebuild"] = {"seconds": round(spent, 1), "conversation_days": len(after),
                                   "contacts_scored": ContactStrength.objects.filter(workspace=ws).count(),
                                   "equal_to_incremental": before == after}
        self.say(f"rebuild: {spent:.1f} s, {len(after):,} conversation-days, equal: {before == after}")

    def reads(self) -> None:
        if connection.in_atomic_block:  # a test's transaction: its rows are invisible to a child
            self.results["reads"] = {**self.measured_reads(), "process": "this"}
        else:
            self.results["reads"] = {**self._reads_in_fresh_process(), "process": "fresh"}

    def _reads_in_fresh_process(self) -> dict:
        """``measured_reads`` run by ``mesh_bench_rank --reads-only`` in a new Python process on
        the database this one uses (in tests, pytest-django's, not the one the environment names)."""
        env = {**os.environ, "DATABASE_URL": _database_url(), "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE}
        env.pop("DATABASE_URL_FILE", None)  # it would win over DATABASE_URL (settings.env)
        child = subprocess.run(
            [sys.executable, "manage.py", "mesh_bench_rank", "--reads-only", "--samples", str(self.samples), "--json"],
            cwd=settings.BASE_DIR, env=env, capture_output=True, text=True)
        if child.returncode != 0:
            raise RuntimeError(f"the reads' process failed (exit {child.returncode}):\n{child.stderr}")
        if child.stderr.strip():
            self.say(child.stderr.rstrip())
        return json.loads(child.stdout)

    def measured_reads(self) -> dict:
        """The read latencies, after giving every tier a cadence and the reader its membership."""
        from django.contrib.auth import get_user_model
        from django.test import Client
        from django.utils import timezone

        from streams.cold_feed import cold_feed_token_create
        from streams.models import Contact, Workspace
        from streams.ranking import TIER_NAMES, strengths_current, tier_cadence_set
        from streams.selectors.ranking import StrengthCursor, contacts_by_strength, going_cold
        from streams.services import workspace_add_member

        ws = Workspace.objects.get(slug=RANKED)
        for tier, days in zip(TIER_NAMES, (14, 30, 90, 180), strict=True):
            tier_cadence_set(workspace=ws, tier=tier, every_days=days)
        user, _ = get_user_model().objects.get_or_create(username="bench-rank-reader")
        workspace_add_member(workspace=ws, user=user)
        client = Client()
        client.force_login(user)
        strengths_current(workspace=ws)
        deep = list(contacts_by_strength(workspace=ws)[4999:5000])
        cursor = StrengthCursor.after(deep[0]).encode() if deep else ""
        _row, token = cold_feed_token_create(workspace=ws)

        def get(url):
            def fetch():
                response = client.get(url)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}")
            return fetch

        _vacuumed()
        overdue = len(going_cold(workspace=ws, now=timezone.now()))
        self.say(f"reads: {Contact.objects.filter(workspace=ws).count():,} contacts, {overdue:,} overdue ...")
        with heap_frozen():  # as gunicorn's entry point freezes a server's (mesh_site.heap)
            return self._reads(ws, get, cursor, token, overdue)

    def _reads(self, ws, get, cursor: str, token: str, overdue: int) -> dict:
        from django.utils import timezone

        from streams.models import Contact
        from streams.selectors.ranking import going_cold

        n = self.samples
        return {
            "contacts": Contact.objects.filter(workspace=ws).count(), "overdue": overdue,
            "list_by_strength": _timed(get("/contacts/?sort=strength"), n),
            "list_by_strength_5000_deep": _timed(get(f"/contacts/?sort=strength&before={cursor}"), n),
            "list_by_recency": _timed(get("/contacts/"), n),
            "going_cold_page": _timed(get("/cold/"), n),
            "going_cold_feed_json": _timed(get(f"/feeds/cold/{token}.json"), n),
            "going_cold_query": _timed(lambda: going_cold(workspace=ws, now=timezone.now()), n),
        }

    def run(self, *, keep: bool = False) -> dict:
        self.ingest_cost()
        self.rebuild()
        self.reads()
        if not keep:
            self._drop(RANKED)
        return self.results
