"""Import a file through a connector: ``mesh_import CONNECTOR PATH [--device ID] [--source ID]``.

Runs through the same ingest path as a sync and is idempotent: importing the same file again
reports every item as a duplicate. Without --source the import is recorded on a source named
"<connector> import" (created on first use), so its runs and failures show in
``mesh_source show``."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError

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
        if options["source"]:
            source = Source.objects.filter(workspace=workspace, pk=options["source"]).first()
            if source is None or source.connector != key:
                raise CommandError(f"no {key} source {options['source']} in workspace {workspace.slug}")
        else:
            name = f"{key} import" + (f" (device {device_id})" if device_id else "")
            source, _ = Source.objects.get_or_create(
                workspace=workspace, name=name, defaults={"connector": key, "interval_seconds": 0}
            )
        config = dict(source.config or {})
        config["path"] = str(path)
        if device_id is not None:
            config["device"] = device_id
        try:
            cls.parse_config(config)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        Source.objects.filter(pk=source.pk).update(config=config)
        source.refresh_from_db()
        progress = Progress(path.name, self.stderr._out)
        try:
            run = source_sync(source=source, fresh=True, trigger="import", progress=progress)
        except SourceBusy as exc:
            raise CommandError(str(exc)) from None
        except (ConnectorError, ConfigError) as exc:
            raise CommandError(getattr(exc, "message", str(exc))) from None
        finally:
            progress.done()
        counts = {"fetched": run.fetched, "new": run.new, "duplicate": run.duplicate, "failed": run.failed}
        if run.failed:
            self.note(f"{run.failed} item(s) could not be imported: see `mesh_source show {source.pk}`")
        self.emit(options, counts, ", ".join(f"{v} {k}" for k, v in counts.items()))
