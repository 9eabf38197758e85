"""Queueing a task from below ``streams.tasks``.

The tasks are the top layer: they call services, which call ingest, which queues search
indexing. Code below them that queues a task (a pushed item's ingest, the search indexer's
kick) names the task here rather than importing ``streams.tasks``: that import was the cycle
ingest → search → tasks → services → ingest, hidden inside functions. Celery looks tasks up
by name; ``StreamsConfig.ready`` imports ``streams.tasks`` so every name is registered in
every process (web, worker, commands).
"""

from __future__ import annotations

from celery import current_app


def task_send(name: str, *args, countdown: float | None = None) -> None:
    """Queue ``streams.tasks.<name>(*args)``, to run ``countdown`` seconds from now (eagerly
    where no broker is configured, like any task)."""
    current_app.tasks[f"streams.tasks.{name}"].apply_async(args=args, countdown=countdown)
