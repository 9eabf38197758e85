"""Re-normalize every stored raw item of a source with the current parser, without contacting
the source: ``mesh_reprocess --source ID``. Prints {"reprocessed", "changed", "failed"}.
Running it twice changes nothing the second time."""

from __future__ import annotations

from django.core.management.base import CommandError

from streams.cli import MeshCommand
from streams.models import Source
from streams.reprocess import source_reprocess


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--source", type=int, required=True)

    def handle(self, *args, **options):
        workspace = self.workspace(options)
        source = Source.objects.filter(workspace=workspace, pk=options["source"]).first()
        if source is None:
            raise CommandError(f"no source {options['source']} in workspace {workspace.slug}")
        result = source_reprocess(source=source)
        self.emit(options, result.counts(), ", ".join(f"{v} {k}" for k, v in result.counts().items()))
