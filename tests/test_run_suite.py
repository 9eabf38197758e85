"""tests/run_suite.py and the suite's own teardown: what ``make test`` refuses to run without,
and a run that needs no database passing where the configured database does not exist."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.fakes.subprocesses import ROOT

RUN_SUITE = ROOT / "tests" / "run_suite.py"
# A module whose tests use no database, so the PostgreSQL pass could run it anywhere.
NO_DATABASE_TESTS = "tests/test_twilio_fake.py"


def suite_env(**changes) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    env.update(changes)
    return env


@pytest.mark.parametrize(("variable", "package"), [("MESH_DOVECOT", "dovecot-imapd"), ("MESH_CHROMIUM", "chromium")])
def test_a_missing_dovecot_or_chromium_fails_the_run_like_a_missing_postgresql(variable, package, tmp_path):
    missing = str(tmp_path / "not-installed")
    done = subprocess.run([sys.executable, str(RUN_SUITE), NO_DATABASE_TESTS, "-q"], cwd=ROOT,
                          env=suite_env(**{variable: missing}), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"{missing} is not installed" in done.stderr
    assert f"apt-get install {package}" in done.stderr
    assert "passed" not in done.stdout  # pytest never ran


def test_a_run_that_uses_no_database_passes_when_the_configured_database_does_not_exist():
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        pytest.fail("DATABASE_URL is not a PostgreSQL URL: run the suite with tests/run_suite.py")
    absent = urlunsplit(urlsplit(url)._replace(path="/mesh_no_such_database"))
    done = subprocess.run([sys.executable, "-m", "pytest", NO_DATABASE_TESTS, "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=suite_env(DATABASE_URL=absent), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "error" not in done.stdout.lower()
