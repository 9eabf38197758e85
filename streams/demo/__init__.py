"""Bundled demo data. Each module here named ``load_<something>.py`` defines
``load(workspace, note) -> dict`` that imports its sample data **through the real connector**
(idempotently) and returns counts; ``mesh_demo`` runs them in name order. Adding a connector's
demo data is adding one such module and its data file."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent


def loaders() -> list[tuple[str, Callable]]:
    found = []
    for info in sorted(pkgutil.iter_modules([str(HERE)]), key=lambda i: i.name):
        if info.name.startswith("load_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            found.append((info.name.removeprefix("load_"), module.load))
    return found


def import_file(*, workspace, connector: str, name: str, path: Path, device=None) -> dict:
    """Import a bundled file through ``connector`` on a source called ``name``; idempotent."""
    from streams.models import Source
    from streams.services import source_sync

    source, _ = Source.objects.get_or_create(
        workspace=workspace, name=name, defaults={"connector": connector, "interval_seconds": 0}
    )
    config = {"path": str(path)}
    if device is not None:
        config["device"] = device.pk
    Source.objects.filter(pk=source.pk).update(config=config)
    source.refresh_from_db()
    run = source_sync(source=source, fresh=True, trigger="demo")
    return {"fetched": run.fetched, "new": run.new, "duplicate": run.duplicate, "failed": run.failed}
