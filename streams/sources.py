"""Managing sources after they are added: edit, disable, enable, remove, dismiss failures, and
what "sync now" means for a file import. Services in the house style (keyword-only,
``source_<action>``); the CLI (``mesh_source``, ``mesh_sync``) and the ``/sources/`` pages call
these and nothing else, so both behave the same."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from connectors.base import ConfigError, registry

from .crypto import secrets_decrypt, secrets_encrypt
from .models import ImportFailure, InboundItem, Source
from .services import ServiceError, connector_context, source_health


def source_connector_class(*, source: Source):
    """The source's connector class, or a ServiceError naming the missing plug-in."""
    try:
        return registry.get(source.connector)
    except KeyError as exc:
        raise ServiceError(str(exc).strip("'\"")) from None


def source_is_file_import(*, source: Source) -> bool:
    """A source that reads a file (``mesh_import``) rather than a service: it is never polled,
    and syncing it again means reading its file again."""
    cls = registry.connectors.get(source.connector)
    return cls is not None and cls.importable and not cls.pollable


def source_file_path(*, source: Source) -> Path | None:
    """The file a file-import source reads, if it is still there."""
    raw = (source.config or {}).get("path") if isinstance(source.config, dict) else None
    if not raw:
        return None
    path = Path(raw)
    return path if path.exists() else None


def connector_fields(*, cls, config: dict | None = None, secrets: dict | None = None) -> tuple[list[dict], list[dict]]:
    """A connector's config fields (from its Config dataclass) with the given values, and its
    secrets by name with whether each is set: what an add or edit form shows. Secret values are
    never returned."""
    config = config if isinstance(config, dict) else {}
    secrets = secrets or {}
    fields = []
    for f in dataclasses.fields(cls.Config) if cls.Config is not None else ():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = "" if required or f.default is dataclasses.MISSING else f.default
        fields.append({"name": f.name, "value": config.get(f.name, ""), "default": default, "required": required})
    names = list(dict.fromkeys([*cls.required_secrets, *secrets]))
    return fields, [{"name": n, "set": bool(secrets.get(n)), "required": n in cls.required_secrets} for n in names]


def source_config_fields(*, source: Source) -> tuple[list[dict], list[dict]]:
    """connector_fields for an existing source."""
    return connector_fields(cls=source_connector_class(source=source), config=source.config,
                            secrets=secrets_decrypt(source.secrets_encrypted))


@transaction.atomic
def source_edit(
    *,
    source: Source,
    config: dict | None = None,
    secrets: dict | None = None,
    name: str | None = None,
    interval_seconds: int | None = None,
) -> Source:
    """Change a source's config and secrets (merged into what it has: a value of ``None`` or
    ``""`` removes the key), its name or its interval. The result is checked by building the
    connector, as ``source_create`` does: an unknown key or a bad value is a ServiceError and
    nothing is saved."""
    source = Source.objects.select_for_update().get(pk=source.pk)
    cls = source_connector_class(source=source)
    new_config = dict(source.config or {})
    for key, value in (config or {}).items():
        if value is None or value == "":
            new_config.pop(key, None)
        else:
            new_config[key] = value
    new_secrets = secrets_decrypt(source.secrets_encrypted)
    for key, value in (secrets or {}).items():
        if value is None or value == "":
            new_secrets.pop(key, None)
        else:
            new_secrets[key] = value
    try:
        cls(new_config, new_secrets, context=connector_context(workspace=source.workspace))
    except ConfigError as exc:
        raise ServiceError(str(exc)) from None
    updates = {"config": new_config, "secrets_encrypted": secrets_encrypt(new_secrets)}
    if name is not None and name != source.name:
        name = name.strip()
        if not name:
            raise ServiceError("a source needs a name")
        if Source.objects.filter(workspace=source.workspace_id, name=name).exclude(pk=source.pk).exists():
            raise ServiceError(f"a source named {name!r} already exists in workspace {source.workspace.slug}")
        updates["name"] = name
    if interval_seconds is not None:
        if interval_seconds < 0:
            raise ServiceError("the interval is a number of seconds, 0 or more")
        updates["interval_seconds"] = interval_seconds
        updates["next_run_at"] = timezone.now() if interval_seconds and source.enabled else None
    Source.objects.filter(pk=source.pk).update(**updates)
    source.refresh_from_db()
    return source


def source_disable(*, source: Source) -> Source:
    """Stop syncing a source (beat, ``mesh_sync --all``, "Sync now"); its data stays."""
    Source.objects.filter(pk=source.pk).update(enabled=False, next_run_at=None)
    source.refresh_from_db()
    return source


def source_enable(*, source: Source) -> Source:
    """Sync a disabled source again; a polled one is due at once."""
    Source.objects.filter(pk=source.pk).update(
        enabled=True, next_run_at=timezone.now() if source.interval_seconds else None
    )
    source.refresh_from_db()
    return source


@transaction.atomic
def source_remove(*, source: Source) -> int:
    """Remove a source: its configuration, secrets, runs and import failures go. Its
    activities stay (they are part of contacts' and devices' timelines; ``Activity.source``
    becomes empty), so adding the source again and syncing finds them as duplicates. Refused
    while pushed items of the source wait to be ingested: they would be lost. Returns the
    number of activities kept."""
    source = Source.objects.select_for_update().get(pk=source.pk)
    waiting = InboundItem.objects.filter(source=source, state=InboundItem.State.PENDING).count()
    if waiting:
        raise ServiceError(
            f"{waiting} pushed item(s) of {source.name!r} are still waiting to be ingested; try again in a minute"
        )
    kept = source.activities.count()
    source.delete()
    return kept


def source_failures_dismiss(*, source: Source) -> int:
    """Mark every open import failure of the source resolved (a person looked and decided the
    items are not wanted): the source stops showing them as a problem. Returns how many."""
    return ImportFailure.objects.filter(source=source, resolved_at=None).update(resolved_at=timezone.now())


def sources_overview(*, workspace) -> tuple[list[dict], dict]:
    """Every source of the workspace with its health, those that need attention first (then
    healthy, then disabled), and the counts for a summary line."""
    rows = []
    for source in Source.objects.filter(workspace=workspace).order_by("name", "pk"):
        health = source_health(source=source)
        rows.append({"source": source, "health": health,
                     "attention": source.enabled and not health["healthy"]})
    rows.sort(key=lambda r: (not r["source"].enabled, not r["attention"]))
    summary = {
        "total": len(rows),
        "attention": sum(r["attention"] for r in rows),
        "disabled": sum(not r["source"].enabled for r in rows),
    }
    return rows, summary


def source_history(*, source: Source) -> dict:
    """What the sources page shows under a source: its last runs, its open import failures, and
    its totals summed over runs (counting its activities would scan an index of possibly
    millions of rows on every visit)."""
    return {
        "runs": list(source.runs.order_by("-started_at", "-pk")[:5]),
        "failures": list(source.failures.filter(resolved_at=None).order_by("-last_seen_at")[:20]),
        "counts": source.runs.aggregate(new=Sum("new"), failed=Sum("failed"), runs=Count("pk")),
    }
