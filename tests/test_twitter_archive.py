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
from django.core.management.base import CommandError

from connectors.testing import ConnectorConformance, draft_dict
from connectors.twitter_archive import writer as w
from connectors.twitter_archive.reader import Archive, Broken, iter_elements
from tests.fakes.x_archive import (
    ANA,
    BEN,
    BROKEN_TWEET,
    CHLOE,
    FIXTURES,
    OWNER,
    T0,
    build_conformance_archive,
    fixture,
    js,
    run_import,
)

OWNER_P = {"role": "author", "kind": "x", "value": OWNER, "display": "@mesh_owner"}
OWNER_AVATAR = "https://pbs.twimg.com/profile_images/1598034441457815552/Wz3Kp0aQ.jpg"  # gen2022's profile.js

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


def failed_import(workspace, path, connector="twitter_archive") -> str:
    """Run mesh_import on a file it must refuse; the message it gives (exit status 1)."""
    out = io.StringIO()
    with pytest.raises((SystemExit, CommandError)) as failure:
        call_command("mesh_import", connector, str(path), "--workspace", workspace.slug, "--json",
                     stdout=out, stderr=io.StringIO())
    if isinstance(failure.value, SystemExit):
        assert failure.value.code == 1
        return json.loads(out.getvalue())["error"]
    return str(failure.value)


def test_an_archive_without_account_js_needs_the_user_id(workspace, tmp_path):
    path = w.write_archive(tmp_path / "a.zip", account=None, tweets=[w.tweet("101", T0, "hello")])
    assert "user_id" in failed_import(workspace, path)


def test_not_a_zip_is_a_clear_error(workspace, tmp_path):
    path = tmp_path / "archive.zip"
    path.write_bytes(b"this is not a zip")
    assert failed_import(workspace, path).startswith("archive.zip is not an X archive")


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


# -- every archive generation found in the wild --------------------------------------------------


def zip_of_fixture(generation: str, tmp_path: Path) -> Path:
    """The fixture folder ``tests/fixtures/twitter_archive/<generation>/`` as the zip X sent."""
    folder = FIXTURES / generation
    path = tmp_path / f"{generation}.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(file, file.relative_to(folder).as_posix())
    return path


def normalized(path: Path) -> dict[str, dict | str]:
    """external id → the whole normalized draft, or the reason it failed."""
    from connectors.base import BadItem
    from connectors.twitter_archive.connector import TwitterArchiveConnector

    connector = TwitterArchiveConnector({"path": str(path)})
    found: dict[str, dict | str] = {}
    for batch in connector.fetch(None):
        for item in batch.items:
            try:
                found[item.external_id] = connector.normalize(item).as_dict()
            except BadItem as exc:
                found[item.external_id] = exc.reason
    return found


def owner_post(tweet_id: str, when: str, text: str, **fields) -> dict:
    return draft_dict(**{
        "channel": "twitter", "verb": "post", "direction": "out", "occurred_at": when, "dedup_key": f"x:{tweet_id}",
        "text": text, "url": f"https://x.com/i/web/status/{tweet_id}", "visibility": "public",
        "thread_key": f"x:conv:{tweet_id}", "participants": [OWNER_P], **fields,
    })


def x_user(role: str, user_id: str, display: str = "") -> dict:
    return {"role": role, "kind": "x", "value": user_id, "display": display}


