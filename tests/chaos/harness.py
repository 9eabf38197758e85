"""The chaos suite's own services (its fixtures are in conftest.py): a throw-away PostgreSQL
cluster and a throw-away Redis that these tests start, kill, flush and restart, so nothing they do touches the servers other test
runs on this machine share. Mesh runs against them only in subprocesses (a Celery worker,
gunicorn, management commands, tests/chaos/probe.py), exactly as deployed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from tests.run_suite import (
    ThrowawayPostgres,
    free_port,
    redis_ping,
    redis_server_binary,
)

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "chaos"
TEMPLATE = "chaos_template"
# Short periods, so that what the workers recover by themselves happens within a test.
SWEEP_SECONDS = 2


class Postgres(ThrowawayPostgres):
    """run_suite's throw-away cluster, which can also be stopped and started on its port."""

    def start(self) -> str:
        self.url = super().start()
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        return self.url

    def _ctl(self, *args: str) -> None:
        self._run([self.bins["pg_ctl"], "-D", self.data, "-w", "-t", "60", *args], f"pg_ctl {args[-1]}")

    def stop_now(self) -> None:
        self._ctl("-m", "fast", "stop")

    def start_again(self) -> None:
        self._ctl("-l", os.path.join(self.base, "postgres.log"), "-o", f"-p {self.port}", "start")


class Redis:
    """A redis-server with nothing on disk: a restart loses everything, like a wipe."""

    def __init__(self):
        self.binary = redis_server_binary()
        self.dir = tempfile.mkdtemp(prefix="mesh-chaos-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for(lambda: redis_ping(self.url, timeout=1) is None, "redis to answer", timeout=15)

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def flushall(self) -> None:
        import redis

        redis.Redis.from_url(self.url).flushall()


def wait_for(predicate, what: str, timeout: float = 30.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Mesh:
    """Mesh against the throw-away services: subprocesses only (the test process's own Django
    settings point at the shared test database)."""

    def __init__(self, pg: Postgres, redis: Redis, database: str):
        self.pg, self.redis = pg, redis
        self.database_url = f"postgres://postgres@127.0.0.1:{pg.port}/{database}"
        self.database = database
        self.procs: list[subprocess.Popen] = []

    def env(self, **extra: str) -> dict:
        return {
            **os.environ, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis.url,
            "MESH_CELERY_QUEUE": QUEUE, "MESH_INBOUND_SWEEP_SECONDS": str(SWEEP_SECONDS),
            "DJANGO_SETTINGS_MODULE": "mesh_site.settings", "PYTHONPATH": str(ROOT), **extra,
        }

    def run(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=self.env(), capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("manage.py", *args, check=check)

    def probe(self, *args: str) -> dict:
        return json.loads(self.run("-m", "tests.chaos.probe", *args).stdout)

    def sql(self, query: str, params=()) -> list[tuple]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def spawn(self, argv: list[str], **extra: str) -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env(**extra), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.procs.append(proc)
        return proc

    def worker(self) -> subprocess.Popen:
        """A prefork worker with one pool child (so that the child can be killed on its own)."""
        proc = self.spawn([sys.executable, "-m", "celery", "-A", "mesh_site", "worker", "--pool=prefork",
                           "--concurrency=1", "--loglevel=INFO", "-Q", QUEUE, "--without-gossip",
                           "--without-mingle", "--without-heartbeat", "-n", f"chaos{len(self.procs)}@%h"])
        wait_for(lambda: pool_children(proc.pid), "the worker's pool child")
        return proc

    def web(self) -> str:
        port = free_port()
        self.spawn([sys.executable, "-m", "gunicorn", "mesh_site.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2",
                    "--graceful-timeout", "2"])
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url), "gunicorn to answer")
        return url

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with_group(proc, signal.SIGKILL)
            out, _ = proc.communicate()
            print(f"--- {' '.join(proc.args[1:4])} (pid {proc.pid}):\n{out[-40000:]}")  # shown if the test failed
        self.procs.clear()


def with_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def pool_children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url + "/accounts/login/", timeout=2)
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
