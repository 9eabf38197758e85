"""Mesh in other processes (a Celery worker, gunicorn, management commands) against the test
database, as deployed: the database's URL for their environment, and waiting for what they do."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def subprocess_database_url() -> str:
    """The URL of the database this test runs on (pytest-django's ``test_<name>``)."""
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def wait_for(predicate, timeout=60.0):
    """The predicate's first true value, polled every 0.2 s; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the worker")


def stop_and_show_output(proc: subprocess.Popen) -> None:
    """SIGTERM (SIGKILL after 20 s), then the tail of what it printed: pytest shows it with a
    failing test's report."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    print(out[-4000:])
