"""Sync one source (or all enabled ones) now, in this process.

  mesh_sync ID [--since DATE]
  mesh_sync --all

Prints the counts summed over the sources. A source that fails is reported on stderr with what
to do, and in the JSON's ``errors``; the others go on. The exit status is 1 if any failed (the
cursor of every stored batch is kept, so the next run resumes where this one stopped).

``--all`` syncs what the scheduler would: enabled sources, not file imports. Syncing a file
import by ID reads its file again (as ``mesh_import`` does; what is already stored counts as
duplicate), and fails, recording nothing, when the file is gone."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import CommandError
from django.utils import timezone

from connectors.base import ConfigError, ConnectorError
from streams.cli import MeshCommand, Progress, rfc3339
from streams.locks import SourceBusy
from streams.models import Source
from streams.services import ServiceError, source_sync
from streams.sources import source_file_path, source_is_file_import


def _failure_message(exc: Exception) -> str:
    if isinstance(exc, ConnectorError):
        return exc.message
    if isinstance(exc, (ConfigError, ServiceError, SourceBusy)):
        return str(exc)
    if isinstance(exc, KeyError):  # registry.get: the source's connector is not installed
        return str(exc).strip("'\"")
    return f"{type(exc).__name__}: {exc}"


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
            sources = []
            for source in Source.objects.filter(workspace=workspace, enabled=True).order_by("pk"):
                if source_is_file_import(source=source):
                    self.note(f"source {source.pk} ({source.name}) is a file import: skipped "
                              f"(`mesh_sync {source.pk}` reads its file again)")
                else:
                    sources.append(source)
        else:
            source = Source.objects.filter(workspace=workspace, pk=options["id"]).first()
            if source is None:
                raise CommandError(f"no source {options['id']} in workspace {workspace.slug}")
            if not source.enabled:
                raise CommandError(f"source {source.pk} is disabled (`mesh_source enable {source.pk}`)")
            sources = [source]
        totals = {"fetched": 0, "new": 0, "duplicate": 0, "failed": 0}
        errors = []
        for source in sources:
            run, error = self._sync_one(source, since)
            if error is not None:
                errors.append(error)
                when = f"; resume after {error['retry_at']}" if error["retry_at"] else ""
                self.note(f"source {source.pk} ({source.name}): {error['error']}{when}")
            if run is not None:
                for key in totals:
                    totals[key] += getattr(run, key)
        data = dict(totals)
        if errors:
            data["errors"] = errors
        self.emit(options, data, ", ".join(f"{v} {k}" for k, v in totals.items()))
        if errors:
            raise SystemExit(1)

    def _sync_one(self, source: Source, since) -> tuple:
        """(the run or None, the error as reported in JSON or None). Any failure of one source
        is caught here, so that one misconfigured source cannot stop the others."""
        fresh = False
        if source_is_file_import(source=source):
            if source_file_path(source=source) is None:
                path = (source.config or {}).get("path") if isinstance(source.config, dict) else None
                message = (f"its file {path} is gone: import it again with `mesh_import {source.connector} FILE "
                           f"--source {source.pk}`") if path else "it has no file: use `mesh_import`"
                return None, {"source": source.pk, "error": message, "retry_at": None}
            fresh = True  # a file is read whole each time, like mesh_import does
        progress = Progress(source.name, self.stderr._out)
        started = timezone.now()
        try:
            run = source_sync(source=source, since=since, fresh=fresh, trigger="cli", progress=progress)
        except Exception as exc:  # whatever it is, it is this source's failure: report it, go on
            retry_at = exc.retry_at if isinstance(exc, ConnectorError) else None
            error = {"source": source.pk, "error": _failure_message(exc), "retry_at": rfc3339(retry_at)}
            # The failed run's counts (batches stored before the failure are kept); none when
            # it never started (busy).
            return source.runs.filter(started_at__gte=started).order_by("-started_at", "-pk").first(), error
        finally:
            progress.done()
        return run, None
