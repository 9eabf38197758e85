"""The chaos suite's fixtures: its own throw-away services for the session, a fresh migrated
database per test (tests/chaos/harness.py)."""

from __future__ import annotations

import psycopg
import pytest

from tests.chaos.harness import TEMPLATE, Mesh, Postgres, Redis
from tests.run_suite import pg_server_binaries, redis_server_binary


@pytest.fixture(scope="session")
def chaos_services():
    bins = pg_server_binaries()
    if not bins or not redis_server_binary():
        pytest.fail("the chaos suite needs the PostgreSQL server binaries and redis-server "
                    "(apt-get install postgresql redis-server)")
    pg, redis = Postgres(bins), Redis()
    try:
        pg.start()
        redis.start()
        # Migrated once; each test gets a copy (CREATE DATABASE … TEMPLATE: milliseconds).
        with psycopg.connect(f"postgres://postgres@127.0.0.1:{pg.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
        Mesh(pg, redis, TEMPLATE).manage("migrate", "--no-input", "-v", "0")
        yield pg, redis
    finally:
        redis.stop()
        pg.stop()


@pytest.fixture
def mesh(chaos_services, request):
    """A fresh database on the throw-away cluster for each test, migrated."""
    pg, redis = chaos_services
    database = "chaos_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    with psycopg.connect(f"postgres://postgres@127.0.0.1:{pg.port}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        conn.execute(f'CREATE DATABASE "{database}" TEMPLATE "{TEMPLATE}"')
    redis.flushall()
    mesh = Mesh(pg, redis, database)
    try:
        yield mesh
    finally:
        mesh.stop_all()
