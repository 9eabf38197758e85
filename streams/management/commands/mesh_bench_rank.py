"""What keeping relationship strength current costs against ingest throughput, and the latency
of the contact list sorted by strength and of the going-cold page (bench/rank_bench.py).

  mesh_bench_rank [--activities N] [--contacts N] [--rounds N] [--drain-every BATCHES]
                  [--ranked-only] [--samples N] [--keep] [--json]

Loads its own workspaces (bench-rank-plain, bench-rank) and drops them afterwards unless
--keep. The reads are timed in a fresh process (this command with --reads-only), as a web
server's worker serves them: the ingest leaves this process's heap large and fragmented.
Progress goes to stderr; --json prints one document. Figures: docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
import sys

from django.conf import settings
from django.core.management.base import CommandError

from bench.rank_bench import RankBench
from streams.cli import MeshCommand


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--activities", type=int, default=100_000)
        parser.add_argument("--contacts", type=int, default=10_000)
        parser.add_argument("--rounds", type=int, default=1, help="ingest runs of each kind (medians reported)")
        parser.add_argument("--drain-every", type=int, default=None, dest="drain_every",
                            help="fold the queue every N batches of 1,000 (default: every minute, as the beat does)")
        parser.add_argument("--ranked-only", action="store_false", dest="plain",
                            help="skip the loads without ranking (the in-run share does not need them)")
        parser.add_argument("--samples", type=int, default=100, help="requests per latency figure")
        parser.add_argument("--keep", action="store_true", help="keep the ranked workspace afterwards")
        # The child process the run starts to time the reads of the ranked workspace it loaded.
        parser.add_argument("--reads-only", action="store_true", dest="reads_only", help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
            raise CommandError("the benchmark runs on PostgreSQL: set DATABASE_URL=postgres://...")
        if options["reads_only"]:
            reads = RankBench(samples=options["samples"], log=self.stderr._out).measured_reads()
            self.emit(options, reads, json.dumps(reads, indent=2, default=str))
            return
        bench = RankBench(activities=options["activities"], contacts=options["contacts"], rounds=options["rounds"],
                          drain_every=options["drain_every"], samples=options["samples"], plain=options["plain"],
                          log=self.stderr._out)
        results = bench.run(keep=options["keep"])
        results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                              "database": settings.DATABASES["default"]["ENGINE"], "shared": True}
        self.emit(options, results, json.dumps(results, indent=2, default=str))