def test_grailbird_archive_2012_to_2018_imports_every_month(workspace, tmp_path):
    """data/js/tweets/YYYY_MM.js (``Grailbird.data.tweets_2013_01 = [...]``), the owner in
    data/js/user_details.js, times like ``2013-01-28 18:02:11 +0000``, ``text`` not ``full_text``."""
    path = zip_of_fixture("gen2013__grailbird", tmp_path)
    assert normalized(path) == {
        "296000000000000001": owner_post(
            "296000000000000001", "2013-01-28T18:02:11+00:00", "New studio, new desk & http://example.com/studio"),
        "300000000000000020": owner_post(
            "300000000000000020", "2013-02-08T09:15:00+00:00", "RT @chloe_m: Our café opens on Monday — come by!",
            verb="share", participants=[OWNER_P, x_user("mention", CHLOE, "@chloe_m")]),
        "300000000000000021": owner_post(
            "300000000000000021", "2013-02-09T14:30:05+00:00", "@ana_souza the floor plan, as promised",
            thread_key="x:conv:300000000000000010", participants=[OWNER_P, x_user("to", ANA, "@ana_souza")],
            attachments=[{"name": "BCdEfGh.jpg", "mediaType": "image/jpeg",
                          "url": "https://pbs.twimg.com/media/BCdEfGh.jpg", "id": "300000000000000099"}],
            extra={"in_reply_to": "300000000000000010"}),
    }
    assert run_import(workspace, path) == {"fetched": 3, "new": 3, "duplicate": 0, "failed": 0}


def test_2019_archive_with_unwrapped_tweet_js_at_the_top_imports_every_tweet(workspace, tmp_path):
    """tweet.js and tweet-part1.js (``window.YTD.tweet.partN``) whose elements are the tweets
    themselves, direct-message.js; direct-message-headers.js (no text) is not read."""
    path = zip_of_fixture("gen2019__tweet_js_unwrapped", tmp_path)
    assert normalized(path) == {
        "1150000000000000002": owner_post(
            "1150000000000000002", "2019-07-15T10:20:30+00:00", "@ana_souza Quote is ready: https://example.com/quote/2019",
            thread_key="x:conv:1150000000000000001", participants=[OWNER_P, x_user("to", ANA, "@ana_souza")],
            extra={"in_reply_to": "1150000000000000001", "lang": "en"}),
        "1150000000000000003": owner_post(
            "1150000000000000003", "2019-07-16T08:00:00+00:00", "Summer hours start Monday.", extra={"lang": "en"}),
        "1150000000000000010": owner_post(
            "1150000000000000010", "2019-07-17T12:00:00+00:00", "RT @benokafor: Projector fixed & ready",
            verb="share", participants=[OWNER_P, x_user("mention", BEN, "@benokafor")], extra={"lang": "en"}),
        "dm:1150000000000000500": draft_dict(
            channel="twitter", verb="receive", direction="in", occurred_at="2019-07-15T11:02:03.456000+00:00",
            dedup_key="x:dm:1150000000000000500", text="Thanks! Signing today.", thread_key="x:dm:4000000001-4000000100",
            participants=[x_user("from", ANA), x_user("to", OWNER)]),
    }
    assert run_import(workspace, path) == {"fetched": 4, "new": 4, "duplicate": 0, "failed": 0}


def test_2020_archive_with_wrapped_tweet_js_imports_tweets_and_group_messages(workspace, tmp_path):
    """data/tweet.js with ``{"tweet": …}`` elements, data/direct-message-group.js, an empty
    data/direct-message.js; a video's best rendition is the highest bitrate, written as text."""
    path = zip_of_fixture("gen2020__tweet_js_wrapped", tmp_path)
    assert normalized(path) == {
        "1300000000000000001": owner_post(
            "1300000000000000001", "2020-08-30T17:45:00+00:00", "Studio tour, 40 seconds", extra={"lang": "en"},
            attachments=[{"name": "high.mp4", "mediaType": "video/mp4", "id": "1300000000000000050",
                          "url": "https://video.twimg.com/ext_tw_video/1300000000000000050/pu/vid/1280x720/high.mp4"}]),
        "dm:1300000000000000901": draft_dict(
            channel="twitter", verb="receive", direction="in", occurred_at="2020-08-31T19:00:00+00:00",
            dedup_key="x:dm:1300000000000000901", text="Pizza after the move?", thread_key="x:dm:1300000000000000900",
            participants=[x_user("from", BEN), x_user("to", OWNER), x_user("to", CHLOE)], extra={"group": True}),
    }
    assert run_import(workspace, path) == {"fetched": 2, "new": 2, "duplicate": 0, "failed": 0}


