"""The peer half of mesh_bench (django-activity-stream); run by mesh_bench with
MESH_BENCH_PEER=1, after Mesh's own run has loaded the bench workspace."""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import CommandError

from streams.cli import MeshCommand


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--activities", type=int, default=1_000_000)
        parser.add_argument("--contacts", type=int, default=10_000)
        parser.add_argument("--devices", type=int, default=100)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--samples", type=int, default=200)
        parser.add_argument("--keep", action="store_true")

    def handle(self, *args, **options):
        if not apps.is_installed("actstream"):
            raise CommandError("run with MESH_BENCH_PEER=1 and django-activity-stream installed")
        from bench.peer import run_peer

        result = run_peer(activities=options["activities"], contacts=options["contacts"], devices=options["devices"],
                          seed=options["seed"], samples=options["samples"], keep=options["keep"], log=self.stderr._out)
        self.emit(options, result)
