"""Merge suggestion benchmark: a generated workspace with planted true and false pairs, the
suggestions computed (timed) and checked: precision and recall at the default threshold (code
and what is planted: bench/linking_bench.py).

  mesh_bench_linking [--contacts 10000] [--seed 17] [--keep] [--json]

Needs a PostgreSQL DATABASE_URL; the workspace it creates (``bench-linking``) is deleted
afterwards unless --keep."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError

from bench.linking_bench import run
from streams.cli import MeshCommand


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--contacts", type=int, default=10_000)
        parser.add_argument("--seed", type=int, default=17)
        parser.add_argument("--keep", action="store_true", help="keep the bench-linking workspace")

    def handle(self, *args, **options):
        if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
            raise CommandError("the benchmark runs on PostgreSQL: set DATABASE_URL=postgres://...")
        result = run(contacts=options["contacts"], seed=options["seed"], keep=options["keep"], log=self.stderr._out)
        self.emit(options, result, "\n".join(f"{k:>22}: {v}" for k, v in result.items()))