def test_2022_archive_with_tweets_js_parts_imports_every_part(workspace, tmp_path):
    """data/tweets.js and data/tweets-part1.js (``window.YTD.tweets.partN``), manifest.js,
    direct-messages.js; a reply to one's own tweet is threaded to it; profile.js's picture is
    the owner's avatar."""
    from streams.models import Identity

    path = zip_of_fixture("gen2022__tweets_js_wrapped", tmp_path)
    owner = {**OWNER_P, "avatar": OWNER_AVATAR}
    assert normalized(path) == {
        "1610000000000000001": owner_post(
            "1610000000000000001", "2023-01-02T09:00:00+00:00", "Happy new year from the studio", extra={"lang": "en"},
            participants=[owner]),
        "1610000000000000002": owner_post(
            "1610000000000000002", "2023-01-03T10:00:00+00:00", "@ana_souza same to you!",
            thread_key="x:conv:1610000000000000001", participants=[owner, x_user("mention", ANA, "@ana_souza")],
            extra={"in_reply_to": "1610000000000000001", "lang": "en"}),
        "dm:1610000000000000700": draft_dict(
            channel="twitter", verb="send", direction="out", occurred_at="2023-01-04T08:00:00+00:00",
            dedup_key="x:dm:1610000000000000700", text="Keys are under the mat", thread_key="x:dm:4000000001-4000000102",
            participants=[{**x_user("from", OWNER), "avatar": OWNER_AVATAR}, x_user("to", CHLOE)]),
    }
    assert run_import(workspace, path) == {"fetched": 3, "new": 3, "duplicate": 0, "failed": 0}
    assert Identity.objects.get(workspace=workspace, kind="x", value=OWNER).avatar_url == OWNER_AVATAR


@pytest.mark.parametrize("url", ["javascript:alert(1)", "http://pbs.twimg.com/profile_images/1/a.jpg",
                                 'https://pbs.twimg.com/a.jpg" onerror="alert(1)', 42])
def test_a_profile_picture_that_is_not_a_plain_https_url_is_not_kept(tmp_path, url):
    from connectors.twitter_archive import connector as archive_connector

    folder = tmp_path / "archive"
    (folder / "data").mkdir(parents=True)
    (folder / "data/account.js").write_text(js("account", 0, [fixture("account")]))
    (folder / "data/profile.js").write_text(js("profile", 0, [{"profile": {"avatarMediaUrl": url}}]))
    assert archive_connector._owner_avatar(archive_connector.Archive(folder)) == ""


