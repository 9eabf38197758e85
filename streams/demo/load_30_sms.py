"""Demo: the owner's phone texts with the demo's people, as an Android "SMS Backup & Restore"
export (``sms_backup.xml``, imported through the real sms_backup connector). Same people,
numbers written in the varied ways phones write them, so the texts land on the same contacts
as the calls, meetings and email. Regenerate with ``python -m streams.demo.load_30_sms``."""

from __future__ import annotations

import datetime as dt
import random
from xml.sax.saxutils import quoteattr

from . import HERE, import_file

FILE = HERE / "sms_backup.xml"
OWN = "+14155550199"


def load(workspace, note) -> dict:
    counts = import_file(workspace=workspace, connector="sms_backup", name="Phone SMS backup (demo)", path=FILE)
    note(f"imported {FILE.name}: {counts}")
    return counts


def _surrogates(text: str) -> str:
    """Write characters outside the BMP as the app does: two UTF-16 surrogate references."""
    out = []
    for ch in text:
        code = ord(ch)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(f"&#{0xD800 + (code >> 10)};&#{0xDC00 + (code & 0x3FF)};")
        else:
            out.append(ch)
    return "".join(out)


def _attr(value: str) -> str:
    # quoteattr escapes &, <, >; surrogate references are added after, so they stay references.
    return quoteattr(value)


def generate() -> str:
    from .generate import PEOPLE, START, TEXTS_IN, TEXTS_OUT

    rng = random.Random(20261126)
    lines = ["<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>"]
    body: list[str] = []
    for day in range(0, 85, 2):
        for _ in range(rng.randint(0, 2)):
            name, phone, _email = rng.choice(PEOPLE)
            # Phones store numbers however they were typed: drop the formatting for some.
            address = rng.choice([phone, "".join(c for c in phone if c.isdigit())[-10:]])
            when = START + dt.timedelta(days=day, minutes=rng.randint(8 * 60, 20 * 60))
            received = rng.random() < 0.55
            text = rng.choice(TEXTS_IN if received else TEXTS_OUT)
            ms = int(when.timestamp() * 1000)
            body.append(
                f'  <sms protocol="0" address={_attr(address)} date="{ms}" type="{1 if received else 2}" subject="null" '
                f'body={_surrogates(_attr(text))} '
                f'toa="null" sc_toa="null" service_center="null" read="1" status="-1" locked="0" '
                f'date_sent="{ms if received else 0}" sub_id="1" readable_date="{when:%b %d, %Y %H:%M:%S}" '
                f'contact_name={_attr(name)} />'
            )
    # One group thread: the projector question to three people, and the answers.
    group = PEOPLE[1:4]
    when = START + dt.timedelta(days=40, hours=10)
    for i, (sender, text) in enumerate([(None, "Who's bringing the projector? 📽️"), (group[0], "Not me 🙈"),
                                        (group[2], "I can, if someone brings the cables 🔌")]):
        ms = int((when + dt.timedelta(minutes=7 * i)).timestamp() * 1000)
        addrs = []
        if sender is None:
            addrs.append(f'      <addr address="{OWN}" type="137" charset="106" />')
            addrs += [f'      <addr address={_attr(p[1])} type="151" charset="106" />' for p in group]
        else:
            addrs.append(f'      <addr address={_attr(sender[1])} type="137" charset="106" />')
            addrs += [f'      <addr address={_attr(p[1])} type="151" charset="106" />' for p in group if p is not sender]
            addrs.append(f'      <addr address="{OWN}" type="151" charset="106" />')
        body.append(
            f'  <mms date="{ms}" msg_box="{2 if sender is None else 1}" address={_attr("~".join(p[1] for p in group))} '
            f'm_type="{128 if sender is None else 132}" text_only="1" read="1" seen="1" sub_id="1" '
            f'contact_name={_attr(", ".join(p[0] for p in group))}>\n'
            f'    <parts>\n      <part seq="0" ct="text/plain" name="null" chset="106" cl="text_0.txt" '
            f'text={_surrogates(_attr(text))} />\n    </parts>\n'
            f'    <addrs>\n' + "\n".join(addrs) + "\n    </addrs>\n  </mms>"
        )
    lines.append(f'<smses count="{len(body)}" backup_set="demo" backup_date="{int(START.timestamp() * 1000)}" type="full">')
    lines += body
    lines.append("</smses>")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    FILE.write_text(generate(), encoding="utf-8")
    print(FILE, FILE.stat().st_size)
