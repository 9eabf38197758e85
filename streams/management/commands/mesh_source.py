"""Add, list, show and manage sources (configured connector instances).

  mesh_source add CONNECTOR --name N [--config k=v]... [--secret k=v]... [--interval SECONDS]
  mesh_source list
  mesh_source show ID
  mesh_source edit ID [--name N] [--config k=v]... [--secret k=v]... [--interval SECONDS]
                        merged into what the source has; k= removes a key; checked by the
                        connector's Config (nothing is saved when it refuses)
  mesh_source disable ID | enable ID
  mesh_source remove ID [--yes]
                        the source, its runs and failures go; its activities stay on their
                        timelines (asks first unless --yes)
  mesh_source failures ID [--dismiss]
                        the open import failures; --dismiss marks them resolved
"""

from __future__ import annotations

import sys

from django.core.management.base import CommandError

from connectors.base import ConfigError, registry
from streams.cli import MeshCommand, human_record, human_table, parse_pairs
from streams.models import Source
from streams.presenters import lag_words
from streams.services import ServiceError, source_create, source_health
from streams.sources import (
    source_disable,
    source_edit,
    source_enable,
    source_failures_dismiss,
    source_remove,
)


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
            for f in _open_failures(source)[:100]
        ]
        data["open_failures"] = health["open_failures"]
    return data


def _open_failures(source: Source):
    return source.failures.filter(resolved_at=None).order_by("-last_seen_at", "-pk")


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
        edit = sub.add_parser("edit", help="change a source's name, config, secrets or interval")
        edit.add_argument("id", type=int)
        edit.add_argument("--name")
        edit.add_argument("--config", action="append", metavar="KEY=VALUE", default=[])
        edit.add_argument("--secret", action="append", metavar="KEY=VALUE", default=[])
        edit.add_argument("--interval", type=int, default=None, help="poll every N seconds (0: manual)")
        for name, text in (("disable", "stop syncing a source (its data stays)"), ("enable", "sync it again")):
            sub.add_parser(name, help=text).add_argument("id", type=int)
        remove = sub.add_parser("remove", help="remove a source; its activities stay")
        remove.add_argument("id", type=int)
        remove.add_argument("--yes", action="store_true", help="do not ask")
        failures = sub.add_parser("failures", help="the source's open import failures")
        failures.add_argument("id", type=int)
        failures.add_argument("--dismiss", action="store_true", help="mark them all resolved")

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
            rows = [{**s, "health": "healthy" if s["healthy"] else "; ".join(s["problems"])} for s in sources]
            self.emit(options, sources, human_table(
                rows, ["id", "connector", "name", "status", "enabled", "last_success_at", "health"], empty="no sources"
            ))
        else:
            source = Source.objects.filter(workspace=workspace, pk=options["id"]).first()
            if source is None:
                raise CommandError(f"no source {options['id']} in workspace {workspace.slug}")
            getattr(self, f"_{action}")(source, options)

    def _show(self, source: Source, options) -> None:
        data = source_json(source, detail=True)
        # People read a lag in words ("3 days"), as /sources/ shows it; the JSON keeps seconds.
        readable = {("lag" if key == "lag_seconds" else key): (lag_words(value) if key == "lag_seconds" else value)
                    for key, value in data.items()}
        self.emit(options, data, human_record(readable))

    def _edit(self, source: Source, options) -> None:
        try:
            source = source_edit(
                source=source, name=options["name"], interval_seconds=options["interval"],
                config=parse_pairs(options["config"], "--config"), secrets=parse_pairs(options["secret"], "--secret"),
            )
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        self.emit(options, source_json(source), f"source {source.pk} saved: {source.name} ({source.connector})")

    def _disable(self, source: Source, options) -> None:
        source = source_disable(source=source)
        self.emit(options, {"id": source.pk, "enabled": False}, f"source {source.pk} disabled")

    def _enable(self, source: Source, options) -> None:
        source = source_enable(source=source)
        self.emit(options, {"id": source.pk, "enabled": True}, f"source {source.pk} enabled")

    def _remove(self, source: Source, options) -> None:
        if not options["yes"]:
            if not sys.stdin.isatty():
                raise CommandError(f"removing source {source.pk} needs --yes (or run it in a terminal to be asked)")
            kept = source.activities.count()
            answer = input(f"Remove source {source.pk} ({source.name})? Its {kept} activities stay on their "
                           f"timelines; its runs, failures and secrets go. [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("not removed")
        try:
            kept = source_remove(source=source)
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        self.emit(options, {"id": options["id"], "removed": True, "activities_kept": kept},
                  f"source {options['id']} removed; its {kept} activities stay")

    def _failures(self, source: Source, options) -> None:
        if options["dismiss"]:
            n = source_failures_dismiss(source=source)
            self.emit(options, {"id": source.pk, "dismissed": n}, f"{n} failure(s) of source {source.pk} dismissed")
            return
        rows = [
            {"external_id": f.external_id, "reason": f.reason, "attempts": f.attempts,
             "first_seen_at": f.first_seen_at, "last_seen_at": f.last_seen_at}
            for f in _open_failures(source)
        ]
        self.emit(options, rows, human_table(rows, empty=f"source {source.pk} has no open import failures"))
