from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_migrate


class StreamsConfig(AppConfig):
    name = "streams"
    verbose_name = "Mesh streams"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the tasks by name in every process, for streams.queue.task_send.
        from . import tasks  # noqa: F401

        # SQLite's sync change-log triggers: off while migrations rebuild tables, on after.
        pre_migrate.connect(_sync_triggers_off, sender=self)
        post_migrate.connect(_sync_triggers_on, sender=self)


def _sync_triggers_off(sender, using, **kwargs) -> None:
    from .sync import sqlite_log_triggers

    sqlite_log_triggers(using=using, install=False)


def _sync_triggers_on(sender, using, **kwargs) -> None:
    from .sync import sqlite_log_triggers

    sqlite_log_triggers(using=using, install=True)
