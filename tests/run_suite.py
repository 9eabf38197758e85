#!/usr/bin/env python3
"""Run Mesh's test suite on a real PostgreSQL and a real Redis, then pytest.

Usage (``make test`` does this, passing ``PYTEST_ARGS``)::

    .venv/bin/python tests/run_suite.py [pytest arguments...]

Standard library only: this runs before anything else is known to work.

PostgreSQL, first that applies:

1. ``DATABASE_URL`` (or the file named by ``DATABASE_URL_FILE``) if it is a ``postgres://`` or
   ``postgresql://`` URL. It must answer (checked with psql, or psycopg, or a TCP connect, on the
   server's ``postgres`` database: the database in the URL need not exist, pytest-django creates
   ``test_<name>`` from it). A URL that does not answer is an error, not a reason to look
   elsewhere. Any other DATABASE_URL (SQLite) is ignored: the suite runs on PostgreSQL.
2. A server answering on 127.0.0.1:5432: ``postgres://postgres@127.0.0.1:5432/mesh`` (user
   ``postgres`` first, then the current user).
3. A throw-away cluster from the installed server binaries (``initdb``/``pg_ctl`` under
   /usr/lib/postgresql/*/bin or on PATH): a temporary data directory, a free port on 127.0.0.1,
   trust authentication, fsync off. As root it runs as the ``postgres`` user (initdb refuses root).
   It is stopped and deleted when this script exits.

Redis, the same way: ``REDIS_URL`` (must answer PING), else 127.0.0.1:6379 if it answers
(``redis://127.0.0.1:6379/0``), else a throw-away ``redis-server`` on a free port (nothing on
disk), stopped at exit.

If a service can be found none of these ways, the script says which Debian packages to install
(``apt-get install postgresql redis-server``) and exits 2.

The PostgreSQL pass also needs two programs its tests start themselves: Dovecot
(``/usr/sbin/dovecot``, or ``MESH_DOVECOT``) for the IMAP tests and Chromium (``/usr/bin/chromium``,
or ``MESH_CHROMIUM``) for the browser tests. Either missing is the same exit 2 naming its package
(``apt-get install dovecot-imapd chromium``): those tests do not skip, so a machine without them
cannot report a green run that never read a mailbox or opened a page.

pytest then runs as ``python -m pytest ARGS`` with ``DATABASE_URL`` and ``REDIS_URL`` set, and
``MESH_TEST_REDIS_URL`` = the Redis URL with database index 9 (tests that start a real Celery
worker use it). One line on stderr says what is used.

A second pass follows: the SQLite smoke suite (``tests/sqlite/``) on the embedded default, a
throw-away SQLite file and no Redis (``MESH_TEST_ALLOW_SQLITE=1``). Given paths, each pass runs
only its own: ``run_suite.py tests/test_x.py`` is the PostgreSQL pass alone, ``run_suite.py
tests/sqlite`` the smoke suite alone. Each pass's result is printed on stderr at the end.

Environment:

``MESH_TEST_FORCE_THROWAWAY=1``
    Do not look at the default ports (127.0.0.1:5432 and :6379): when ``DATABASE_URL`` /
    ``REDIS_URL`` are not set, start throw-away servers even if shared ones are running. Used to
    test this script, and to keep a run off shared servers.

Exit status: the first failing pass's pytest status (0 when both pass), except that pytest's 5
("no tests collected") becomes 1 with a message, since a run that runs nothing has not passed;
2 if PostgreSQL, Redis, Dovecot or Chromium cannot be provided.
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

PG_DEFAULT_HOST, PG_DEFAULT_PORT = "127.0.0.1", 5432
REDIS_DEFAULT_HOST, REDIS_DEFAULT_PORT = "127.0.0.1", 6379
WORKER_REDIS_DB = 9
APT_HINT = "apt-get install {}"
# Programs the PostgreSQL pass's tests start themselves (tests/fakes/dovecot.py and
# tests/fakes/browser.py read the same variables), with the Debian package that installs each.
DOVECOT = os.environ.get("MESH_DOVECOT", "/usr/sbin/dovecot")
CHROMIUM = os.environ.get("MESH_CHROMIUM", "/usr/bin/chromium")
PROGRAMS = ((DOVECOT, "dovecot-imapd", "the IMAP tests"), (CHROMIUM, "chromium", "the browser tests"))

_cleanups: list = []
_child: subprocess.Popen | None = None
_got_signal: int | None = None
_forwarded = False


def log(msg: str) -> None:
    print(f"run_suite: {msg}", file=sys.stderr, flush=True)


class Unavailable(Exception):
    """A service that was asked for (or found) does not work; exit 2 with this message."""


# --- cleanup and signals ------------------------------------------------------------------------


def _run_cleanups() -> None:
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as exc:  # cleanup must go on
            log(f"cleanup failed: {exc}")


def _on_signal(signum, frame) -> None:
    global _got_signal, _forwarded
    _got_signal = signum
    if _child is not None and _child.poll() is None:
        # pytest is running: let it stop the way Ctrl-C stops it (fixture teardown, test database
        # dropped), then clean up. A terminal's Ctrl-C already reached pytest through the
        # process group; a SIGTERM/SIGHUP sent to this script alone is passed on as SIGINT, a
        # second one as SIGTERM.
        if signum != signal.SIGINT:
            try:
                _child.send_signal(signal.SIGTERM if _forwarded else signal.SIGINT)
            except ProcessLookupError:
                pass
            _forwarded = True
        return
    raise SystemExit(128 + signum)  # during start-up: atexit stops what was started


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if this script dies without cleaning up (SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# --- small helpers ------------------------------------------------------------------------------


def tcp_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def masked(url: str) -> str:
    """The URL with any password replaced by ***, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{quote(user)}:***@{netloc[1]}"))


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def env_value(name: str) -> str:
    """NAME, or the contents of the file named by NAME_FILE (as mesh_site.settings reads it)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise Unavailable(f"{name}_FILE={path} cannot be read: {exc}") from exc
    return os.environ.get(name, "").strip()


def forced_throwaway() -> bool:
    return os.environ.get("MESH_TEST_FORCE_THROWAWAY", "").strip().lower() in {"1", "true", "yes"}


# --- PostgreSQL ---------------------------------------------------------------------------------


def _pg_version_key(path: str) -> tuple:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def pg_server_binaries() -> dict | None:
    """Paths of initdb and pg_ctl (and psql if next to them), newest version first."""
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_pg_version_key, reverse=True):
        initdb, pg_ctl = os.path.join(bindir, "initdb"), os.path.join(bindir, "pg_ctl")
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            psql = os.path.join(bindir, "psql")
            return {
                "initdb": initdb,
                "pg_ctl": pg_ctl,
                "psql": psql if os.access(psql, os.X_OK) else None,
            }
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return {"initdb": initdb, "pg_ctl": pg_ctl, "psql": shutil.which("psql")}
    return None


def psql_binary() -> str | None:
    found = shutil.which("psql")
    if found:
        return found
    bins = pg_server_binaries()
    return bins["psql"] if bins else None


def pg_check(url: str) -> str | None:
    """None if PostgreSQL at URL runs `select 1` (on its `postgres` database), else why not."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host and not host.startswith("/") and not tcp_answers(host, parts.port or 5432):
        return f"nothing answers on {host}:{parts.port or 5432}"
    maint_url = with_path(url, "/postgres")
    psql = psql_binary()
    if psql:
        env = dict(os.environ, PGCONNECT_TIMEOUT="5")
        errors = []
        for candidate in (maint_url, url):  # `postgres` may not be reachable; then the URL's own db
            try:
                done = subprocess.run(
                    [psql, "-X", "-q", "-t", "-A", "-w", "-d", candidate, "-c", "select 1"],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=20,
                    env=env,
                )
            except subprocess.TimeoutExpired:
                errors.append("psql timed out")
                continue
            if done.returncode == 0 and done.stdout.strip() == "1":
                return None
            errors.append(done.stderr.strip() or f"psql exited {done.returncode}")
        return errors[0]
    try:
        import psycopg  # the project's own driver, if this Python has it
    except ImportError:
        return None  # TCP answered; nothing more can be checked without a client
    try:
        with psycopg.connect(maint_url, connect_timeout=5) as conn:
            conn.execute("select 1")
        return None
    except Exception as exc:
        return str(exc).strip()


