"""Add, list and show sources (configured connector instances).

  mesh_source add CONNECTOR --name N [--config k=v]... [--secret k=v]... [--interval SECONDS]
  mesh_source list
  mesh_source show ID
"""

from __future__ import annotations

from django.core.management.base import CommandError

from connectors.base import ConfigError, registry
from streams.cli import MeshCommand, parse_pairs
from streams.models import Source
from streams.services import ServiceError, source_create, source_health


def source_json(source: Source, *, detail: bool = False) -> dict:
    health = source_health(source=source)
    data = {
        "id": source.pk,
        "name": source.name,
        "connector": source.connector,
        "status": source.status,
        "healthy": health["healthy"],
        "problems": health["problems"],
        "pending": health["pending"],
        "last_error": source.last_error,
        "last_attempt_at": source.last_attempt_at,
        "last_success_at": source.last_success_at,
        "interval_seconds": source.interval_seconds,
        "enabled": source.enabled,
    }
    last = source.runs.order_by("-started_at").first()
    data["last_run"] = _run_json(last) if last else None
    if detail:
        data["config"] = source.config
        data["cursor"] = source.cursor
        data["gap"] = source.gap
        data["lag_seconds"] = health["lag_seconds"]
        data["runs"] = [_run_json(r) for r in source.runs.order_by("-started_at")[:10]]
        data["failures"] = [
            {"external_id": f.external_id, "reason": f.reason, "attempts": f.attempts, "last_seen_at": f.last_seen_at}
            for f in source.failures.filter(resolved_at=None).order_by("-last_seen_at")[:100]
        ]
        data["open_failures"] = health["open_failures"]
    return data


def _run_json(run) -> dict:
    return {
        "id": run.pk, "trigger": run.trigger, "status": run.status, "started_at": run.started_at,
        "finished_at": run.finished_at, "fetched": run.fetched, "new": run.new, "duplicate": run.duplicate,
        "failed": run.failed, "error": run.error,
    }


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        sub = self.subcommands(parser)
        add = sub.add_parser("add", help="configure a new source")
        add.add_argument("connector", help=f"connector key ({', '.join(registry.keys()) or 'none installed'})")
        add.add_argument("--name", required=True)
        add.add_argument("--config", action="append", metavar="KEY=VALUE", default=[])
        add.add_argument("--secret", action="append", metavar="KEY=VALUE", default=[])
        add.add_argument("--interval", type=int, default=None, help="poll every N seconds (0: manual)")
        sub.add_parser("list", help="list sources with status and health")
        show = sub.add_parser("show", help="one source with health, runs and failures")
        show.add_argument("id", type=int)

    def handle(self, *args, **options):
        workspace = self.workspace(options)
        action = options["action"]
        if action == "add":
            try:
                source = source_create(
                    workspace=workspace, connector=options["connector"], name=options["name"],
                    config=parse_pairs(options["config"], "--config"),
                    secrets=parse_pairs(options["secret"], "--secret"),
                    interval_seconds=options["interval"],
                )
            except (KeyError, ConfigError, ServiceError) as exc:
                raise CommandError(str(exc).strip("'\"")) from None
            self.emit(options, {"id": source.pk}, f"source {source.pk} added: {source.name} ({source.connector})")
        elif action == "list":
            sources = [source_json(s) for s in Source.objects.filter(workspace=workspace).order_by("pk")]
            lines = [
                f"{s['id']:>4}  {s['connector']:<16} {s['name']:<30} {s['status']:<16} "
                f"{'healthy' if s['healthy'] else 'UNHEALTHY: ' + '; '.join(s['problems'])}"
                for s in sources
            ]
            self.emit(options, sources, "\n".join(lines) or "no sources")
        else:
            source = Source.objects.filter(workspace=workspace, pk=options["id"]).first()
            if source is None:
                raise CommandError(f"no source {options['id']} in workspace {workspace.slug}")
            data = source_json(source, detail=True)
            self.emit(options, data)
