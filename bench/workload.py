"""A deterministic synthetic workload pushed through the real ingest path.

``Workload(activities=N, contacts=C, devices=D, seed=S)`` yields batches of RawItems whose
payloads the `BenchConnector` normalizes into ActivityDrafts of all four channels, with
realistic participant counts. Contacts are drawn Zipf-like: the hottest contact gets ~10% of
all items, a few get thousands, most get a handful — the shape that makes naive timeline
queries slow. Everything is a pure function of the seed: two runs give the same rows.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from connectors.base import ActivityDraft, Connector, ParticipantDraft, RawItem

START = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
SPAN_SECONDS = 6 * 365 * 24 * 3600
CHANNELS = ("email", "sms", "twitter", "device")
CHANNEL_WEIGHTS = (0.45, 0.25, 0.1, 0.2)
WORDS = (
    "quote renewal invoice meeting thanks question order shipping delay contract pricing demo call "
    "follow-up project update schedule lunch report feedback support ticket release review budget"
).split()


def contact_email(n: int) -> str:
    return f"person{n}@example{n % 97}.com"


def contact_phone(n: int) -> str:
    return f"+1415{n:07d}"[:12]


def contact_x(n: int) -> str:
    return str(10_000_000 + n)


@dataclass
class Workload:
    activities: int = 1_000_000
    contacts: int = 10_000
    devices: int = 100
    seed: int = 42
    batch_size: int = 1000
    hot_share: float = 0.10  # the hottest contact's share of all items

    def __post_init__(self) -> None:
        # Zipf-like weights with the head pinned at hot_share: w_k = 1 / k^s for k >= 2.
        s = 1.1
        tail = [1.0 / (k**s) for k in range(2, self.contacts + 1)]
        tail_total = sum(tail) or 1.0
        weights = [self.hot_share] + [(1 - self.hot_share) * w / tail_total for w in tail]
        self._cum = list(itertools.accumulate(weights))
        self._channel_cum = list(itertools.accumulate(CHANNEL_WEIGHTS))[:-1]
        # Bodies come from a pool: drawing ~150 random words per item cost as much as ingesting
        # it, and with --workers every process generates the whole sequence.
        pool_rng = random.Random(self.seed ^ 0x5EED)
        self._subjects = [" ".join(pool_rng.choices(WORDS, k=pool_rng.randint(4, 14))) for _ in range(1024)]
        self._bodies = [" ".join(pool_rng.choices(WORDS, k=pool_rng.randint(120, 180))) for _ in range(4096)]

    def pick_contact(self, rng: random.Random) -> int:
        return min(bisect.bisect_left(self._cum, rng.random() * self._cum[-1]), self.contacts - 1)

    def expected_share(self, contact: int) -> float:
        prev = self._cum[contact - 1] if contact else 0.0
        return (self._cum[contact] - prev) / self._cum[-1]

    def contact_near_share(self, share: float) -> int:
        """The contact whose expected share of items is closest to ``share``."""
        return min(range(self.contacts), key=lambda c: abs(self.expected_share(c) - share))

    def items(self) -> Iterator[RawItem]:
        rng = random.Random(self.seed)
        step = SPAN_SECONDS / max(self.activities, 1)
        for i in range(self.activities):
            channel = CHANNELS[bisect.bisect(self._channel_cum, rng.random())]
            main = self.pick_contact(rng)
            others = [self.pick_contact(rng) for _ in range(rng.choice((0, 0, 0, 1, 2)))] if channel == "email" else []
            when = START + dt.timedelta(seconds=int(i * step + rng.random() * step))
            payload = {
                "n": i,
                "ch": channel,
                "c": main,
                "o": others,
                "d": rng.randrange(self.devices) if channel in ("device", "sms") and self.devices else None,
                "t": when.isoformat(),
                "out": rng.random() < 0.4,
                "w": self._subjects[rng.randrange(1024)],
                # ~1 KB of body, like the measured rows
                "b": self._bodies[rng.randrange(4096)],
            }
            yield RawItem(f"bench-{i}", payload)

    def batches(self) -> Iterator[list[RawItem]]:
        it = self.items()
        while True:
            chunk = list(itertools.islice(it, self.batch_size))
            if not chunk:
                return
            yield chunk


class BenchConnector(Connector):
    """Normalizes workload payloads; not registered: the benchmark hands it to ingest_batch."""

    key = "bench"
    channel = "bench"

    def normalize(self, raw: RawItem) -> ActivityDraft:
        p = raw.payload
        channel = p["ch"]
        c = p["c"]
        out = p["out"]
        me_role, them_role = ("from", "to") if out else ("to", "from")
        participants: list[ParticipantDraft] = []
        if channel == "email":
            participants.append(ParticipantDraft(me_role, "email", "me@mesh.example", "Me"))
            participants.append(ParticipantDraft(them_role, "email", contact_email(c), f"Person {c}"))
            participants += [ParticipantDraft("cc", "email", contact_email(o), f"Person {o}") for o in p["o"]]
        elif channel == "sms":
            participants.append(ParticipantDraft(them_role, "phone", contact_phone(c), f"Person {c}"))
        elif channel == "twitter":
            participants.append(ParticipantDraft("author" if not out else "mention", "x", contact_x(c), f"@person{c}"))
        else:
            participants.append(ParticipantDraft(them_role, "phone", contact_phone(c), f"Person {c}"))
        return ActivityDraft(
            channel=channel,
            verb={"email": "send" if out else "receive", "sms": "message", "twitter": "post", "device": "call"}[channel],
            direction="out" if out else "in",
            occurred_at=dt.datetime.fromisoformat(p["t"]),
            dedup_key=f"bench:{p['n']}",
            subject=p["w"] if channel == "email" else "",
            text=p["b"],
            thread_key=f"t{c}-{p['n'] // 50}",
            participants=participants,
            device=str(p["d"]) if p["d"] is not None else None,
        )
