"""Sync one source (or all enabled ones) now, in this process.

  mesh_sync ID [--since DATE]
  mesh_sync --all

Prints the counts summed over the sources. A source that fails is reported on stderr with what
to do; the exit status is 1 if any failed (the cursor of every stored batch is kept, so the
next run resumes where this one stopped)."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import CommandError

from connectors.base import ConnectorError
from streams.cli import MeshCommand, Progress
from streams.locks import SourceBusy
from streams.models import Source
from streams.services import source_sync


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("id", nargs="?", type=int)
        parser.add_argument("--all", action="store_true")
        parser.add_argument("--since", help="backfill from this date (YYYY-MM-DD or RFC 3339)")

    def handle(self, *args, **options):
        workspace = self.workspace(options)
        if options["all"] == (options["id"] is not None):
            raise CommandError("give a source ID or --all")
        since = None
        if options["since"]:
            try:
                since = dt.datetime.fromisoformat(options["since"].replace("Z", "+00:00"))
            except ValueError:
                raise CommandError(f"--since: not a date: {options['since']!r}") from None
            if since.tzinfo is None:
                since = since.replace(tzinfo=dt.UTC)
        if options["all"]:
            sources = list(Source.objects.filter(workspace=workspace, enabled=True).order_by("pk"))
        else:
            source = Source.objects.filter(workspace=workspace, pk=options["id"]).first()
            if source is None:
                raise CommandError(f"no source {options['id']} in workspace {workspace.slug}")
            sources = [source]
        totals = {"fetched": 0, "new": 0, "duplicate": 0, "failed": 0}
        errors = []
        for source in sources:
            progress = Progress(source.name, self.stderr._out)
            try:
                run = source_sync(source=source, since=since, trigger="cli", progress=progress)
            except SourceBusy as exc:
                self.note(str(exc))
                errors.append({"source": source.pk, "error": str(exc)})
                continue
            except ConnectorError as exc:
                when = f"; resume after {exc.retry_at.isoformat()}" if exc.retry_at else ""
                self.note(f"source {source.pk} ({source.name}): {exc.message}{when}")
                errors.append({"source": source.pk, "error": exc.message,
                               "retry_at": exc.retry_at.isoformat() if exc.retry_at else None})
                run = source.runs.order_by("-started_at").first()
            finally:
                progress.done()
            for key in totals:
                totals[key] += getattr(run, key)
        data = dict(totals)
        if errors:
            data["errors"] = errors
        self.emit(options, data, ", ".join(f"{v} {k}" for k, v in totals.items()))
        if errors:
            raise SystemExit(1)
