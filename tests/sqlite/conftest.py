"""The SQLite smoke suite: collected only when the database is SQLite (``tests/run_suite.py``
runs it as a second pass on a throw-away file with the embedded default's settings: no Redis,
eager Celery). The demo data is imported once per run, through ``mesh_demo`` itself, into the
test database; each test then runs in a transaction rolled back after it."""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings

from streams.models import Workspace

if "sqlite" not in settings.DATABASES["default"]["ENGINE"]:
    # The PostgreSQL pass has its own suite; this folder is the SQLite pass's.
    collect_ignore_glob = ["test_*.py"]

_demo: dict = {}


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        from django.core.management import call_command

        out = io.StringIO()
        call_command("mesh_demo", "--no-serve", "--json", "--password", "demo-pass-123", stdout=out)
        _demo.update(json.loads(out.getvalue()))


@pytest.fixture
def demo(db) -> dict:
    """What ``mesh_demo --json`` printed."""
    return _demo


@pytest.fixture
def workspace(demo):
    """The demo's workspace."""
    return Workspace.objects.get(slug=demo["workspace"])


@pytest.fixture
def demo_client(client, demo):
    """A client logged in as the demo's user."""
    assert client.login(username=demo["username"], password="demo-pass-123")
    return client
