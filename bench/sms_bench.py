"""Benchmarks for SMS: signed Twilio webhooks under concurrent load, and SMS backup imports.

    createdb -h 127.0.0.1 -U postgres mesh_sms_bench        # once
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/mesh_sms_bench REDIS_URL=redis://127.0.0.1:6379/0
    .venv/bin/python -m bench.sms_bench webhook [--requests 6000] [--clients 16] [--rate 320] [--workers 4]
    .venv/bin/python -m bench.sms_bench backup [--messages 100000]

``webhook`` migrates the database, creates a throw-away workspace with a Twilio source, starts
``gunicorn mesh_site.wsgi`` (sync workers) and one ``celery worker`` on a queue of its own,
then runs the load from a separate process: ``--clients`` threads, each sending signed
inbound-SMS requests (signatures by twilio's RequestValidator, like Twilio's), 5 % of them
repeats of an earlier MessageSid (Twilio retries). ``--rate`` spreads the requests evenly
(open loop, requests/s in total); ``--rate 0`` sends as fast as the server answers. It waits
for the queue to drain and checks that every accepted message is exactly one activity. Prints
one JSON document: requests/s, latency percentiles (ms), drain time, lost and duplicated.

``backup`` writes a deterministic export (cached under var/bench/) and imports it with
``mesh_import sms_backup`` in a child process, printing messages/s and the child's peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "AC" + "b" * 32
TOKEN = "c" * 32
OURS = "+14155550199"
WORKSPACE = "smsbench"

# Production-like settings for the server and the worker (no DEBUG query logging).
BENCH_ENV = {
    "DEBUG": "0", "SECRET_KEY": "sms-bench-secret-key-not-for-production", "MESH_ENCRYPTION_KEYS": "sms-bench",
    "SECURE_SSL_REDIRECT": "0", "SESSION_COOKIE_SECURE": "0", "CSRF_COOKIE_SECURE": "0",
    "ALLOWED_HOSTS": "127.0.0.1,localhost", "DB_CONN_MAX_AGE": "60", "MESH_CELERY_QUEUE": "smsbench",
    "MESH_PUBLIC_URL": "", "DJANGO_SETTINGS_MODULE": "mesh_site.settings",
}


def pct(samples: list[float]) -> dict:
    ordered = sorted(samples)
    if not ordered:
        return {}

    def at(q):
        return round(ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))], 2)

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 2), "n": len(ordered)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def django_setup() -> None:
    for key, value in BENCH_ENV.items():
        os.environ.setdefault(key, value)
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL=postgres://... (a database of its own, e.g. mesh_sms_bench)")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def drop_workspace(slug: str) -> None:
    from streams.models import Workspace

    from .run import drop_workspace as drop

    ws = Workspace.objects.filter(slug=slug).first()
    if ws is not None:
        drop(ws)


# --- webhook ----------------------------------------------------------------------------------


def setup_source() -> int:
    from django.core.management import call_command

    from streams.services import source_create, workspace_get_or_create

    call_command("migrate", interactive=False, verbosity=0)
    drop_workspace(WORKSPACE)
    workspace = workspace_get_or_create(slug=WORKSPACE, name="SMS bench")
    source = source_create(workspace=workspace, connector="twilio_sms", name="bench",
                           config={"account_sid": ACCOUNT, "numbers": OURS}, secrets={"auth_token": TOKEN})
    return source.pk


def load(url: str, *, requests: int, clients: int, rate: float, repeat: float, seed: int) -> dict:
    """The load generator (runs in its own process): returns latencies and accepted SIDs."""
    import http.client
    from urllib.parse import urlencode, urlparse

    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TOKEN)
    parsed = urlparse(url)
    rng = random.Random(seed)
    plan: list[str] = []
    for i in range(requests):
        if plan and rng.random() < repeat:
            plan.append(rng.choice(plan))  # a Twilio retry of an earlier message
        else:
            plan.append(f"SM{seed:08x}{i:024x}")
    latencies: list[float] = []
    accepted: set[str] = set()
    errors: dict[str, int] = {}
    lock = threading.Lock()
    start = time.perf_counter() + 0.2
    interval = clients / rate if rate else 0.0

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        for n, sid in enumerate(plan[index::clients]):
            params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": ACCOUNT, "From": f"+1415555{int(sid[-4:], 16) % 10000:04d}",
                      "To": OURS, "Body": f"bench message {sid[-6:]} 👍", "NumMedia": "0", "NumSegments": "1",
                      "SmsStatus": "received", "ApiVersion": "2010-04-01"}
            body = urlencode(params)
            headers = {"Content-Type": "application/x-www-form-urlencoded",
                       "X-Twilio-Signature": validator.compute_signature(url, params)}
            if interval:
                due = start + (n + index / clients) * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            t = time.perf_counter()
            try:
                conn.request("POST", parsed.path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                status = type(exc).__name__
            ms = (time.perf_counter() - t) * 1000
            with lock:
                latencies.append(ms)
                if status == 200:
                    accepted.add(sid)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - max(t0, start - 0.2)
    return {"requests": len(plan), "unique": len(set(plan)), "seconds": round(elapsed, 2),
            "requests_per_s": round(len(plan) / elapsed, 1), "latency_ms": pct(latencies),
            "errors": errors, "accepted": sorted(accepted)}


def webhook(args) -> dict:
    django_setup()
    from django.db import close_old_connections

    from streams.models import Activity, InboundItem

    source_id = setup_source()
    close_old_connections()
    port = free_port()
    env = {**os.environ}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "mesh_site.wsgi", "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
         "--backlog", "2048", "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "mesh_site", "worker", "-Q", "smsbench", "-c", "1", "-l", "warning",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "-P", "solo"],
        cwd=ROOT, env=env, start_new_session=True,
    ) if not args.no_worker else None
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/hooks/twilio/{source_id}/sms"
        # A warm-up request per worker (imports, first connection), not counted.
        subprocess.run([sys.executable, "-m", "bench.sms_bench", "_load", url, "--requests", str(args.workers * 4),
                        "--clients", "4", "--rate", "0", "--seed", "1"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        child = subprocess.run(
            [sys.executable, "-m", "bench.sms_bench", "_load", url, "--requests", str(args.requests),
             "--clients", str(args.clients), "--rate", str(args.rate), "--seed", "2"],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        )
        result = json.loads(child.stdout)
        accepted = set(result.pop("accepted"))
        drain_start = time.perf_counter()
        if worker is None:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "mesh_site", "worker", "-Q", "smsbench", "-c", "1", "-l", "warning",
                 "--without-heartbeat", "--without-mingle", "--without-gossip", "-P", "solo"],
                cwd=ROOT, env=env, start_new_session=True,
            )
        deadline = time.time() + args.drain_timeout
        while time.time() < deadline:
            if not InboundItem.objects.filter(source_id=source_id, state="pending").exists():
                break
            time.sleep(0.5)
        drain = time.perf_counter() - drain_start
        keys = list(Activity.objects.filter(source_id=source_id).values_list("external_id", flat=True))
        stored = set(keys)
        result.update({
            "source": source_id, "workers": args.workers, "clients": args.clients, "target_rate": args.rate,
            "accepted_unique": len(accepted), "inbound_rows": InboundItem.objects.filter(source_id=source_id).count(),
            "activities": len(keys), "lost": len(accepted - stored), "duplicated": len(keys) - len(stored),
            "pending_after_drain": InboundItem.objects.filter(source_id=source_id, state="pending").count(),
            "drain_seconds_after_load": round(drain, 1), "cpus": os.cpu_count(),
        })
        return result
    finally:
        for proc in (server, worker):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        if not args.keep:
            drop_workspace(WORKSPACE)


# --- backup -----------------------------------------------------------------------------------


def generate_backup(path: Path, messages: int, seed: int = 11, people: int = 3000) -> Path:
    if path.exists():
        return path
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    words = "ok thanks see you soon running late call me later great invoice meeting tomorrow 👍 🙂".split()
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write("<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>\n")
        fh.write(f'<smses count="{messages}" backup_set="bench" type="full">\n')
        for i in range(messages):
            person = rng.randrange(people)
            number = rng.choice([f"415{5550000 + person:07d}", f"+1 (415) {555 + person // 10000:03d}-{person % 10000:04d}"])
            ms = int((start + dt.timedelta(seconds=i * 37)).timestamp() * 1000)
            text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 14)))
            text = text.replace("👍", "&#55357;&#56397;").replace("🙂", "&#55357;&#56898;")
            if i % 50 == 0:
                fh.write(f'  <mms date="{ms}" msg_box="1" address="{number}~{OURS}" m_type="132" text_only="1">\n'
                         f'    <parts><part seq="0" ct="text/plain" name="null" text="{text}" /></parts>\n'
                         f'    <addrs><addr address="{number}" type="137" /><addr address="{OURS}" type="151" />'
                         f'<addr address="415{5550000 + (person + 1) % people:07d}" type="151" /></addrs>\n  </mms>\n')
            else:
                fh.write(f'  <sms protocol="0" address="{number}" date="{ms}" type="{rng.choice("12")}" subject="null" '
                         f'body="{text}" read="1" status="-1" locked="0" date_sent="0" contact_name="Person {person}" />\n')
        fh.write("</smses>\n")
    tmp.rename(path)
    return path


def backup(args) -> dict:
    django_setup()
    from django.core.management import call_command

    from streams.identity import identity_mark_self
    from streams.services import workspace_get_or_create

    call_command("migrate", interactive=False, verbosity=0)
    path = generate_backup(ROOT / "var" / "bench" / f"sms_backup_{args.messages}.xml", args.messages)
    slug = WORKSPACE + "-backup"
    drop_workspace(slug)
    workspace = workspace_get_or_create(slug=slug)
    identity_mark_self(workspace=workspace, kind="phone", value=OURS)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    child = subprocess.run([sys.executable, "manage.py", "mesh_import", "sms_backup", str(path), "--workspace", slug, "--json"],
                           cwd=ROOT, env=os.environ, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    counts = json.loads(child.stdout)
    result = {**counts, "file_mb": round(path.stat().st_size / 2**20, 1), "seconds": round(seconds, 2),
              "messages_per_s": round(counts["fetched"] / seconds), "child_peak_rss_mb": round(max(peak, before) / 1024, 1),
              "cpus": os.cpu_count()}
    if not args.keep:
        drop_workspace(slug)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    w = sub.add_parser("webhook")
    w.add_argument("--requests", type=int, default=6000)
    w.add_argument("--clients", type=int, default=16)
    w.add_argument("--rate", type=float, default=320.0, help="requests/s in total; 0: as fast as possible")
    w.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    w.add_argument("--no-worker", action="store_true", help="start the Celery worker only after the load (drain then)")
    w.add_argument("--drain-timeout", type=float, default=600)
    w.add_argument("--keep", action="store_true")
    b = sub.add_parser("backup")
    b.add_argument("--messages", type=int, default=100_000)
    b.add_argument("--keep", action="store_true")
    lo = sub.add_parser("_load")  # the load generator's own process
    lo.add_argument("url")
    lo.add_argument("--requests", type=int, required=True)
    lo.add_argument("--clients", type=int, required=True)
    lo.add_argument("--rate", type=float, required=True)
    lo.add_argument("--repeat", type=float, default=0.05)
    lo.add_argument("--seed", type=int, default=2)
    args = parser.parse_args(argv)
    if args.what == "_load":
        out = load(args.url, requests=args.requests, clients=args.clients, rate=args.rate, repeat=args.repeat, seed=args.seed)
    elif args.what == "webhook":
        out = webhook(args)
    else:
        out = backup(args)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
