"""The sync API's speed: a device catching up N changes in pages, a full download, and the
up-to-date poll (issue 16's targets: >= 20,000 changes/s, p95 <= 2 ms).

  mesh_bench_sync [--changes 100000] [--page 1000] [--samples 500] [--keep] [--json]

Loads a workspace of its own ("bench-sync", dropped first and after unless --keep) on
PostgreSQL. Progress goes to stderr; --json prints one document. Code: bench/sync_bench.py."""

from __future__ import annotations

import json
import os
import sys

from django.conf import settings
from django.core.management.base import CommandError

from bench.sync_bench import SyncBench
from streams.cli import MeshCommand


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--changes", type=int, default=100_000, help="device events to load and catch up on")
        parser.add_argument("--page", type=int, default=1000, help="changes per page (at most 1000)")
        parser.add_argument("--samples", type=int, default=500, help="up-to-date polls timed")
        parser.add_argument("--keep", action="store_true", help="keep the bench-sync workspace")

    def handle(self, *args, **options):
        if not 1 <= options["page"] <= 1000:
            raise CommandError("--page must be from 1 to 1000")
        try:
            results = SyncBench(changes=options["changes"], page=options["page"], samples=options["samples"],
                                keep=options["keep"], log=self.stderr._out).run()
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                              "database": settings.DATABASES["default"]["ENGINE"]}
        self.emit(options, results, json.dumps(results, indent=2, default=str))
