"""Benchmark: X archive import, end to end (zip → streaming parse → normalize → ingest with
identities, participants and timelines on PostgreSQL).

    createdb -h 127.0.0.1 -U postgres mesh_x_bench   # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mesh_x_bench \\
        .venv/bin/python -m bench.twitter_bench --tweets 200000 [--dms 20000]

Generates a deterministic archive (cached under var/bench/), then imports it with
``mesh_import twitter_archive`` in a fresh child process (so the peak RSS measured is the
import's alone) into a new workspace, and prints one JSON document: counts, seconds, items/s,
tweets/s and the child's peak RSS. Use a database of its own: it is left behind to inspect.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWNER = "4100000001"
# Production-like settings for the import (DEBUG would keep every SQL statement in memory).
BENCH_ENV = {"DEBUG": "0", "SECRET_KEY": "twitter-bench-secret-key-not-for-production",
             "MESH_ENCRYPTION_KEYS": "twitter-bench", "ALLOWED_HOSTS": "127.0.0.1,localhost"}
WORDS = ("ship quote renewal coffee meeting thanks launch review lisbon timeline archive import "
         "celery postgres desk run bike soup talk demo friday question agenda").split()


def generate(path: Path, *, tweets: int, dms: int, seed: int = 7, people: int = 2000) -> Path:
    from connectors.twitter_archive import writer as w

    rng = random.Random(seed)
    start = dt.datetime(2012, 1, 1, tzinfo=dt.UTC)
    span = 14 * 365 * 86400
    users = [(str(4200000000 + i), f"user{i}") for i in range(people)]

    def tweet_iter():
        for n in range(tweets, 0, -1):  # newest first, as X writes them
            tid = str(1_000_000_000_000_000 + n)
            when = start + dt.timedelta(seconds=span * n // tweets)
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30)))
            r = rng.random()
            if r < 0.35 and n > 1:
                uid, name = rng.choice(users)
                yield w.tweet(tid, when, f"@{name} {words}", reply_to=(str(1_000_000_000_000_000 + rng.randint(1, n - 1)), uid, name),
                              mentions=[(uid, name)])
            elif r < 0.45:
                yield w.tweet(tid, when, words, media=[(str(2_000_000_000_000_000 + n), "photo")])
            elif r < 0.55:
                uid, name = rng.choice(users)
                yield w.tweet(tid, when, f"RT @{name}: {words}", mentions=[(uid, name)])
            else:
                yield w.tweet(tid, when, words)

    conversations = []
    per = 50
    for c in range(max(1, dms // per)):
        uid, _name = users[c % people]
        messages = []
        for k in range(per):
            mid = str(3_000_000_000_000_000 + c * per + k)
            when = start + dt.timedelta(seconds=rng.randint(0, span))
            sender, recipient = (OWNER, uid) if k % 2 else (uid, OWNER)
            messages.append(w.message(mid, sender, when, " ".join(rng.choice(WORDS) for _ in range(8)), recipient))
        conversations.append(w.conversation(f"{OWNER}-{uid}", messages))
    path.parent.mkdir(parents=True, exist_ok=True)
    return w.write_archive(path, account=w.account(OWNER, "bench_owner"), tweets=tweet_iter(),
                           tweets_per_part=50_000, dms=conversations if dms else [])


def import_child(path: Path, workspace: str) -> dict:
    """Run in the child: the import, timed, with peak RSS."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mesh_site.settings")
    django.setup()
    from io import StringIO

    from django.core.management import call_command

    from bench.run import peak_rss_mb
    from streams.services import workspace_get_or_create

    workspace_get_or_create(slug=workspace)  # commands refuse a workspace that does not exist
    out = StringIO()
    began = time.perf_counter()
    call_command("mesh_import", "twitter_archive", str(path), "--workspace", workspace, "--json", stdout=out, stderr=StringIO())
    seconds = time.perf_counter() - began
    counts = json.loads(out.getvalue())
    return {**counts, "seconds": round(seconds, 2),
            "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tweets", type=int, default=200_000)
    parser.add_argument("--dms", type=int, default=0, help="direct messages (in conversations of 50)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workspace", default="bench-x", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(import_child(Path(args.child), args.workspace)))
        return 0
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("set DATABASE_URL=postgres://... (the benchmark measures PostgreSQL)", file=sys.stderr)
        return 2
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mesh_site.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    path = ROOT / "var" / "bench" / f"twitter-archive-{args.tweets}-{args.dms}.zip"
    if not path.exists():
        began = time.perf_counter()
        generate(path, tweets=args.tweets, dms=args.dms)
        print(f"generated {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - began:.1f}s",
              file=sys.stderr)
    slug = f"{args.workspace}-{int(time.time())}"
    child = subprocess.run([sys.executable, "-m", "bench.twitter_bench", "--child", str(path), "--workspace", slug],
                           cwd=ROOT, capture_output=True, text=True, env={**os.environ, **BENCH_ENV})
    if child.returncode:
        print(child.stderr[-3000:], file=sys.stderr)
        return 1
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result["workspace"] = slug
    print(f"imported into workspace {slug}: the bench database is disposable (dropdb it)", file=sys.stderr)
    items = result["fetched"]
    result.update(
        tweets=args.tweets, dms=args.dms, archive_mb=round(path.stat().st_size / 1e6, 1),
        items_per_s=round(items / result["seconds"]), tweets_per_s=round(args.tweets / result["seconds"]),
        cpus=os.cpu_count(),
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
