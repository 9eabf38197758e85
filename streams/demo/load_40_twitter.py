"""Demo: an X archive of the demo owner — public posts for the lifestream, public replies to and
DMs with the demo's people for their timelines — imported through the real archive connector.

The archive's files are committed next to this module as ``twitter_<file>.json``, plain JSON (readable,
reviewable, and shipped as package data); the zip is built from them at demo time with the
``window.YTD.<name>.part0 = `` prefix X writes, byte for byte the same each run. Regenerate
them with ``python -m bench.demo_x_archive`` (it builds them with the archive connector's test
writer, which the core does not import).
"""

from __future__ import annotations

import contextlib
import zipfile
from pathlib import Path

from . import HERE, import_file
from .generate import PEOPLE

ARCHIVE_DIR = HERE  # twitter_<file>.json next to the other demo data
OWNER_ID, OWNER_HANDLE = "9000000199", "mesh_me"
HANDLES = ["ana_souza", "benokafor", "chloe_martin", "dmitri_iv", "erin_walsh", "farah_h", "goro_t", "hana_novak"]
PEOPLE_X = [(f"90000001{n:02d}", handle, name, phone) for n, ((name, phone, _e), handle) in enumerate(zip(PEOPLE, HANDLES, strict=True))]

# Zip's member times, fixed so the demo archive is the same bytes on every run.
ZIP_DATE = (2024, 1, 1, 0, 0, 0)
FILES = {"account": "account", "tweets": "tweets", "direct_messages": "direct-messages",
         "direct_messages_group": "direct-messages-group"}  # YTD name → file name in data/


def build_zip(target: Path) -> Path:
    """Zip the committed files as data/<name>.js (fixed dates and order: the same bytes every time)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, filename in sorted(FILES.items(), key=lambda kv: kv[1]):
            body = (ARCHIVE_DIR / f"twitter_{filename}.json").read_text(encoding="utf-8")
            zf.writestr(zipfile.ZipInfo(f"data/{filename}.js", ZIP_DATE),
                        f"window.YTD.{name}.part0 = {body}".encode(), compress_type=zipfile.ZIP_DEFLATED)
    tmp.replace(target)
    return target


def load(workspace, note) -> dict:
    from django.conf import settings

    from streams.identity import normalize
    from streams.models import Identity
    from streams.services import ServiceError, contact_merge

    path = build_zip(Path(settings.VAR_DIR) / "demo" / "twitter-archive.zip")
    counts = import_file(workspace=workspace, connector="twitter_archive", name="X archive (demo)", path=path)
    note(f"imported {path.name}: {counts}")
    # The people are the demo's: join each X contact to the contact their phone number made.
    for uid, _handle, _name, phone in PEOPLE_X:
        x = Identity.objects.filter(workspace=workspace, kind="x", value=uid).select_related("contact").first()
        tel = Identity.objects.filter(workspace=workspace, kind="phone", value=normalize("phone", phone)[1],
                                      is_self=False).select_related("contact").first()
        if not (x and tel and x.contact and tel.contact) or x.contact.pk == tel.contact.pk:
            continue
        target, other = tel.contact.root(), x.contact.root()
        if target.pk != other.pk:
            with contextlib.suppress(ServiceError):
                contact_merge(workspace=workspace, target=target, other=other)
    return counts