class ThrowawayPostgres:
    def __init__(self, bins: dict):
        self.bins = bins
        self.as_root = os.geteuid() == 0
        self.base: str | None = None
        self.data: str | None = None
        self.started = False

    def _cmd(self, argv: list[str]) -> list[str]:
        if not self.as_root:
            return argv
        if shutil.which("runuser"):
            return ["runuser", "-u", "postgres", "--", *argv]
        return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(argv)]

    def _run(self, argv: list[str], what: str, timeout: float = 120) -> None:
        done = subprocess.run(
            self._cmd(argv),
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise Unavailable(
                f"{what} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
            )

    def start(self) -> str:
        parent = tempfile.gettempdir()
        if self.as_root:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise Unavailable(
                    "a throw-away PostgreSQL cannot run as root and there is no `postgres` user "
                    "to run it as; run as another user, or set DATABASE_URL"
                ) from exc
            if not os.stat(parent).st_mode & 0o001:  # postgres must be able to reach the dir
                parent = "/tmp"
        self.base = tempfile.mkdtemp(prefix="mesh-test-pg-", dir=parent)
        _cleanups.append(self.stop)
        if self.as_root:
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self.data = os.path.join(self.base, "data")
        log(f"starting a throw-away PostgreSQL in {self.base} ...")
        self._run(
            [
                self.bins["initdb"],
                "-D",
                self.data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write(
                "\n# mesh tests/run_suite.py: throw-away cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.base}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between choosing and binding it
            port = free_port()
            try:
                self._run(
                    [
                        self.bins["pg_ctl"],
                        "-D",
                        self.data,
                        "-l",
                        os.path.join(self.base, "postgres.log"),
                        "-o",
                        f"-p {port}",
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ],
                    "pg_ctl start",
                )
            except Unavailable as exc:
                last_error = str(exc)
                continue
            self.started = True
            url = f"postgres://postgres@127.0.0.1:{port}/mesh"
            deadline = time.monotonic() + 30
            while (error := pg_check(url)) and time.monotonic() < deadline:
                time.sleep(0.2)
            if error:
                raise Unavailable(f"the throw-away PostgreSQL does not answer: {error}")
            return url
        raise Unavailable(
            f"could not start a throw-away PostgreSQL: {last_error}\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return Path(self.base, "postgres.log").read_text()[-2000:]
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        if self.started:
            try:
                subprocess.run(
                    self._cmd(
                        [
                            self.bins["pg_ctl"],
                            "-D",
                            self.data,
                            "-m",
                            "immediate",
                            "-w",
                            "-t",
                            "30",
                            "stop",
                        ]
                    ),
                    cwd=self.base,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=60,
                )
            except Exception as exc:
                log(f"stopping the throw-away PostgreSQL failed: {exc}")
            self.started = False
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


# --- Redis --------------------------------------------------------------------------------------


def _resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def redis_ping(url: str, timeout: float = 3.0) -> str | None:
    """None if Redis at URL answers PING with +PONG (after AUTH if the URL has a password)."""
    parts = urlsplit(url)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(parts.path)
        elif parts.scheme in ("redis", "rediss"):
            host, port = parts.hostname or "localhost", parts.port or 6379
            sock = socket.create_connection((host, port), timeout=timeout)
            if parts.scheme == "rediss":
                import ssl

                ctx = ssl.create_default_context()
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # reachability only
                sock = ctx.wrap_socket(sock, server_hostname=host)
        else:
            return f"unsupported scheme {parts.scheme!r} (expected redis://, rediss:// or unix://)"
    except OSError as exc:
        return f"cannot connect: {exc}"
    try:
        with sock, sock.makefile("rb") as reader:
            password = unquote(parts.password) if parts.password else None
            if password is None:
                password = dict(parse_qsl(parts.query)).get("password")
            if password:
                user = unquote(parts.username) if parts.username else None
                sock.sendall(_resp("AUTH", user, password) if user else _resp("AUTH", password))
                answer = reader.readline().strip()
                if not answer.startswith(b"+OK"):
                    return f"AUTH answered {answer.decode(errors='replace')}"
            sock.sendall(b"PING\r\n")
            answer = reader.readline().strip()
    except OSError as exc:
        return f"no answer to PING: {exc}"
    if answer == b"+PONG":
        return None
    return f"PING answered {answer.decode(errors='replace')!r}"


def redis_with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
        return f"unix://{parts.netloc}{parts.path}?{urlencode(query)}"
    return urlunsplit(parts._replace(path=f"/{db}"))


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)),
        None,
    )


class ThrowawayRedis:
    def __init__(self, binary: str):
        self.binary = binary
        self.base: str | None = None
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        self.base = tempfile.mkdtemp(prefix="mesh-test-redis-")
        _cleanups.append(self.stop)
        logfile = os.path.join(self.base, "redis.log")
        log("starting a throw-away Redis ...")
        for _attempt in range(3):
            port = free_port()
            with open(logfile, "ab") as out:
                self.proc = subprocess.Popen(
                    [
                        self.binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--daemonize",
                        "no",
                        "--dir",
                        self.base,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C must not stop it under a running pytest
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                )
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 15
            while self.proc.poll() is None and time.monotonic() < deadline:
                if redis_ping(url, timeout=1) is None:
                    return url
                time.sleep(0.1)
            self._terminate()
        tail = Path(logfile).read_text(errors="replace")[-2000:]
        raise Unavailable(f"could not start a throw-away Redis:\n{tail}")

    def _terminate(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        self._terminate()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


# --- choosing ------------------------------------------------------------------------------------


def plan_postgres() -> tuple[str, object, str]:
    """('url', url, how) | ('throwaway', binaries, how) | ('missing', None, why)."""
    url = env_value("DATABASE_URL")
    if url:
        if re.match(r"postgres(ql)?://", url):
            error = pg_check(url)
            if error:
                raise Unavailable(f"DATABASE_URL={masked(url)} does not answer: {error}")
            return "url", url, "from DATABASE_URL"
        log(f"ignoring DATABASE_URL={masked(url)}: the suite runs on PostgreSQL")
    refused = ""
    if not forced_throwaway() and tcp_answers(PG_DEFAULT_HOST, PG_DEFAULT_PORT):
        users = ["postgres"]
        try:
            import getpass

            users.append(getpass.getuser())
        except Exception:
            pass
        errors = []
        for user in dict.fromkeys(users):
            candidate = f"postgres://{quote(user)}@{PG_DEFAULT_HOST}:{PG_DEFAULT_PORT}/mesh"
            error = pg_check(candidate)
            if error is None:
                return "url", candidate, f"running on {PG_DEFAULT_HOST}:{PG_DEFAULT_PORT}"
            errors.append(f"as {user}: {error}")
        refused = f"PostgreSQL on {PG_DEFAULT_HOST}:{PG_DEFAULT_PORT} refused: " + "; ".join(errors)
        log(refused)
    bins = pg_server_binaries()
    if bins:
        return "throwaway", bins, "throw-away"
    if refused:
        raise Unavailable(
            f"{refused}\nSet DATABASE_URL=postgres://USER:PASSWORD@{PG_DEFAULT_HOST}:{PG_DEFAULT_PORT}/mesh, "
            "or install the PostgreSQL server (apt-get install postgresql) for a throw-away cluster."
        )
    return (
        "missing",
        None,
        (
            f"PostgreSQL: DATABASE_URL is not set, nothing answers on {PG_DEFAULT_HOST}:{PG_DEFAULT_PORT}"
            + (" (not looked at: MESH_TEST_FORCE_THROWAWAY)" if forced_throwaway() else "")
            + ", and no server binaries (initdb, pg_ctl) are installed"
        ),
    )


def plan_redis() -> tuple[str, object, str]:
    url = env_value("REDIS_URL")
    if url:
        error = redis_ping(url)
        if error:
            raise Unavailable(f"REDIS_URL={masked(url)} does not answer: {error}")
        return "url", url, "from REDIS_URL"
    default = f"redis://{REDIS_DEFAULT_HOST}:{REDIS_DEFAULT_PORT}/0"
    if not forced_throwaway() and redis_ping(default) is None:
        return "url", default, f"running on {REDIS_DEFAULT_HOST}:{REDIS_DEFAULT_PORT}"
    binary = redis_server_binary()
    if binary:
        return "throwaway", binary, "throw-away"
    return (
        "missing",
        None,
        (
            f"Redis: REDIS_URL is not set, nothing answers PING on {REDIS_DEFAULT_HOST}:{REDIS_DEFAULT_PORT}"
            + (" (not looked at: MESH_TEST_FORCE_THROWAWAY)" if forced_throwaway() else "")
            + ", and redis-server is not installed"
        ),
    )


def missing_programs() -> list[tuple[str, str]]:
    """(why, package) for each program of PROGRAMS that is not installed."""
    return [
        (f"{path} is not installed (needed by {needed_by})", package)
        for path, package, needed_by in PROGRAMS
        if not os.access(path, os.X_OK)
    ]


def main(argv: list[str]) -> int:
    atexit.register(_run_cleanups)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    try:
        pg_kind, pg_value, pg_how = plan_postgres()
        redis_kind, redis_value, redis_how = plan_redis()
        missing = [
            (why, pkg)
            for kind, why, pkg in (
                (pg_kind, pg_how, "postgresql"),
                (redis_kind, redis_how, "redis-server"),
            )
            if kind == "missing"
        ]
        if split_passes(argv)[0] is not None:
            missing += missing_programs()
        if missing:
            for why, _pkg in missing:
                log(why + ".")
            packages = " ".join(pkg for _why, pkg in missing)
            log(
                f"Install the Debian packages: {APT_HINT.format(packages)}"
                "   (or set DATABASE_URL / REDIS_URL to servers that answer, MESH_DOVECOT /"
                " MESH_CHROMIUM to the programs)"
            )
            return 2
        database_url = ThrowawayPostgres(pg_value).start() if pg_kind == "throwaway" else pg_value
        redis_url = (
            ThrowawayRedis(redis_value).start() if redis_kind == "throwaway" else redis_value
        )
    except Unavailable as exc:
        log(str(exc))
        return 2
    worker_redis_url = redis_with_db(redis_url, WORKER_REDIS_DB)

    log(
        f"PostgreSQL {masked(database_url)} ({pg_how}); Redis {masked(redis_url)} ({redis_how}); "
        f"worker tests use {masked(worker_redis_url)}"
    )

    env = dict(os.environ)
    for name in ("DATABASE_URL_FILE", "REDIS_URL_FILE"):  # settings would prefer these
        env.pop(name, None)
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, MESH_TEST_REDIS_URL=worker_redis_url)

    postgres_args, sqlite_args = split_passes(argv)
    results: list[tuple[str, int]] = []
    if postgres_args is not None:
        results.append(("PostgreSQL", run_pytest(postgres_args, env)))
    if sqlite_args is not None and _got_signal is None:
        # `make test PYTEST_ARGS='-k feeds'` may select nothing in the smoke suite: not a failure
        # of that pass when the paths were not its own.
        selecting = postgres_args is not None and bool(argv)
        results.append(("SQLite", run_sqlite_pass(sqlite_args, allow_empty=selecting)))
    for name, code in results:
        log(f"{name} pass: {'passed' if code == 0 else f'FAILED (exit {code})'}")
    if _got_signal is not None:
        return 128 + _got_signal
    return next((code for _name, code in results if code != 0), 0)


def run_pytest(args: list[str], env: dict, *, allow_empty: bool = False) -> int:
    global _child
    _child = subprocess.Popen([sys.executable, "-m", "pytest", *args], env=env)
    code = _child.wait()
    _child = None
    if code < 0:  # pytest killed by a signal
        code = 128 - code
    if _got_signal is not None and code == 0:
        code = 128 + _got_signal
    if code == 5 and allow_empty:
        log("nothing selected in this pass by the arguments given")
        return 0
    if code == 5:
        log(
            "pytest collected no tests (its exit code 5). A run that runs nothing has not passed: "
            "check the paths and -k/-m options given (PYTEST_ARGS), and that tests/test_*.py exist."
        )
        return 1
    return code


# --- the SQLite pass ------------------------------------------------------------------------------

SQLITE_SUITE = Path(__file__).resolve().parent / "sqlite"


def _is_path(arg: str) -> bool:
    return not arg.startswith("-") and Path(arg.split("::", 1)[0]).exists()


def _in_sqlite_suite(arg: str) -> bool:
    return Path(arg.split("::", 1)[0]).resolve().is_relative_to(SQLITE_SUITE)


def split_passes(argv: list[str]) -> tuple[list[str] | None, list[str] | None]:
    """pytest arguments for the PostgreSQL pass and for the SQLite pass (None: that pass does
    not run). Without paths both run (the PostgreSQL pass collects ``tests/``, where
    tests/sqlite/conftest.py hides the smoke suite from it); with paths, each pass runs the
    paths that are its own, so ``run_suite.py tests/test_x.py`` is one PostgreSQL run as ever and
    ``run_suite.py tests/sqlite`` the smoke suite alone."""
    paths = [a for a in argv if _is_path(a)]
    if not paths:
        return list(argv), [*argv, str(SQLITE_SUITE)]
    options = [a for a in argv if a not in paths]
    ours = [a for a in paths if _in_sqlite_suite(a)]
    theirs = [a for a in paths if not _in_sqlite_suite(a)]
    return ([*options, *theirs] if theirs else None), ([*options, *ours] if ours else None)


def run_sqlite_pass(args: list[str], *, allow_empty: bool = False) -> int:
    """The smoke suite on the embedded default: a throw-away SQLite file, no Redis (eager
    Celery, database locks), as ``make demo`` runs. Issue 13.4: every door and page works there
    too, or refuses naming PostgreSQL."""
    base = tempfile.mkdtemp(prefix="mesh-sqlite-")
    _cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL_FILE", "REDIS_URL", "REDIS_URL_FILE", "MESH_TEST_REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{base}/mesh.sqlite3", MESH_TEST_ALLOW_SQLITE="1", MESH_VAR_DIR=base)
    log(f"SQLite pass: {env['DATABASE_URL']}, no Redis (the embedded default)")
    return run_pytest(args, env, allow_empty=allow_empty)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
