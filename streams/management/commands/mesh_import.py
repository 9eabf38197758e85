"""Import a file through a connector: ``mesh_import CONNECTOR PATH [--device ID] [--source ID]``.

Runs through the same ingest path as a sync and is idempotent: importing the same file again
reports every item as a duplicate. Without --source the import is recorded on a source named
"<connector> import" (created on first use, and kept only if the import read something), so its
runs and failures show in ``mesh_source show``.

Exit status 1, with the counts still printed, when the file is not what the connector reads
(``"error"`` in the JSON says why) or when items failed and none was stored."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError
from django.utils import timezone

from connectors.base import ConfigError, ConnectorError, registry
from streams.cli import MeshCommand, Progress
from streams.locks import SourceBusy
from streams.models import Device, Source
from streams.services import source_sync


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("connector")
        parser.add_argument("path")
        parser.add_argument("--device", type=int, help="device id (device events)")
        parser.add_argument("--source", type=int, help="record the import on this source")

    def handle(self, *args, **options):
        workspace = self.workspace(options)
        key = options["connector"]
        try:
            cls = registry.get(key)
        except KeyError as exc:
            raise CommandError(str(exc).strip("'\"")) from None
        if not cls.importable:
            raise CommandError(f"connector {key} does not import files")
        path = Path(options["path"]).expanduser().resolve()
        if not path.exists():
            raise CommandError(f"no such file: {path}")
        device_id = options["device"]
        if device_id is not None and not Device.objects.filter(workspace=workspace, pk=device_id).exists():
            raise CommandError(f"no device {device_id} in workspace {workspace.slug}")
        created = False
        if options["source"]:
            source = Source.objects.filter(workspace=workspace, pk=options["source"]).first()
            if source is None or source.connector != key:
                raise CommandError(f"no {key} source {options['source']} in workspace {workspace.slug}")
        else:
            name = f"{key} import" + (f" (device {device_id})" if device_id else "")
            source = Source.objects.filter(workspace=workspace, name=name).first()
            if source is not None and source.connector != key:
                raise CommandError(f"source {source.pk} is named {name!r} but is a {source.connector} source: "
                                   f"give --source ID")
        config = dict(source.config or {}) if source is not None else {}
        config["path"] = str(path)
        if device_id is not None:
            config["device"] = device_id
        try:
            cls.parse_config(config)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        if source is None:
            source = Source.objects.create(workspace=workspace, name=name, connector=key, interval_seconds=0,
                                           config=config)
            created = True
        else:
            Source.objects.filter(pk=source.pk).update(config=config)
            source.refresh_from_db()
        progress = Progress(path.name, self.stderr._out)
        started = timezone.now()
        try:
            run = source_sync(source=source, fresh=True, trigger="import", progress=progress)
        except SourceBusy as exc:
            raise CommandError(str(exc)) from None
        except (ConnectorError, ConfigError) as exc:
            # Not the declared format, unreadable, misconfigured: the counts of what was stored
            # before the failure still go to stdout, with the error, and the exit status is 1.
            run = source.runs.filter(started_at__gte=started).order_by("-started_at", "-pk").first()
            self._forget_if_empty(source, created, run)
            message = getattr(exc, "message", str(exc))
            self.note(message)
            self.emit(options, {**_counts(run), "error": message}, _human(_counts(run)))
            raise SystemExit(1) from None
        except BaseException:  # a crash or ^C: keep the source if batches were stored before it
            self._forget_if_empty(source, created, source.runs.filter(started_at__gte=started).first())
            raise
        finally:
            progress.done()
        self._forget_if_empty(source, created, run)
        counts = _counts(run)
        stored = run.new + run.duplicate
        if run.failed:
            self.note(f"{run.failed} item(s) could not be imported: see `mesh_source failures {source.pk}`")
        self.emit(options, counts, _human(counts))
        if run.failed and not stored:
            self.note("nothing was imported")
            raise SystemExit(1)

    def _forget_if_empty(self, source: Source, created: bool, run) -> None:
        """A source this import created is kept only if the run read something: a failed or
        empty first import leaves nothing behind to confuse `mesh_sync --all` or the sources page."""
        if created and (run is None or run.fetched == 0):
            source.delete()


def _counts(run) -> dict:
    return {k: getattr(run, k) if run is not None else 0 for k in ("fetched", "new", "duplicate", "failed")}


def _human(counts: dict) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items())
