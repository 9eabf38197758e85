"""X archives as X hands them out, built in code from the fixtures (tests/fixtures/twitter_archive)
with Mesh's archive writer, and imported with ``mesh_import`` as an operator does."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

from django.core.management import call_command

from connectors.twitter_archive import writer as w

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "twitter_archive"
OWNER, ANA, BEN, CHLOE = "4000000001", "4000000100", "4000000101", "4000000102"
T0 = dt.datetime(2024, 10, 20, 9, 0, tzinfo=dt.UTC)


def fixture(name: str) -> dict:
    with (FIXTURES / f"{name}.json").open(encoding="utf-8") as fh:
        return json.load(fh)  # fails fast on a broken fixture


def js(name: str, part: int, elements: list, *, broken: str | None = None, at: int = 0) -> str:
    """A window.YTD file; ``broken`` is inserted verbatim as element number ``at``."""
    texts = [json.dumps(e, indent=2, ensure_ascii=False, separators=(",", " : ")) for e in elements]
    if broken is not None:
        texts.insert(at, broken)
    return f"window.YTD.{name}.part{part} = [ " + ",\n".join(texts) + " ]"


BROKEN_TWEET = '{\n  "tweet" : {\n    "id_str" : "1850000000000000030"\n    "full_text" : "no comma before me"\n  }\n}'


def build_conformance_archive(path: Path) -> Path:
    """account.js; tweets.js (2 tweets) and tweets-part1.js (retweet, a bad date, a broken
    element, one more tweet); 1:1 and group DMs; a media folder that must never be read."""
    original = w.tweet("1850000000000000001", T0, "Quote is ready, DM me @ana_souza", mentions=[(ANA, "ana_souza")])
    later = w.tweet("1850000000000000040", T0 + dt.timedelta(days=9), "Monday again.")
    part1 = js("tweets", 1, [fixture("tweet__retweet"), fixture("tweet__bad_created_at"), later],
               broken=BROKEN_TWEET, at=2)
    return w.write_archive(
        path, account=fixture("account"), tweets=[fixture("tweet__reply_with_photo"), original],
        dms=[fixture("dm__one_to_one")], group_dms=[fixture("dm__group")],
        raw={"data/tweets-part1.js": part1},
        media_files={"data/tweets_media/1850000000000000003-GaBcDeFgHiJ.jpg": b"\xff\xd8\xff" + b"\0" * 2000},
    )


def run_import(workspace, path, *extra) -> dict:
    out = io.StringIO()
    call_command("mesh_import", "twitter_archive", str(path), "--workspace", workspace.slug, "--json", *extra,
                 stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())
