"""Server time of the web pages (contact page with heat strip, older pages, contact list,
full-text search, live poll) on the "bench" workspace that mesh_bench loaded.

  mesh_bench --activities 1000000 --skip-peer    # once: loads the workspace
  mesh_bench_web [--samples 100] [--json]

Progress goes to stderr; --json prints one document. Code: bench/web_bench.py."""

from __future__ import annotations

import json
import os
import sys

from django.conf import settings
from django.core.management.base import CommandError

from bench.web_bench import WebBench
from streams.cli import MeshCommand


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--samples", type=int, default=100, help="requests per latency figure")

    def handle(self, *args, **options):
        try:
            results = WebBench(samples=options["samples"], log=self.stderr._out).run()
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                              "database": settings.DATABASES["default"]["ENGINE"]}
        self.emit(options, results, json.dumps(results, indent=2, default=str))
