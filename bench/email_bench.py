"""Email benchmark: N generated messages from a throw-away Dovecot on loopback, through IMAP
fetch, the shared normalizer, ingest and timeline fan-out on PostgreSQL.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/mesh_email_bench REDIS_URL=redis://127.0.0.1:6379/0
    .venv/bin/python manage.py migrate
    .venv/bin/python manage.py mesh_bench_email [--messages 10000] [--batch-size 200] [--json]

The messages (2–8 KB, a third with an HTML alternative, 1 in 20 a newsletter, replies in
threads, 300 correspondents) are written straight into the user's Maildir before the clock
starts; the timed part is one ``source_sync`` from an empty cursor: IMAP ``FETCH BODY.PEEK[]``
in bounded batches, parse, ingest (identities, activities, participants) and fan-out, committed
batch by batch. Reports messages/s, the peak RSS of this process (``ru_maxrss``) and checks
that every message is exactly one activity. The workspace is deleted afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import secrets
import sys
import time
from email.utils import format_datetime

FIRST = ["Ana", "Ben", "Chloé", "Dmitri", "Erin", "Farah", "Goro", "Hana", "Ivan", "Jun", "Kofi", "Lena"]
LAST = ["Souza", "Okafor", "Martin", "Ivanov", "Walsh", "Haddad", "Tanaka", "Novak", "Berg", "Kim"]
WORDS = ("quote order meeting invoice renewal contract shipping thursday projector budget review plan "
         "draft figures numbers team call agenda notes launch").split()


def _message(rng: random.Random, n: int, people: list[tuple[str, str]], start: dt.datetime) -> bytes:
    when = start + dt.timedelta(minutes=7 * n + rng.randint(0, 5))
    name, addr = rng.choice(people)
    me = ("Me", "me@mesh.example")
    outgoing = rng.random() < 0.3
    sender, to = (me, (name, addr)) if outgoing else ((name, addr), me)
    headers = [f"From: {sender[0]} <{sender[1]}>", f"To: {to[0]} <{to[1]}>",
               f"Subject: {'Re: ' if n % 3 else ''}{' '.join(rng.sample(WORDS, 3)).capitalize()}",
               f"Date: {format_datetime(when)}", f"Message-ID: <bench-{n}@{sender[1].split('@')[1]}>",
               "MIME-Version: 1.0"]
    if n % 3 and n > 3:
        headers += [f"In-Reply-To: <bench-{n - 3}@example.com>", f"References: <bench-{n - 3}@example.com>"]
    if n % 20 == 0:
        headers = [f"From: Deals <no-reply@news{n % 7}.example.com>", "To: Me <me@mesh.example>",
                   f"Subject: Deals #{n}", f"Date: {format_datetime(when)}", f"Message-ID: <nl-{n}@news.example.com>",
                   "List-Unsubscribe: <https://news.example.com/u>", "MIME-Version: 1.0"]
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 120))) for _ in range(rng.randint(2, 8))]
    text = "\n\n".join(paragraphs) + "\n\n-- \nSent from Mesh bench\n"
    if n % 3 == 0:
        html = "".join(f"<p>{p}</p>" for p in paragraphs) + '<img src="https://t.example.com/p.gif" width="1" height="1">'
        body = ("Content-Type: multipart/alternative; boundary=\"b\"\n\n--b\nContent-Type: text/plain; charset=utf-8\n\n"
                f"{text}\n--b\nContent-Type: text/html; charset=utf-8\n\n<html><body>{html}</body></html>\n--b--\n")
    else:
        body = f"Content-Type: text/plain; charset=utf-8\n\n{text}"
    return ("\n".join(headers) + "\n" + body).encode("utf-8")


def write_maildir(path, count: int, uid: int, gid: int, seed: int = 7) -> int:
    """Write ``count`` messages into Maildir ``path``/cur; returns the bytes written."""
    rng = random.Random(seed)
    people = [(f"{rng.choice(FIRST)} {rng.choice(LAST)}", f"person{i}@example{i % 9}.com") for i in range(300)]
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(path / sub, exist_ok=True)
    total = 0
    base = int(start.timestamp())
    for n in range(1, count + 1):
        data = _message(rng, n, people, start)
        total += len(data)
        name = path / "cur" / f"{base + n}.M{n}P1.bench,S={len(data)}:2,"
        name.write_bytes(data)
    for dirpath, _dirnames, filenames in os.walk(path.parent):
        os.chown(dirpath, uid, gid)
        for f in filenames:
            os.chown(os.path.join(dirpath, f), uid, gid)
    return total


def _drop_workspace(workspace) -> None:
    from .run import drop_workspace

    drop_workspace(workspace)


def run(*, messages: int = 10_000, batch_size: int = 200, prefetch: bool = True, log=sys.stderr) -> dict:
    import pwd

    from streams.identity import identity_mark_self
    from streams.models import Activity, TimelineEntry
    from streams.services import source_create, source_sync, workspace_get_or_create
    from tests.fakes.dovecot import Dovecot

    server = Dovecot.start()
    try:
        user, password = server.add_user()
        owner = pwd.getpwnam("dovecot") if os.getuid() == 0 else pwd.getpwuid(os.getuid())
        t = time.perf_counter()
        size = write_maildir(server.maildir(user), messages, owner.pw_uid, owner.pw_gid)
        print(f"wrote {messages} messages ({size / 1e6:.1f} MB) in {time.perf_counter() - t:.1f}s", file=log)
        slug = f"bench-email-{secrets.token_hex(3)}"
        workspace = workspace_get_or_create(slug=slug, name="Email bench")
        identity_mark_self(workspace=workspace, kind="email", value="me@mesh.example", display="Me")
        source = source_create(
            workspace=workspace, connector="imap", name="bench",
            config={"host": "127.0.0.1", "port": str(server.port), "security": "none", "username": user,
                    "folders": "INBOX", "batch_size": str(batch_size), "prefetch": str(prefetch)},
            secrets={"password": password},
        )
        done = {"n": 0}

        def progress(total):
            if total.fetched - done["n"] >= 2000:
                done["n"] = total.fetched
                print(f"  {total.fetched} fetched, {time.perf_counter() - start:.1f}s", file=log)

        start = time.perf_counter()
        sync = source_sync(source=source, progress=progress)
        elapsed = time.perf_counter() - start
        stored = Activity.objects.filter(source=source).count()
        entries = TimelineEntry.objects.filter(activity__source=source).count()
        from .run import peak_rss_mb

        peak_mb = peak_rss_mb()
        result = {
            "messages": messages, "megabytes": round(size / 1e6, 1), "seconds": round(elapsed, 2),
            "messages_per_second": round(messages / elapsed), "peak_rss_mb": round(peak_mb),
            "fetched": sync.fetched, "new": sync.new, "duplicate": sync.duplicate, "failed": sync.failed,
            "activities": stored, "timeline_entries": entries, "batches": sync.batches,
            "exactly_once": stored == messages == sync.new, "prefetch": prefetch,
            "load_average": [round(x, 1) for x in os.getloadavg()],
        }
        print(f"cleaning up workspace {slug}", file=log)
        _drop_workspace(workspace)
        return result
    finally:
        server.stop()
