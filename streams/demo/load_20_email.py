"""Demo: a sample mailbox (mailbox.mbox.txt) imported through the real mbox connector, so the demo's
people have email history next to their calls and texts. The owner is me@mesh.example.

Regenerate the file with ``python -m streams.demo.load_20_email`` (deterministic)."""

from __future__ import annotations

import datetime as dt
import random
from email.message import EmailMessage
from email.utils import format_datetime

from . import HERE, import_file
from .generate import PEOPLE

# ".txt" so that the package data rule in pyproject.toml ships it; the content is an mbox.
FILE = HERE / "mailbox.mbox.txt"
ME = ("Me", "me@mesh.example")
START = dt.datetime(2026, 9, 2, 8, 0, tzinfo=dt.UTC)
TOPICS = [
    ("Quote for the spring order", "Could you send the updated quote?", "Attached — 5% off the second batch."),
    ("Thursday meeting", "Does 3pm still work on Thursday?", "3pm works, see you then."),
    ("Contract renewal", "We are happy to renew for another year.", "Great news, I'll draw up the contract."),
    ("Invoice 2026-114", "The invoice looks right, paying this week.", "Thanks, much appreciated!"),
    ("Projector for the workshop", "Who's bringing the projector?", "The projector is on me."),
]


def load(workspace, note) -> dict:
    counts = import_file(workspace=workspace, connector="mbox", name="Mailbox (demo)", path=FILE)
    note(f"imported {FILE.name}: {counts}")
    return counts


def _message(*, sender, to, subject, body, when, mid, refs=(), extra_headers=(), html=None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{sender[0]} <{sender[1]}>"
    msg["To"] = f"{to[0]} <{to[1]}>"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = mid
    if refs:
        msg["In-Reply-To"] = refs[-1]
        msg["References"] = " ".join(refs)
    for name, value in extra_headers:
        msg[name] = value
    msg.set_content(body)
    if html:
        msg.add_alternative(html, subtype="html")
    return bytes(msg)


def generate() -> bytes:
    rng = random.Random(20)
    out = []
    n = 0
    for name, _phone, address in PEOPLE:
        person = (name, address)
        for t in rng.sample(range(len(TOPICS)), 2):
            subject, question, answer = TOPICS[t]
            when = START + dt.timedelta(days=rng.randint(0, 80), hours=rng.randint(0, 9), minutes=rng.randint(0, 59))
            n += 1
            first = f"<demo-{n}@{address.split('@')[1]}>"
            out.append(_message(sender=person, to=ME, subject=subject, when=when, mid=first,
                                body=f"Hi,\n\n{question}\n\nBest,\n{name.split()[0]}\n"))
            reply_at = when + dt.timedelta(hours=rng.randint(1, 20))
            reply = f"<demo-{n}-re@mesh.example>"
            out.append(_message(sender=ME, to=person, subject=f"Re: {subject}", when=reply_at, mid=reply, refs=(first,),
                                body=f"{answer}\n\nOn {format_datetime(when)}, {name} <{address}> wrote:\n> {question}\n"))
    # Automated mail: imported, marked, and no contacts made from it.
    for week in range(6):
        when = START + dt.timedelta(days=7 * week, hours=6)
        out.append(_message(
            sender=("Mesh Weekly", "no-reply@news.example.com"), to=ME, subject=f"Mesh Weekly #{week + 1}",
            when=when, mid=f"<weekly-{week + 1}@news.example.com>",
            body="This week: new connectors and faster timelines.",
            html='<h1>Mesh Weekly</h1><p>New connectors and faster timelines.</p>'
                 '<img src="https://news.example.com/open.gif" width="1" height="1">',
            extra_headers=(("List-Unsubscribe", "<https://news.example.com/u>"), ("Precedence", "bulk")),
        ))
    mbox = b""
    for data in out:
        data = data.replace(b"\r\n", b"\n")
        lines = [b">" + line if line.startswith(b"From ") else line for line in data.split(b"\n")]
        mbox += b"From demo@mesh.example Tue Sep  1 08:00:00 2026\n" + b"\n".join(lines).rstrip(b"\n") + b"\n\n"
    return mbox


if __name__ == "__main__":
    FILE.write_bytes(generate())
    print(f"wrote {FILE}")
