"""The Celery app. Broker from REDIS_URL; with no broker configured tasks run eagerly.

Each worker sweeps stranded pushed items on its own (at start and periodically), so that items
whose task died with a worker or a Redis wipe are ingested even where no beat runs."""

from __future__ import annotations

import os
import threading

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mesh_site.settings")

app = Celery("mesh_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_sweeper_stop = threading.Event()


@worker_ready.connect
def start_inbound_sweeper(**kwargs) -> None:
    from django.utils import timezone

    from streams.tasks import inbound_sweeper

    threading.Thread(
        target=inbound_sweeper, kwargs={"started": timezone.now(), "stop": _sweeper_stop},
        name="inbound-sweeper", daemon=True,
    ).start()


@worker_shutdown.connect
def stop_inbound_sweeper(**kwargs) -> None:
    _sweeper_stop.set()
