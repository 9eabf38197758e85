"""Regenerate the X archive the demo imports: ``python -m bench.demo_x_archive``.

The archive's JSON files are committed under streams/demo/ (``twitter_<file>.json``); this builds
them with the archive connector's writer from a fixed seed, so they are the same on every run.
It lives with the other generated workloads because the core never imports a concrete connector.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

from connectors.twitter_archive import writer as w
from streams.demo.generate import START
from streams.demo.load_40_twitter import ARCHIVE_DIR, FILES, OWNER_HANDLE, OWNER_ID, PEOPLE_X

POSTS = [
    "Shipping the new timeline view today. Keyset paging all the way down.",
    "Morning run along the Embarcadero, then coffee at Café Réveille ☕",
    "Reading list this week: three papers on CRDTs and one on Celery retries.",
    "Reminder to self: a 429 is a schedule, not an error.",
    "Quiet Sunday. Fixing the bike, then soup.",
    "Wrote down why fan-out happens inside the ingest transaction: https://t.co/mesh0001",
    "Conference talk accepted! See you in Lisbon.",
    "New desk setup, finally a standing desk.",
    "Our archive importer streams a 2 GB export without breaking a sweat.",
    "Friday demo went well. Thanks to everyone who came by.",
]
REPLIES = [
    "Thanks, glad it helped!", "Yes — Thursday at 3 works.", "Sending the updated quote tonight.",
    "Agreed, let's keep it simple.", "Congrats on the launch!", "Good question, DM me the details?",
]
DM_IN = ["Got the quote, thanks — a few questions.", "Are we still on for Thursday?", "Can you send the slides?",
         "Happy to renew for another year.", "Landed. Taxi now."]
DM_OUT = ["Sure, ask away.", "Yes, 3pm works.", "Slides are in your inbox.", "Great, I'll draw up the contract.",
          "Welcome back!"]


def elements(seed: int = 40) -> dict[str, list]:
    """The archive's content, a pure function of the seed."""
    rng = random.Random(seed)
    tweets, n = [], 0

    def tid() -> str:
        nonlocal n
        n += 1
        return f"18600000000000{n:05d}"

    for day in range(0, 84, 3):
        when = START + dt.timedelta(days=day, hours=rng.randint(1, 12), minutes=rng.randint(0, 59))
        kind = rng.random()
        if kind < 0.55:
            text = rng.choice(POSTS)
            urls = [("https://t.co/mesh0001", "https://mesh.example/design#fan-out")] if "t.co" in text else []
            media = [(f"18700000000000{n:05d}", "photo")] if "desk" in text else []
            tweets.append(w.tweet(tid(), when, text, urls=urls, media=media))
        elif kind < 0.9:
            uid, handle, _name, _phone = rng.choice(PEOPLE_X[:6])
            status = f"18500000000000{rng.randint(0, 99999):05d}"
            tweets.append(w.tweet(tid(), when, f"@{handle} {rng.choice(REPLIES)}", reply_to=(status, uid, handle),
                                  mentions=[(uid, handle)]))
        else:
            uid, handle, _name, _phone = rng.choice(PEOPLE_X)
            tweets.append(w.tweet(tid(), when, f"RT @{handle}: {rng.choice(POSTS)}", mentions=[(uid, handle)]))
    # A thread of the owner's own.
    root = tid()
    base = START + dt.timedelta(days=50, hours=9)
    tweets.append(w.tweet(root, base, "Three things I learned building an activity-stream aggregator 🧵"))
    second = tid()
    tweets.append(w.tweet(second, base + dt.timedelta(minutes=2), "1. Idempotency first: every step can run twice.",
                          reply_to=(root, OWNER_ID, OWNER_HANDLE)))
    tweets.append(w.tweet(tid(), base + dt.timedelta(minutes=4), "2. Identities are ids; names are only display.",
                          reply_to=(second, OWNER_ID, OWNER_HANDLE)))
    tweets.sort(key=lambda e: e["tweet"]["id_str"], reverse=True)  # newest first, as X writes them

    dms, m = [], 0
    for uid, _handle, _name, _phone in PEOPLE_X[:5]:
        messages = []
        for k in range(rng.randint(2, 4)):
            m += 1
            when = START + dt.timedelta(days=rng.randint(0, 80), hours=rng.randint(8, 20))
            if k % 2 == 0:
                messages.append(w.message(f"18800000000000{m:05d}", uid, when, rng.choice(DM_IN), OWNER_ID))
            else:
                messages.append(w.message(f"18800000000000{m:05d}", OWNER_ID, when, rng.choice(DM_OUT), uid))
        messages.sort(key=lambda e: e["messageCreate"]["id"], reverse=True)
        dms.append(w.conversation(f"{OWNER_ID}-{uid}" if OWNER_ID < uid else f"{uid}-{OWNER_ID}", messages))
    group_members = [OWNER_ID, PEOPLE_X[0][0], PEOPLE_X[1][0], PEOPLE_X[2][0]]
    when = START + dt.timedelta(days=30, hours=18)
    group = [
        w.message("1889000000000000003", OWNER_ID, when + dt.timedelta(minutes=9), "Projector is on me."),
        w.message("1889000000000000002", PEOPLE_X[2][0], when + dt.timedelta(minutes=5), "I'll bring snacks 🥐"),
        w.message("1889000000000000001", PEOPLE_X[1][0], when, "Who's bringing the projector Thursday?"),
    ]
    group_dms = [w.conversation("1889000000000000000", group, members=group_members, started=when)]
    account = w.account(OWNER_ID, OWNER_HANDLE, "Me", "me@mesh.example")
    return {"account": [account], "tweets": tweets, "direct_messages": dms, "direct_messages_group": group_dms}


def write_json(folder: Path = ARCHIVE_DIR) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, items in elements().items():
        text = json.dumps(items, indent=2, ensure_ascii=False, separators=(",", " : "))
        (folder / f"twitter_{FILES[name]}.json").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_json()
    print(f"wrote {ARCHIVE_DIR}")
