"""The Celery app. Broker from REDIS_URL; with no broker configured tasks run eagerly."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mesh_site.settings")

app = Celery("mesh_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
