"""Shared test fixtures: a workspace with a member, a teammate and an outsider in another
workspace (built in code, like healthchecks' hc/test.py), and a device with its token.

Tests that touch data run on PostgreSQL (``make test`` points DATABASE_URL at it). Running
the suite on SQLite is refused unless MESH_TEST_ALLOW_SQLITE=1, so CI cannot go green on the
wrong database by accident.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings


def pytest_configure(config):
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine and os.environ.get("MESH_TEST_ALLOW_SQLITE") != "1":
        raise pytest.UsageError(
            "The test suite runs on PostgreSQL: set DATABASE_URL=postgres://... (make test does), "
            "or MESH_TEST_ALLOW_SQLITE=1 for a quick local run."
        )
    # One process-local cache per test run: a shared Redis cache could hand one test run's
    # rendered fragments to another.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "OPTIONS": {"MAX_ENTRIES": 20000}}}
    # Tasks run eagerly in tests unless a test sends them to a real worker on purpose
    # (tests/test_worker.py flips this for its own duration).
    from mesh_site.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


@pytest.fixture
def workspace(db):
    from streams.services import workspace_get_or_create

    return workspace_get_or_create(slug="acme", name="Acme")


@pytest.fixture
def other_workspace(db):
    from streams.services import workspace_get_or_create

    return workspace_get_or_create(slug="globex", name="Globex")


@pytest.fixture
def member(workspace, django_user_model):
    from streams.services import workspace_add_member

    user = django_user_model.objects.create_user("alice", password="correct horse battery")
    workspace_add_member(workspace=workspace, user=user, role="owner")
    return user


@pytest.fixture
def teammate(workspace, django_user_model):
    from streams.services import workspace_add_member

    user = django_user_model.objects.create_user("bob", password="correct horse battery")
    workspace_add_member(workspace=workspace, user=user)
    return user


@pytest.fixture
def outsider(other_workspace, django_user_model):
    from streams.services import workspace_add_member

    user = django_user_model.objects.create_user("mallory", password="correct horse battery")
    workspace_add_member(workspace=other_workspace, user=user, role="owner")
    return user


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


@pytest.fixture
def device_and_token(workspace):
    from streams.services import device_create

    return device_create(workspace=workspace, name="Phone", kind="phone")


@pytest.fixture
def device(device_and_token):
    return device_and_token[0]


@pytest.fixture
def device_token(device_and_token):
    return device_and_token[1]


def make_event(event_id, *, type="call.incoming", occurred_at="2026-05-01T10:00:00Z", data=None, participants=None, **extra):
    """A device event as a client sends it."""
    event = {"id": event_id, "type": type, "occurred_at": occurred_at, "data": data or {}}
    if participants is not None:
        event["participants"] = participants
    event.update(extra)
    return event


@pytest.fixture(scope="session", autouse=True)
def _close_stray_connections(django_db_setup, django_db_blocker):
    """Sessions left open by threads and subprocesses (the live server, a Celery worker) would
    keep the test database from being dropped at the end: end them first."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
