"""Regenerate the bundled demo data: ``python -m streams.demo.generate``.

Deterministic (fixed seed and dates) so the demo looks the same on every machine. The people
are invented; numbers are in the 555-01xx range reserved for fiction, domains are example.*."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
START = dt.datetime(2026, 9, 1, 8, 0, tzinfo=dt.UTC)

PEOPLE = [
    ("Ana Souza", "+1 (415) 555-0100", "ana@example.com"),
    ("Ben Okafor", "415-555-0101", "ben.okafor@example.org"),
    ("Chloé Martin", "+1 415 555 0102", "chloe@example.fr"),
    ("Dmitri Ivanov", "(415) 555-0103", "dmitri@example.net"),
    ("Erin Walsh", "14155550104", "erin@example.com"),
    ("Farah Haddad", "+14155550105", "farah@example.com"),
    ("Goro Tanaka", "415.555.0106", "goro@example.jp"),
    ("Hana Novak", "+1-415-555-0107", "hana@example.cz"),
]
TEXTS_IN = [
    "Are we still on for Thursday?", "Got the quote, thanks — a few questions.", "Running 10 min late",
    "Can you call me when you have a minute?", "The invoice looks right 👍", "Who's bringing the projector?",
    "Landed. Taxi now.", "Happy to renew for another year.",
]
TEXTS_OUT = [
    "Yes, 3pm works.", "Sent the revised quote.", "No rush!", "Calling you in 5.", "Thanks, talk soon.",
    "Projector is on me.", "Welcome back!", "Great, I'll draw up the contract.",
]
PLACES = [("Office", 37.7793, -122.4193), ("Home", 37.7599, -122.4148), ("Café Réveille", 37.7765, -122.3942)]


def phone_events(rng: random.Random) -> list[dict]:
    events = []
    n = 0
    for day in range(0, 85):
        base = START + dt.timedelta(days=day)
        for _ in range(rng.randint(0, 3)):
            name, phone, _email = rng.choice(PEOPLE[:6] if rng.random() < 0.8 else PEOPLE)
            when = base + dt.timedelta(minutes=rng.randint(0, 12 * 60))
            n += 1
            kind = rng.choice(["call.incoming", "call.outgoing", "call.missed", "sms.received", "sms.sent", "sms.received"])
            role = "from" if kind.endswith(("incoming", "missed", "received")) else "to"
            data: dict = {}
            if kind.startswith("call"):
                data["duration"] = 0 if kind == "call.missed" else rng.randint(20, 1800)
            else:
                data["text"] = rng.choice(TEXTS_IN if role == "from" else TEXTS_OUT)
                data["thread"] = f"sms:{phone}"
            events.append({
                "id": f"p{n:04d}", "type": kind, "occurred_at": when.isoformat().replace("+00:00", "Z"),
                "data": data, "participants": [{"kind": "phone", "value": phone, "role": role, "name": name}],
            })
        if day % 2 == 0:
            place, lat, lon = rng.choice(PLACES)
            n += 1
            events.append({
                "id": f"p{n:04d}", "type": "location", "occurred_at": (base + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
                "data": {"lat": lat, "lon": lon, "accuracy": rng.randint(5, 40), "place": place, "text": f"At {place}"},
                "visibility": "public" if place == "Café Réveille" else "private",
            })
        n += 1
        events.append({
            "id": f"p{n:04d}", "type": "battery", "occurred_at": (base + dt.timedelta(hours=20)).isoformat().replace("+00:00", "Z"),
            "data": {"battery": rng.randint(12, 100), "charging": rng.random() < 0.3},
        })
    return events


def laptop_events(rng: random.Random) -> list[dict]:
    events = []
    for n in range(1, 31):
        when = START + dt.timedelta(days=rng.randint(0, 84), hours=rng.randint(1, 9))
        people = rng.sample(PEOPLE, rng.randint(1, 3))
        events.append({
            "id": f"l{n:04d}", "type": "meeting.attended", "occurred_at": when.isoformat().replace("+00:00", "Z"),
            "data": {"title": rng.choice(["Quarterly review", "Renewal call", "Design sync", "Onboarding"]),
                     "duration": rng.choice([900, 1800, 3600]), "direction": "none"},
            "participants": [{"kind": "email", "value": email, "role": "to", "name": name} for name, _p, email in people],
        })
    return sorted(events, key=lambda e: e["occurred_at"])


def main() -> None:
    rng = random.Random(20261125)
    for name, events in (("phone_events.jsonl", phone_events(rng)), ("laptop_events.jsonl", laptop_events(rng))):
        with (HERE / name).open("w") as fh:
            for event in events:
                fh.write(json.dumps(event, ensure_ascii=False) + "\n")
        print(name, len(events))


if __name__ == "__main__":
    main()
