"""Shared test fixtures: a workspace with a member, a teammate and an outsider in another
workspace (built in code, like healthchecks' hc/test.py), a device with its token, the
``ticker`` connector, and the feeds' read paths. Each is a line or two over tests/factories.py
and tests/fakes/, which test modules import directly (they never import one another).

Tests that touch data run on PostgreSQL (``make test`` points DATABASE_URL at it). Running
the suite on SQLite is refused unless MESH_TEST_ALLOW_SQLITE=1, so CI cannot go green on the
wrong database by accident.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from tests import factories

# The database named by the settings, before pytest-django swaps in its test database.
_configured_database_name = None


def pytest_configure(config):
    global _configured_database_name
    _configured_database_name = settings.DATABASES["default"]["NAME"]
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
    return factories.make_workspace("acme", "Acme")


@pytest.fixture
def other_workspace(db):
    return factories.make_workspace("globex", "Globex")


@pytest.fixture
def member(workspace):
    return factories.make_member(workspace, "alice", role="owner")


@pytest.fixture
def teammate(workspace):
    return factories.make_member(workspace, "bob")


@pytest.fixture
def outsider(other_workspace):
    return factories.make_member(other_workspace, "mallory", role="owner")


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


@pytest.fixture
def device_and_token(workspace):
    return factories.make_device(workspace, "Phone", "phone")


@pytest.fixture
def device(device_and_token):
    return device_and_token[0]


@pytest.fixture
def device_token(device_and_token):
    return device_and_token[1]


@pytest.fixture
def ticker(monkeypatch):
    """The ``ticker`` connector (tests/fakes/ticker.py) registered for the test."""
    from tests.fakes.ticker import install_ticker

    return install_ticker(monkeypatch)


@pytest.fixture(params=["orm", "prepared"])
def query_path(request, settings):
    """Both read paths of the feeds: the ORM one and the prepared statements that persistent
    connections use (streams.rawdb.prepared_fetch). Feed test modules use it for every test."""
    settings.MESH_FEED_PREPARED = request.param == "prepared"
    return request.param


@pytest.fixture
def ana_feed(workspace):
    """(Ana's contact, the token of her full feed), with two mails from her."""
    from streams.feed_tokens import feed_token_create

    factories.ingest_mail(workspace, [
        factories.mail(1, day=1),
        factories.mail(2, day=2, subject="Contract signed", text="Signed copy attached."),
    ])
    contact = factories.ana(workspace)
    _row, token = feed_token_create(workspace=workspace, contact=contact, tier="full")
    return contact, token


@pytest.fixture(scope="session", autouse=True)
def _close_stray_connections(django_db_setup, django_db_blocker):
    """Sessions left open by threads and subprocesses (the live server, a Celery worker) would
    keep the test database from being dropped at the end: end them first."""
    yield
    from django.db import connection

    if connection.settings_dict["NAME"] == _configured_database_name:
        # No selected test uses the database, so pytest-django created no test database: there
        # is nothing to end, and the configured database must not be touched (it may not even
        # exist).
        return
    with django_db_blocker.unblock(), connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
