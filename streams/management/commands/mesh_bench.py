"""Benchmark Mesh on PostgreSQL with a deterministic synthetic workload, side by side with
django-activity-stream (the peer), and print the figures.

  mesh_bench [--activities 1000000] [--contacts 10000] [--devices 100] [--seed 42]
             [--samples 200] [--skip-peer] [--keep] [--json]

Writes into a workspace called "bench" (dropped and reloaded unless --keep). Progress goes to
stderr; --json prints one document. Code: bench/."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from django.conf import settings
from django.core.management.base import CommandError

from bench.run import Bench
from streams.cli import MeshCommand


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--activities", type=int, default=1_000_000)
        parser.add_argument("--contacts", type=int, default=10_000)
        parser.add_argument("--devices", type=int, default=100)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--samples", type=int, default=200, help="requests per latency figure")
        parser.add_argument("--skip-peer", action="store_true", help="do not run django-activity-stream")
        parser.add_argument("--keep", action="store_true", help="reuse a loaded bench workspace")
        parser.add_argument("--workers", type=int, default=1,
                            help="ingest processes (like a Celery worker's --concurrency; default 1)")

    def handle(self, *args, **options):
        bench = Bench(
            activities=options["activities"], contacts=options["contacts"], devices=options["devices"],
            seed=options["seed"], samples=options["samples"], keep=options["keep"], log=self.stderr._out,
            workers=max(1, options["workers"]),
        )
        try:
            results = bench.run()
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        results["peer"] = None if options["skip_peer"] else self.peer(options)
        peer = results["peer"] or {}
        results["speedup_first"] = _ratio(peer.get("first_p95_ms"), results.get("timeline_first_p95_ms"))
        results["speedup_deep"] = _ratio(peer.get("deep_p95_ms"), results.get("timeline_deep_p95_ms"))
        results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                              "database": settings.DATABASES["default"]["ENGINE"]}
        self.emit(options, results, json.dumps(results, indent=2, default=str))

    def peer(self, options) -> dict:
        env = {**os.environ, "MESH_BENCH_PEER": "1"}
        cmd = [sys.executable, "manage.py", "mesh_bench_peer", "--json",
               "--activities", str(options["activities"]), "--contacts", str(options["contacts"]),
               "--devices", str(options["devices"]), "--seed", str(options["seed"]),
               "--samples", str(options["samples"])] + (["--keep"] if options["keep"] else [])
        try:
            err = self.stderr._out.fileno()  # a terminal or file: stream the peer's progress live
        except (AttributeError, OSError, ValueError):
            err = subprocess.PIPE
        done = subprocess.run(cmd, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        if err == subprocess.PIPE and done.stderr:
            self.stderr.write(done.stderr)
        if done.returncode != 0:
            raise CommandError("the peer benchmark failed (is django-activity-stream installed? pip install -e '.[bench]')")
        return json.loads(done.stdout)


def _ratio(peer, mesh):
    if not peer or not mesh:
        return None
    return round(peer / mesh, 1)
