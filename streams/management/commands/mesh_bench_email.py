"""Email benchmark: generated messages from a throw-away Dovecot on loopback through IMAP, the
shared normalizer, ingest and fan-out on PostgreSQL (code and method: bench/email_bench.py).

  mesh_bench_email [--messages 10000] [--batch-size 200] [--no-prefetch] [--json]

Needs Debian's dovecot-imapd and a PostgreSQL DATABASE_URL; the workspace it creates is deleted
afterwards."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError

from bench.email_bench import run
from streams.cli import MeshCommand


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--messages", type=int, default=10_000)
        parser.add_argument("--batch-size", type=int, default=200)
        parser.add_argument("--no-prefetch", action="store_true", help="fetch and store in turn, not overlapped")

    def handle(self, *args, **options):
        if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
            raise CommandError("the benchmark runs on PostgreSQL: set DATABASE_URL=postgres://...")
        result = run(messages=options["messages"], batch_size=options["batch_size"],
                     prefetch=not options["no_prefetch"], log=self.stderr._out)
        self.emit(options, result, "\n".join(f"{k:>20}: {v}" for k, v in result.items()))