def test_a_protected_grailbird_account_keeps_its_tweets_private(tmp_path):
    folder = tmp_path / "protected"
    source = FIXTURES / "gen2013__grailbird"
    for file in source.rglob("*"):
        if file.is_file():
            (folder / file.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            text = file.read_text(encoding="utf-8")
            (folder / file.relative_to(source)).write_text(text.replace('"protected" : false', '"protected" : true'),
                                                           encoding="utf-8")
    assert {d["visibility"] for d in normalized(folder).values()} == {"private"}


# -- a malformed element is one failure, wherever it is -------------------------------------------

GOOD_TWEETS = [w.tweet(f"19000000000000000{n:02d}", T0 + dt.timedelta(hours=n), f"tweet {n}") for n in range(4)]


def archive_with_part(tmp_path: Path, part: str) -> Path:
    return w.write_archive(tmp_path / "a.zip", account=fixture("account"), raw={"data/tweets.js": part})


@pytest.mark.parametrize("at", [0, 2, 4], ids=["first", "middle", "last"])
def test_a_malformed_element_is_one_failure_and_every_valid_element_around_it_imports(workspace, tmp_path, at):
    from streams.models import Activity, ImportFailure

    path = archive_with_part(tmp_path, js("tweets", 0, GOOD_TWEETS, broken=BROKEN_TWEET, at=at))
    assert run_import(workspace, path) == {"fetched": 5, "new": 4, "duplicate": 0, "failed": 1}
    assert set(Activity.objects.filter(workspace=workspace).values_list("text", flat=True)) == {
        "tweet 0", "tweet 1", "tweet 2", "tweet 3"}
    failure = ImportFailure.objects.get(workspace=workspace)
    assert failure.external_id == f"tweets.js#{at}" and "invalid JSON" in failure.reason


def test_a_malformed_first_element_of_unwrapped_tweets_resyncs_on_the_tweet_shape(tmp_path):
    unwrapped = [element["tweet"] for element in GOOD_TWEETS]
    broken = '{\n  "retweeted" : false,\n  "id_str" : "1"\n  "full_text" : "no comma"\n}'
    found = normalized(archive_with_part(tmp_path, js("tweet", 0, unwrapped, broken=broken, at=0)))
    assert sorted(k for k, v in found.items() if isinstance(v, dict)) == sorted(t["id_str"] for t in unwrapped)
    assert "invalid JSON" in found["tweets.js#0"]


def test_a_truncated_part_imports_every_whole_element_and_records_the_cut_one(workspace, tmp_path):
    from streams.models import ImportFailure

    whole = js("tweets", 0, GOOD_TWEETS)
    path = archive_with_part(tmp_path, whole[: whole.index('"tweet 3"')])
    assert run_import(workspace, path) == {"fetched": 4, "new": 3, "duplicate": 0, "failed": 1}
    assert ImportFailure.objects.get(workspace=workspace).external_id == "tweets.js#3"


def test_elements_of_another_shape_between_good_ones_do_not_swallow_them():
    """Resync skips values nested inside the broken element (a mention, a media entity) that
    look like elements but are not tweets."""
    broken = ('{ "tweet" : { "entities" : { "user_mentions" : [ { "id_str" : "7", "name" : "x" }, '
              '{ "id_str" : "8" } ] } "id_str" : "5" } }')
    data = js("tweets", 0, GOOD_TWEETS[:2], broken=broken, at=1).encode()
    from connectors.twitter_archive.reader import is_tweet_element

    for chunk in (7, 1 << 20):
        got = list(iter_elements(io.BytesIO(data), chunk=chunk, is_element=is_tweet_element))
        assert [type(g).__name__ for g in got] == ["dict", "Broken", "dict"] and got[2] == GOOD_TWEETS[1]


# -- hostile sizes ---------------------------------------------------------------------------------

PEAK_SCRIPT = """
import json, sys, time
from connectors.twitter_archive.connector import TwitterArchiveConnector
started = time.monotonic()
connector = TwitterArchiveConnector({"path": sys.argv[1], "user_id": "4000000001"})
ids = [item.external_id for batch in connector.fetch(None) for item in batch.items]
status = open("/proc/self/status").read()
peak_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
print(json.dumps({"ids": ids, "peak_mb": peak_kb // 1024, "seconds": time.monotonic() - started}))
"""


def fetch_in_subprocess(path: Path) -> dict:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parent.parent, check=True)
    return json.loads(done.stdout)


def test_a_whitespace_padded_part_streams_in_bounded_memory_and_linear_time(tmp_path):
    """64 MB of padding between elements and 8 MB inside one (an unpacked archive: no zip caps
    apply). The padding is skipped as it streams past: memory stays flat, time follows size."""
    folder = tmp_path / "padded" / "data"
    folder.mkdir(parents=True)
    first = json.dumps(GOOD_TWEETS[0])
    second = json.dumps(GOOD_TWEETS[1]).replace('"tweet": {', '"tweet": {' + " " * (8 << 20), 1)
    with (folder / "tweets.js").open("w") as fh:
        fh.write("window.YTD.tweets.part0 = [ " + first + ",")
        for _ in range(64):
            fh.write(" \n\t" * 349525 + " ")  # 1 MiB of whitespace
        fh.write(second + " ]")
    result = fetch_in_subprocess(folder.parent)
    assert result["ids"] == [GOOD_TWEETS[0]["tweet"]["id_str"], GOOD_TWEETS[1]["tweet"]["id_str"]]
    assert result["peak_mb"] < 300, result
    assert result["seconds"] < 8, result  # about 2 s on a busy 2-core machine; 36 s for 131 KB before


