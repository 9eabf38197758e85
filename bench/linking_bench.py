"""Merge suggestion benchmark: a generated workspace of N contacts (default 10,000) with planted
true pairs (one person, two contacts) and false pairs (two people who look alike), through the
real ingest; then ``merge_suggestions_refresh`` timed, and its suggestions checked against the
plant: precision and recall at the default threshold (``streams.linking.SUGGEST_AT``).

    .venv/bin/python manage.py mesh_bench_linking [--contacts 10000] [--seed 17] [--keep] [--json]

What is planted (deterministic for a seed), per 10,000 contacts:

- true pairs (1,000): same name across channels, with the order ("Souza, Ana") or accents
  changed (250); a phone number in a mail signature (200); two numbers with one address book
  name (150); one email thread written from two addresses (150); an X handle that is the
  email's local part (150); initials only, "A. Souza" against "Ana Souza" (100; weak by
  design, so these count against recall);
- false pairs: namesakes on different channels (20) and on one channel (40), a signature that
  names a colleague's number (20), a name shared by three people (20 triples);
- everyone else (7,780) one contact with a name of their own.

Names are generated (surnames from syllables), so an accidental namesake among the singles is
possible and counts like any other suggestion. Every suggested pair whose two contacts belong to
one planted person is a true positive; recall is over the 1,000 true pairs.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import Counter

from connectors.base import ActivityDraft, Connector, ParticipantDraft, RawItem

FIRST = ["Ana", "Ben", "Chloé", "Dmitri", "Erin", "Farah", "Goro", "Hana", "Iván", "Jun", "Kofi", "Lena", "Marta",
         "Nils", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tomás", "Uma", "Víctor", "Wanda", "Xavier", "Yara",
         "Zoë", "Amir", "Beatriz", "Carl", "Dana", "Elif", "Felipe", "Greta", "Hugo", "Inés", "José", "Kira", "Luca"]
SYLLABLES = ["so", "za", "ka", "ri", "mo", "len", "ber", "tan", "vi", "lo", "mar", "ne", "dor", "ush", "pel", "gra",
             "fi", "hal", "quin", "tor", "ves", "bru", "chi", "dal", "ek", "fo", "gun", "has", "ib", "jor"]
TRUE_KINDS = {"same_name": 250, "signature": 200, "address_book": 150, "thread": 150, "x_handle": 150,
              "initials": 100}
FALSE_KINDS = {"namesakes_cross": 20, "namesakes_same": 40, "colleague_signature": 20, "common_triple": 20}
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class BenchDrafts(Connector):
    """The plant's items: the payload is the draft's fields as plain data."""

    key = "bench_linking"
    label = "Linking benchmark"

    def normalize(self, raw: RawItem) -> ActivityDraft:
        p = raw.payload
        return ActivityDraft(
            channel=p["channel"], verb="receive", direction="in", occurred_at=dt.datetime.fromisoformat(p["at"]),
            dedup_key=f"bench-linking:{raw.external_id}", text=p.get("text", ""), thread_key=p.get("thread", ""),
            participants=[ParticipantDraft(*x) for x in p["participants"]], extra=p.get("extra", {}),
        )


class Plant:
    """The generated items and which person each identity belongs to."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.items: list[RawItem] = []
        self.person_of: dict[tuple[str, str], int] = {}
        self.planted: dict[int, str] = {}  # person → kind, for the planted pairs
        self.n = 0
        self.names: set[str] = set()

    def surname(self) -> str:
        tries = 0
        while True:
            # Two or three syllables (27,900 names); four once those run short (--contacts 50000).
            size = self.rng.randint(2, 3) if tries < 20 else 4
            name = "".join(self.rng.choice(SYLLABLES) for _ in range(size)).capitalize()
            if name not in self.names:
                self.names.add(name)
                return name
            tries += 1

    def full_name(self) -> tuple[str, str]:
        return self.rng.choice(FIRST), self.surname()

    def _item(self, person: int, channel: str, kind: str, value: str, display: str = "", **fields) -> None:
        self.n += 1
        self.person_of[(kind, value.lower() if kind == "email" else value)] = person
        at = START + dt.timedelta(minutes=7 * self.n)
        role = "author" if kind == "x" else "from"
        self.items.append(RawItem(f"i{self.n}", {"channel": channel, "at": at.isoformat(),
                                                 "participants": [[role, kind, value, display]], **fields}))

    def phone(self, person: int) -> str:
        return f"+1415{2000000 + self.n * 7 + person % 7:07d}"

    def mail(self, person, address, display="", **fields):
        self._item(person, "email", "email", address, display, text=fields.pop("text", f"Hello {self.n}"), **fields)

    def sms(self, person, number, display="", *, book=False):
        self._item(person, "sms", "phone", number, display, text="hi", extra={"origin": "sms_backup"} if book else {})

    def x(self, person, user_id, handle):
        self._item(person, "twitter", "x", user_id, handle, text="hello")

    def address(self, first: str, last: str, person: int) -> str:
        return f"{_ascii(first)}.{_ascii(last)}{person}@example.com".lower()


def _ascii(text: str) -> str:
    import unicodedata

    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if ch.isascii() and ch.isalnum())


def _dial(number: str) -> str:
    return f"({number[2:5]}) {number[5:8]}-{number[8:]}"


