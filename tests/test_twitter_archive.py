"""The X archive import: conformance, the archive's file shapes (parts, group DMs, a broken
element), visibility, threading, streaming, and the mesh_import command."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command

from connectors.testing import ConnectorConformance, draft_dict
from connectors.twitter_archive import writer as w
from connectors.twitter_archive.reader import Archive, Broken, iter_elements

FIXTURES = Path(__file__).parent / "fixtures" / "twitter_archive"
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


OWNER_P = {"role": "author", "kind": "x", "value": OWNER, "display": "@mesh_owner"}

EXPECTED = {
    "1850000000000000003": draft_dict(
        channel="twitter", verb="post", direction="out", occurred_at="2024-10-26T08:31:05+00:00",
        dedup_key="x:1850000000000000003",
        text="@ana_souza @benokafor Here's the revised quote & the floor plan: https://example.com/quote/2024-10",
        url="https://x.com/i/web/status/1850000000000000003", thread_key="x:conv:1850000000000000002",
        participants=[OWNER_P, {"role": "to", "kind": "x", "value": ANA, "display": "@ana_souza"},
                      {"role": "mention", "kind": "x", "value": BEN, "display": "@benokafor"}],
        visibility="public",
        attachments=[{"name": "GaBcDeFgHiJ.jpg", "mediaType": "image/jpeg",
                      "url": "https://pbs.twimg.com/media/GaBcDeFgHiJ.jpg", "id": "1850000000000000999"}],
        extra={"in_reply_to": "1850000000000000002", "lang": "en"},
    ),
    "1850000000000000010": draft_dict(
        channel="twitter", verb="share", direction="out", occurred_at="2024-10-27T09:00:00+00:00",
        dedup_key="x:1850000000000000010", text="RT @chloe_m: Our café opens on Monday — come by! ☕",
        url="https://x.com/i/web/status/1850000000000000010", thread_key="x:conv:1850000000000000010",
        participants=[OWNER_P, {"role": "mention", "kind": "x", "value": CHLOE, "display": "@chloe_m"}],
        visibility="public", extra={"lang": "en"},
    ),
    "dm:1849000000000000001": draft_dict(
        channel="twitter", verb="receive", direction="in", occurred_at="2024-10-24T14:58:40.101000+00:00",
        dedup_key="x:dm:1849000000000000001",
        text="Can we meet Thursday? Plan is here https://example.com/floorplan.pdf",
        thread_key="x:dm:4000000001-4000000100",
        participants=[{"role": "from", "kind": "x", "value": ANA, "display": ""},
                      {"role": "to", "kind": "x", "value": OWNER, "display": ""}],
        attachments=[{"name": "AbCd.jpg", "mediaType": "image/jpeg", "id": "",
                      "url": "https://ton.twitter.com/dm/1849000000000000001/1849000000000000777/AbCd.jpg"}],
    ),
    "dm:1849500000000000002": draft_dict(
        channel="twitter", verb="receive", direction="in", occurred_at="2024-10-25T18:10:00+00:00",
        dedup_key="x:dm:1849500000000000002", text="Who's bringing the projector?",
        thread_key="x:dm:1849500000000000000",
        participants=[{"role": "from", "kind": "x", "value": BEN, "display": ""},
                      {"role": "to", "kind": "x", "value": OWNER, "display": ""},
                      {"role": "to", "kind": "x", "value": ANA, "display": ""},
                      {"role": "to", "kind": "x", "value": CHLOE, "display": ""}],
        extra={"group": True},
    ),
}


class TestTwitterArchiveConformance(ConnectorConformance):
    connector_key = "twitter_archive"
    expected_drafts = EXPECTED
    bad_external_ids = {"1850000000000000020", "tweets-part1.js#2"}

    def make_source(self, workspace, tmp_path):
        from streams.services import source_create

        path = build_conformance_archive(tmp_path / "twitter-2024-10-28.zip")
        return source_create(workspace=workspace, connector="twitter_archive", name="archive",
                             config={"path": str(path), "batch_size": "2"})


# -- what the import stores ---------------------------------------------------------------------


@pytest.fixture
def archive_path(tmp_path):
    return build_conformance_archive(tmp_path / "archive.zip")


def run_import(workspace, path, *extra) -> dict:
    out = io.StringIO()
    call_command("mesh_import", "twitter_archive", str(path), "--workspace", workspace.slug, "--json", *extra,
                 stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def test_mesh_import_reads_the_zip_and_a_second_run_is_all_duplicates(workspace, archive_path):
    from streams.models import Activity, ImportFailure

    first = run_import(workspace, archive_path)
    # 5 tweets + the broken element + 2 one-to-one + 2 group messages
    assert first == {"fetched": 10, "new": 8, "duplicate": 0, "failed": 2}
    assert Activity.objects.filter(workspace=workspace).count() == 8
    reasons = dict(ImportFailure.objects.filter(workspace=workspace).values_list("external_id", "reason"))
    assert "invalid JSON" in reasons["tweets-part1.js#2"]
    assert "created_at" in reasons["1850000000000000020"]
    second = run_import(workspace, archive_path)
    assert second == {"fetched": 10, "new": 0, "duplicate": 8, "failed": 2}


def test_owner_is_self_own_posts_are_public_and_dms_private(workspace, archive_path):
    from streams.models import Activity, Contact, Identity

    run_import(workspace, archive_path)
    me = Identity.objects.get(workspace=workspace, kind="x", value=OWNER)
    assert me.is_self and me.display == "@mesh_owner" and me.contact.is_self
    public = set(Activity.objects.filter(workspace=workspace, visibility="public").values_list("dedup_key", flat=True))
    assert public == {"x:1850000000000000003", "x:1850000000000000001", "x:1850000000000000010",
                      "x:1850000000000000040"}
    dms = Activity.objects.filter(workspace=workspace, dedup_key__startswith="x:dm:")
    assert dms.count() == 4 and set(dms.values_list("visibility", flat=True)) == {"private"}
    assert set(Activity.objects.filter(workspace=workspace, verb__in=["post", "share", "send"])
               .values_list("direction", flat=True)) == {"out"}
    # Ana: one contact (named by her handle) with the reply to her, the mention and her DMs on it.
    ana = Identity.objects.get(workspace=workspace, kind="x", value=ANA)
    assert ana.contact.name == "@ana_souza"
    on_ana = set(Activity.objects.filter(timeline_entries__owner_id=ana.contact_id, timeline_entries__kind="c")
                 .values_list("dedup_key", flat=True))
    assert on_ana == {"x:1850000000000000003", "x:1850000000000000001", "x:dm:1849000000000000001",
                      "x:dm:1849000000000000002", "x:dm:1849500000000000002", "x:dm:1849500000000000003"}
    assert not Contact.objects.filter(workspace=workspace, is_self=False, identities__value=OWNER).exists()


def test_replies_are_threaded_to_the_root_of_their_chain(workspace, tmp_path):
    from streams.models import Activity

    tweets = [
        w.tweet("103", T0 + dt.timedelta(minutes=2), "3/3", reply_to=("102", OWNER, "mesh_owner")),
        w.tweet("102", T0 + dt.timedelta(minutes=1), "2/3", reply_to=("101", OWNER, "mesh_owner")),
        w.tweet("101", T0, "1/3 a thread"),
        w.tweet("201", T0, "@ana_souza agreed", reply_to=("900", ANA, "ana_souza")),
    ]
    path = w.write_archive(tmp_path / "a.zip", account=fixture("account"), tweets=tweets)
    run_import(workspace, path)
    threads = dict(Activity.objects.filter(workspace=workspace).values_list("dedup_key", "thread_key"))
    assert threads == {"x:103": "x:conv:101", "x:102": "x:conv:101", "x:101": "x:conv:101", "x:201": "x:conv:900"}


def test_media_members_are_never_opened(workspace, archive_path, monkeypatch):
    opened = []
    original = Archive.open

    def spy(self, name):
        opened.append(name)
        return original(self, name)

    monkeypatch.setattr(Archive, "open", spy)
    run_import(workspace, archive_path)
    assert opened and all(name.endswith(".js") for name in opened)
    assert not [n for n in opened if "_media/" in n]


def test_an_extracted_archive_folder_imports_like_the_zip(workspace, archive_path, tmp_path):
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(archive_path) as zf:
        zf.extractall(folder)
    assert run_import(workspace, folder)["new"] == 8


def test_an_archive_without_account_js_needs_the_user_id(workspace, tmp_path):
    from django.core.management.base import CommandError

    path = w.write_archive(tmp_path / "a.zip", account=None, tweets=[w.tweet("101", T0, "hello")])
    with pytest.raises(CommandError, match="user_id"):
        run_import(workspace, path)


def test_not_a_zip_is_a_clear_error(workspace, tmp_path):
    from django.core.management.base import CommandError

    path = tmp_path / "archive.zip"
    path.write_bytes(b"this is not a zip")
    with pytest.raises(CommandError, match="cannot open the archive"):
        run_import(workspace, path)


def test_a_newer_handle_renames_the_contact_and_an_older_one_does_not(workspace, tmp_path):
    from streams.models import Contact, Identity

    old = w.write_archive(tmp_path / "old.zip", account=fixture("account"), tweets=[
        w.tweet("301", T0, "hi @ana_old", mentions=[(ANA, "ana_old")])])
    new = w.write_archive(tmp_path / "new.zip", account=fixture("account"), tweets=[
        w.tweet("302", T0 + dt.timedelta(days=30), "hi @ana_new", mentions=[(ANA, "ana_new")])])
    run_import(workspace, old)
    run_import(workspace, new)
    ana = Identity.objects.get(workspace=workspace, kind="x", value=ANA)
    assert ana.display == "@ana_new" and ana.contact.name == "@ana_new"
    run_import(workspace, old)  # the older archive again: the newer handle stays
    ana.refresh_from_db()
    assert ana.display == "@ana_new"
    assert Contact.objects.filter(workspace=workspace, identities__kind="x", identities__value=ANA).count() == 1


# -- the streaming reader ------------------------------------------------------------------------


def test_reader_gives_the_same_elements_whatever_the_chunk_size():
    elements = [{"tweet": {"id_str": str(i), "full_text": "é" * i + " ] } , [ {"}} for i in range(40)]
    data = js("tweets", 0, elements).encode()
    for chunk in (1, 3, 7, 64, 1 << 20):
        assert list(iter_elements(io.BytesIO(data), chunk=chunk)) == elements


def test_reader_skips_a_broken_element_and_goes_on():
    good = [{"tweet": {"id_str": "1"}}, {"tweet": {"id_str": "2"}}]
    data = js("tweets", 0, good, broken='{ "tweet" : { "id_str" : "x" "oops" } }', at=1).encode()
    for chunk in (5, 1 << 20):
        got = list(iter_elements(io.BytesIO(data), chunk=chunk))
        assert got[0] == good[0] and got[2] == good[1]
        assert isinstance(got[1], Broken) and "invalid JSON" in got[1].reason


def test_reader_ends_a_truncated_file_with_a_broken_element():
    data = js("tweets", 0, [{"tweet": {"id_str": "1"}}, {"tweet": {"id_str": "2"}}]).encode()[:-20]
    got = list(iter_elements(io.BytesIO(data), chunk=16))
    assert got[0] == {"tweet": {"id_str": "1"}} and isinstance(got[-1], Broken)


def test_reprocess_renormalizes_from_stored_payloads_without_the_archive(workspace, archive_path):
    from streams.models import Source

    run_import(workspace, archive_path)
    archive_path.unlink()  # the stored raw items are enough
    source = Source.objects.get(workspace=workspace, connector="twitter_archive")
    out = io.StringIO()
    call_command("mesh_reprocess", "--source", str(source.pk), "--workspace", workspace.slug, "--json",
                 stdout=out, stderr=io.StringIO())
    result = json.loads(out.getvalue())
    assert result["changed"] == 0 and result["reprocessed"] >= 8