def test_a_zip_member_that_expands_like_a_bomb_is_refused_by_name_and_the_rest_imports(workspace, tmp_path):
    from streams.models import ImportFailure

    padded = "window.YTD.tweets.part0 = [ " + json.dumps(GOOD_TWEETS[0]) + "," + " " * (64 << 20) + "]"
    path = w.write_archive(tmp_path / "bomb.zip", account=fixture("account"), dms=[fixture("dm__one_to_one")],
                           raw={"data/tweets.js": padded})
    assert run_import(workspace, path) == {"fetched": 3, "new": 2, "duplicate": 0, "failed": 1}
    failure = ImportFailure.objects.get(workspace=workspace)
    assert failure.external_id == "tweets.js#file"
    assert "data/tweets.js expands" in failure.reason and "over the cap of 100 times" in failure.reason


def test_a_zip_member_declared_over_the_size_cap_is_refused_unread(workspace, tmp_path, monkeypatch):
    from connectors.twitter_archive import reader
    from streams.models import ImportFailure

    path = w.write_archive(tmp_path / "a.zip", account=fixture("account"), tweets=GOOD_TWEETS,
                           dms=[fixture("dm__one_to_one")])
    with zipfile.ZipFile(path) as zf:
        sizes = {info.filename: info.file_size for info in zf.infolist()}
    cap = max(size for name, size in sizes.items() if name != "data/tweets.js")
    assert sizes["data/tweets.js"] > cap
    monkeypatch.setattr(reader, "MAX_MEMBER_BYTES", cap)
    assert run_import(workspace, path) == {"fetched": 3, "new": 2, "duplicate": 0, "failed": 1}
    assert f"over the cap of {cap:,} bytes" in ImportFailure.objects.get(workspace=workspace).reason


# -- not an X archive ------------------------------------------------------------------------------


def test_a_zip_that_is_not_an_x_archive_is_refused_plainly(workspace, tmp_path):
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("IMG_0001.jpg", b"\xff\xd8\xff")
        zf.writestr("notes/readme.txt", "hello")
    assert failed_import(workspace, path).startswith("photos.zip is not an X archive: it holds no data/tweets.js")


def test_an_sms_backup_given_as_an_x_archive_is_refused_plainly(workspace):
    message = failed_import(workspace, FIXTURES.parent / "sms_backup" / "backup__mixed.xml")
    assert message.startswith("backup__mixed.xml is not an X archive")


# -- text and times the ingest path must clean or refuse --------------------------------------------


def test_nul_and_lone_surrogates_are_cleaned_and_a_year_9999_tweet_fails_alone(workspace, tmp_path):
    from streams.models import Activity, ImportFailure

    elements = [GOOD_TWEETS[0], fixture("tweet__nul_and_lone_surrogate"), fixture("tweet__created_year_9999"),
                GOOD_TWEETS[1]]
    # As X writes them: JSON escapes (\u0000, \ud83d), which a lone surrogate needs to be written at all.
    part = "window.YTD.tweets.part0 = [ " + ",\n".join(json.dumps(e, ensure_ascii=True) for e in elements) + " ]"
    path = archive_with_part(tmp_path, part)
    assert run_import(workspace, path) == {"fetched": 4, "new": 3, "duplicate": 0, "failed": 1}
    assert Activity.objects.get(dedup_key="x:1850000000000000060").text == "cuthere, half an emoji \ufffd end"
    assert ImportFailure.objects.get(workspace=workspace).external_id == "1850000000000000070"