def plant(*, contacts: int, seed: int) -> Plant:
    p = Plant(seed)
    scale = contacts / 10_000
    person = 0
    for kind, count in TRUE_KINDS.items():
        for _ in range(round(count * scale)):
            person += 1
            first, last = p.full_name()
            p.planted[person] = kind
            mail = p.address(first, last, person)
            if kind == "same_name":
                other = f"{last}, {first}" if person % 2 else f"{_ascii(first)} {last.upper()}"
                p.mail(person, mail, f"{first} {last}")
                p.sms(person, p.phone(person), other)
            elif kind == "signature":
                number = p.phone(person)
                p.sms(person, number)
                p.mail(person, mail, f"{first} {last}", text=f"See you then.\n\n-- \n{first}\nMobile {_dial(number)}")
            elif kind == "address_book":
                p.sms(person, p.phone(person), f"{first} {last}", book=True)
                p.sms(person, p.phone(person + 500_000), f"{first} {last}", book=True)
            elif kind == "thread":
                p.mail(person, mail, thread=f"thread-{person}")
                p.mail(person, f"{_ascii(first)}{person}@work.example".lower(), thread=f"thread-{person}")
            elif kind == "x_handle":
                local = f"{_ascii(first)}{_ascii(last)}{person}".lower()
                p.x(person, str(10**9 + person), f"@{local}")
                p.mail(person, f"{local}@example.com")
            else:  # initials
                p.mail(person, mail, f"{first[0]}. {last}")
                p.sms(person, p.phone(person), f"{first} {last}")
    for kind, count in FALSE_KINDS.items():
        for _ in range(round(count * scale)):
            first, last = p.full_name()
            one, two = person + 1, person + 2
            person += 2
            if kind == "namesakes_cross":
                p.mail(one, p.address(first, last, one), f"{first} {last}")
                p.sms(two, p.phone(two), f"{first} {last}")
            elif kind == "namesakes_same":
                p.mail(one, p.address(first, last, one), f"{first} {last}")
                p.mail(two, p.address(first, last, two), f"{first} {last}")
            elif kind == "colleague_signature":
                colleague = p.phone(two)
                p.sms(two, colleague, f"{p.rng.choice(FIRST)} {p.surname()}")
                p.mail(one, p.address(first, last, one), f"{first} {last}",
                       text=f"Thanks.\n\n-- \n{first} {last}\nOffice {_dial(colleague)}")
            else:  # common_triple
                person += 1
                p.mail(one, p.address(first, last, one), f"{first} {last}")
                p.sms(two, p.phone(two), f"{first} {last}")
                p.mail(person, p.address(first, last, person), f"{first} {last}")
    while len(p.items) < contacts:
        person += 1
        first, last = p.full_name()
        channel = p.rng.choice(("email", "sms", "x"))
        if channel == "email":
            p.mail(person, p.address(first, last, person), f"{first} {last}")
        elif channel == "sms":
            p.sms(person, p.phone(person), f"{first} {last}")
        else:
            p.x(person, str(2 * 10**9 + person), f"@{_ascii(first).lower()}{person}")
    return p


def run(*, contacts: int = 10_000, seed: int = 17, keep: bool = False, log=None) -> dict:
    from django.db import transaction

    from bench.run import drop_workspace
    from streams.ingest import ingest_batch
    from streams.linking import SUGGEST_AT, merge_suggestions_refresh
    from streams.models import Identity, MergeSuggestion, Workspace
    from streams.services import workspace_create

    old = Workspace.objects.filter(slug="bench-linking").first()
    if old is not None:
        drop_workspace(old)
    workspace = workspace_create(slug="bench-linking", name="Linking benchmark")
    p = plant(contacts=contacts, seed=seed)
    connector = BenchDrafts({}, {}, context={"region": workspace.region})
    started = time.perf_counter()
    for i in range(0, len(p.items), 1000):
        ingest_batch(workspace=workspace, connector=connector, items=p.items[i:i + 1000])
    loaded = time.perf_counter() - started
    if log:
        log.write(f"loaded {len(p.items):,} items in {loaded:.1f} s\n")
    started = time.perf_counter()
    with transaction.atomic():
        refreshed = merge_suggestions_refresh(workspace=workspace)
    seconds = time.perf_counter() - started
    person_of_contact: dict[int, set[int]] = {}
    for kind, value, contact_id in Identity.objects.filter(workspace=workspace).values_list("kind", "value", "contact_id"):
        person_of_contact.setdefault(contact_id, set()).add(p.person_of.get((kind, value), -1))
    found_true: Counter = Counter()
    false_positives = 0
    for a, b in MergeSuggestion.objects.filter(workspace=workspace, state="open").values_list("contact_a", "contact_b"):
        same = person_of_contact.get(a, set()) & person_of_contact.get(b, set())
        if same:
            found_true[p.planted.get(min(same), "?")] += 1
        else:
            false_positives += 1
    true_pairs = len(p.planted)
    tp = sum(found_true.values())
    result = {
        "contacts": Workspace.objects.get(pk=workspace.pk).contacts.count(),
        "activities": len(p.items),
        "threshold": SUGGEST_AT,
        "suggested": refreshed.suggested,
        "true_positives": tp,
        "false_positives": false_positives,
        "precision": round(tp / refreshed.suggested, 3) if refreshed.suggested else None,
        "recall": round(tp / true_pairs, 3) if true_pairs else None,
        "found_by_planted_kind": {k: f"{found_true.get(k, 0)}/{sum(1 for v in p.planted.values() if v == k)}"
                                  for k in TRUE_KINDS},
        "refresh_seconds": round(seconds, 2),
        "load_seconds": round(loaded, 1),
    }
    if not keep:
        drop_workspace(workspace)
    return result
