"""The X API v2 connector, against a local HTTP server speaking the API's documented shapes
(tests/fakes/x_api.py; tweepy's real requests go over the socket to 127.0.0.1): conformance, paging and since_id
cursors, 429 / 401 / 5xx / timeouts, deleted authors, and archive-then-API dedup and renames."""

from __future__ import annotations

import datetime as dt
import io
import json
import time

import pytest
from django.core.management import call_command

from connectors.base import ConnectorError
from connectors.testing import ConnectorConformance, draft_dict
from tests.fakes.x_api import FakeX, fixture
from tests.fakes.x_archive import build_conformance_archive, run_import

OWNER, ANA, BEN, CHLOE, GONE = "4000000001", "4000000100", "4000000101", "4000000102", "4000000999"
PAGE2_TOKEN = "7140dibdnow9c7btw481s8m561gat797rboud5r80xvzm"

ME = "/2/users/me"
USER = f"/2/users/{OWNER}"
TWEETS = f"/2/users/{OWNER}/tweets"
MENTIONS = f"/2/users/{OWNER}/mentions"
DMS = "/2/dm_events"


def standard_routes(fake: FakeX) -> FakeX:
    """The account's posts (2 pages), mentions (1 page with a deleted author and a bad item),
    DMs (1 page); with since_id: nothing new."""
    fake.on(ME, "users_me").on(USER, "users_me")
    fake.on(TWEETS, "users_tweets__page1")
    fake.on(TWEETS, "users_tweets__page2", pagination_token=PAGE2_TOKEN)
    fake.on(TWEETS, "users_tweets__empty", since_id="1860000000000000005")
    fake.on(MENTIONS, "users_mentions__deleted_author")
    fake.on(MENTIONS, "users_tweets__empty", since_id="1860000000000000012")
    fake.on(DMS, "dm_events__page1")
    return fake


@pytest.fixture
def fake_x():
    fake = FakeX()
    yield fake
    fake.close()


def make_source(workspace, fake: FakeX, *, name="X", secrets=None, **config):
    from streams.services import source_create

    return source_create(
        workspace=workspace, connector="twitter", name=name,
        config={"api_base_url": fake.url, "page_size": "5", "timeout": "2", **config},
        secrets=secrets or {"access_token": "user-context-token"},
    )


# user.fields=profile_image_url: the owner's picture (users_me.json) and Ana's (users_tweets__page1.json).
OWNER_PIC = "https://pbs.twimg.com/profile_images/1598034441457815552/Wz3Kp0aQ_normal.jpg"
ANA_PIC = "https://pbs.twimg.com/profile_images/1722410563816394752/qL0xR2dd_normal.jpg"
OWNER_AUTHOR = {"role": "author", "kind": "x", "value": OWNER, "display": "@mesh_owner", "avatar": OWNER_PIC}

EXPECTED = {
    "1860000000000000005": draft_dict(
        channel="twitter", verb="post", direction="out", occurred_at="2026-11-20T09:15:00+00:00",
        dedup_key="x:1860000000000000005", text="New desk setup, finally a standing desk & a lamp.",
        url="https://x.com/i/web/status/1860000000000000005", thread_key="x:conv:1860000000000000005",
        participants=[OWNER_AUTHOR], visibility="public",
        attachments=[{"name": "GdEsK001.jpg", "mediaType": "image/jpeg", "id": "1860000000000000900",
                      "url": "https://pbs.twimg.com/media/GdEsK001.jpg"}],
        extra={"lang": "en"},
    ),
    "1860000000000000004": draft_dict(
        channel="twitter", verb="post", direction="out", occurred_at="2026-11-19T16:40:12+00:00",
        dedup_key="x:1860000000000000004", text="@ana_souza Yes — Thursday at 3 works. Agenda: https://example.com/agenda",
        url="https://x.com/i/web/status/1860000000000000004", thread_key="x:conv:1860000000000000001",
        participants=[OWNER_AUTHOR, {"role": "to", "kind": "x", "value": ANA, "display": "@ana_souza", "avatar": ANA_PIC}],
        visibility="public", extra={"in_reply_to": "1860000000000000003", "lang": "en"},
    ),
    "1860000000000000001": draft_dict(
        channel="twitter", verb="post", direction="out", occurred_at="2026-11-17T12:00:00+00:00",
        dedup_key="x:1860000000000000001", text="Shipping the new timeline view today. Video:",
        url="https://x.com/i/web/status/1860000000000000001", thread_key="x:conv:1860000000000000001",
        participants=[OWNER_AUTHOR], visibility="public",
        attachments=[{"name": "high.mp4", "mediaType": "video/mp4", "id": "1860000000000000901",
                      "url": "https://video.twimg.com/ext_tw_video/1860000000000000901/pu/vid/1280x720/high.mp4?tag=12"}],
        extra={"lang": "en"},
    ),
    "1860000000000000011": draft_dict(
        channel="twitter", verb="mention", direction="in", occurred_at="2026-11-20T22:00:00+00:00",
        dedup_key="x:1860000000000000011", text="@mesh_owner great talk yesterday",
        url="https://x.com/i/web/status/1860000000000000011", thread_key="x:conv:1860000000000000011",
        participants=[{"role": "author", "kind": "x", "value": GONE, "display": ""},
                      {"role": "mention", "kind": "x", "value": OWNER, "display": "@mesh_owner", "avatar": OWNER_PIC}],
        extra={"lang": "en"},
    ),
    "dm:1860000000000000029": draft_dict(
        channel="twitter", verb="receive", direction="in", occurred_at="2026-11-21T08:58:00+00:00",
        dedup_key="x:dm:1860000000000000029", text="Got the quote, thanks — a few questions.",
        thread_key="x:dm:4000000001-4000000100",
        participants=[{"role": "from", "kind": "x", "value": ANA, "display": "@ana_souza"},
                      {"role": "to", "kind": "x", "value": OWNER, "display": "@mesh_owner", "avatar": OWNER_PIC}],
        attachments=[{"name": "QuOtE.png", "mediaType": "image/png", "id": "1860000000000000950",
                      "url": "https://ton.twitter.com/1.1/ton/data/dm/1860000000000000029/1860000000000000950/QuOtE.png"}],
    ),
    "dm:1860000000000000032": draft_dict(
        channel="twitter", verb="receive", direction="in", occurred_at="2026-11-21T18:05:00+00:00",
        dedup_key="x:dm:1860000000000000032", text="I'll bring snacks 🥐", thread_key="x:dm:1860000000000000030",
        participants=[{"role": "from", "kind": "x", "value": CHLOE, "display": "@chloe_m"},
                      {"role": "to", "kind": "x", "value": OWNER, "display": "@mesh_owner", "avatar": OWNER_PIC}],
        extra={"group": True},
    ),
}


class TestTwitterApiConformance(ConnectorConformance):
    connector_key = "twitter"
    expected_drafts = EXPECTED
    bad_external_ids = {"1860000000000000010"}

    @pytest.fixture(autouse=True)
    def _server(self):
        self.fake = standard_routes(FakeX())
        yield
        self.fake.close()

    def make_source(self, workspace, tmp_path):
        return make_source(workspace, self.fake)


# -- syncing ------------------------------------------------------------------------------------


def sync(source):
    from streams.services import source_sync

    return source_sync(source=source)


def test_first_sync_pages_every_stream_and_the_next_asks_only_for_newer(workspace, fake_x):
    from streams.models import Activity, Identity

    source = make_source(workspace, standard_routes(fake_x))
    run = sync(source)
    assert (run.fetched, run.new, run.failed) == (10, 9, 1)
    source.refresh_from_db()
    assert source.cursor == {"posts": {"since_id": "1860000000000000005"},
                             "mentions": {"since_id": "1860000000000000012"},
                             "dms": {"since_id": "1860000000000000032"}}
    # Page 2 was asked for with page 1's token; every request asked for the authors' users.
    assert [p.get("pagination_token") for p in fake_x.calls(TWEETS)] == [None, PAGE2_TOKEN]
    first = fake_x.calls(TWEETS)[0]
    assert first["expansions"].startswith("author_id") and "username" in first["user.fields"]
    assert "profile_image_url" in first["user.fields"]
    assert first["max_results"] == "5"
    _p, _q, headers = fake_x.requests[0]
    assert headers["Authorization"] == "Bearer user-context-token"
    # The owner is self; every other author is one identity by id with the handle as display.
    assert Identity.objects.get(workspace=workspace, kind="x", value=OWNER).is_self
    assert Identity.objects.get(workspace=workspace, kind="x", value=BEN).display == "@benokafor"
    assert Identity.objects.get(workspace=workspace, kind="x", value=GONE).display == ""
    # user.fields=profile_image_url: the owner's (GET /2/users/me) and an author's (includes.users).
    assert Identity.objects.get(workspace=workspace, kind="x", value=ANA).avatar_url == ANA_PIC
    assert Identity.objects.get(workspace=workspace, kind="x", value=OWNER).avatar_url == OWNER_PIC
    vis = dict(Activity.objects.filter(workspace=workspace).values_list("dedup_key", "visibility"))
    assert {k for k, v in vis.items() if v == "public"} == {
        "x:1860000000000000005", "x:1860000000000000004", "x:1860000000000000002", "x:1860000000000000001"}

    fake_x.requests.clear()
    again = sync(source)
    assert (again.fetched, again.new) == (0, 0)
    assert fake_x.calls(TWEETS)[0]["since_id"] == "1860000000000000005"
    assert fake_x.calls(MENTIONS)[0]["since_id"] == "1860000000000000012"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "http://pbs.twimg.com/profile_images/1/a_normal.jpg",
                                 "https://pbs.twimg.com/a.jpg\"><script>", None])
def test_normalize_keeps_only_an_https_profile_picture(url):
    from connectors.base import RawItem
    from connectors.twitter.connector import TwitterConnector

    page = fixture("users_tweets__page1")
    author = next(u for u in page["includes"]["users"] if u["id"] == ANA)
    payload = {"stream": "mentions", "tweet": {"id": "1860000000000000099", "author_id": ANA, "text": "hi",
                                               "created_at": "2024-11-20T10:00:00.000Z"},
               "users": {ANA: {**author, "profile_image_url": url}}, "media": [],
               "owner": {"id": OWNER, "username": "mesh_owner"}}
    connector = TwitterConnector({"user_id": OWNER}, {"bearer_token": "t"})
    kept = connector.normalize(RawItem("1", {**payload, "users": {ANA: author}})).participants[0]
    assert (kept.value, kept.avatar) == (ANA, author["profile_image_url"])
    assert connector.normalize(RawItem("1", payload)).participants[0].avatar == ""


def test_dm_pages_stop_at_the_cursor(workspace, fake_x):
    from streams.models import Activity

    standard_routes(fake_x)
    source = make_source(workspace, fake_x, streams="dms")
    assert sync(source).new == 3
    page = fixture("dm_events__page1")
    page["data"].insert(0, {"id": "1860000000000000040", "event_type": "MessageCreate", "text": "One more thing",
                            "sender_id": ANA, "dm_conversation_id": f"{OWNER}-{ANA}",
                            "created_at": "2026-11-22T07:00:00.000Z"})
    page["meta"]["next_token"] = "older-page-never-needed"
    fake_x.on(DMS, page)
    run = sync(source)
    assert (run.fetched, run.new) == (1, 1)
    assert [p.get("pagination_token") for p in fake_x.calls(DMS)] == [None, None]
    assert Activity.objects.filter(dedup_key="x:dm:1860000000000000040", direction="in").exists()


def test_an_empty_page_stores_nothing_and_keeps_the_cursor(workspace, fake_x):
    fake_x.on(ME, "users_me").on(USER, "users_me").on(TWEETS, "users_tweets__empty")
    source = make_source(workspace, fake_x, streams="posts")
    run = sync(source)
    assert (run.fetched, run.new, run.status) == (0, 0, "ok")
    source.refresh_from_db()
    assert source.cursor == {"posts": {}}


def test_user_id_is_looked_up_from_the_token_when_not_configured(workspace, fake_x):
    standard_routes(fake_x)
    source = make_source(workspace, fake_x, streams="posts")
    sync(source)
    assert fake_x.calls(ME) and not fake_x.calls(USER)
    configured = make_source(workspace, fake_x, name="X2", streams="posts", user_id=OWNER,
                             secrets={"bearer_token": "app-token"})
    fake_x.requests.clear()
    sync(configured)
    assert fake_x.calls(USER) and not fake_x.calls(ME)


def test_an_app_bearer_token_does_not_ask_for_dms(workspace, fake_x):
    standard_routes(fake_x)
    source = make_source(workspace, fake_x, user_id=OWNER, secrets={"bearer_token": "app-token"})
    sync(source)
    assert fake_x.calls(TWEETS) and fake_x.calls(MENTIONS) and not fake_x.calls(DMS)


# -- failures -----------------------------------------------------------------------------------


def test_429_stops_with_the_cursor_of_stored_pages_and_resumes_at_the_reset(workspace, fake_x):
    from streams.models import Activity

    reset = int(time.time()) + 900
    standard_routes(fake_x)
    fake_x.on(TWEETS, (429, {"x-rate-limit-reset": str(reset), "x-rate-limit-remaining": "0"},
                       "error__429_too_many_requests"), "users_tweets__page2", pagination_token=PAGE2_TOKEN)
    source = make_source(workspace, fake_x)
    with pytest.raises(ConnectorError) as caught:
        sync(source)
    assert caught.value.retry_at == dt.datetime.fromtimestamp(reset, dt.UTC) and not caught.value.permanent
    source.refresh_from_db()
    assert source.status == "error" and source.retry_at == caught.value.retry_at
    assert source.cursor == {"posts": {"newest": "1860000000000000005", "next_token": PAGE2_TOKEN}}
    assert Activity.objects.filter(source=source).count() == 2
    run = sync(source)  # after the reset: page 2, then the other streams
    assert run.fetched == 8 and fake_x.calls(TWEETS)[-1]["pagination_token"] == PAGE2_TOKEN
    source.refresh_from_db()
    assert source.cursor["posts"] == {"since_id": "1860000000000000005"} and source.retry_at is None


def test_mesh_sync_from_the_shell_says_when_to_resume_and_exits_1(workspace, fake_x):
    reset = int(time.time()) + 600
    fake_x.on(ME, "users_me").on(TWEETS, (429, {"x-rate-limit-reset": str(reset)}, "error__429_too_many_requests"))
    source = make_source(workspace, fake_x)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("mesh_sync", str(source.pk), "--workspace", workspace.slug, "--json", stdout=out, stderr=err)
    assert exited.value.code == 1
    data = json.loads(out.getvalue())
    assert data["errors"][0]["retry_at"] == dt.datetime.fromtimestamp(reset, dt.UTC).isoformat().replace("+00:00", "Z")
    assert "resume after" in err.getvalue()


def test_the_celery_task_retries_at_the_reset_without_sleeping(workspace, fake_x, monkeypatch):
    from streams import tasks

    reset = int(time.time()) + 300
    fake_x.on(ME, "users_me").on(TWEETS, (429, {"x-rate-limit-reset": str(reset)}, "error__429_too_many_requests"))
    source = make_source(workspace, fake_x)
    seen = {}

    def fake_retry(*, exc, countdown):
        seen.update(exc=exc, countdown=countdown)
        raise RuntimeError("retry scheduled")

    monkeypatch.setattr(tasks.sync_source, "retry", fake_retry)
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail("a worker must never sleep"))
    task = tasks.sync_source
    task.push_request(retries=0, is_eager=False)
    try:
        with pytest.raises(RuntimeError, match="retry scheduled"):
            task.run(source.pk)
    finally:
        task.pop_request()
    assert 290 <= seen["countdown"] <= 301


def test_401_marks_the_source_as_needing_reauthorization(workspace, fake_x):
    from streams.services import source_health

    fake_x.on(ME, (401, {}, "error__401_unauthorized"))
    source = make_source(workspace, fake_x)
    with pytest.raises(ConnectorError) as caught:
        sync(source)
    assert caught.value.permanent and caught.value.status == "auth_failed"
    source.refresh_from_db()
    assert source.status == "auth_failed" and "needs re-authorization" in source.last_error
    assert not source_health(source=source)["healthy"]


def test_403_on_a_page_is_permanent_too(workspace, fake_x):
    fake_x.on(ME, "users_me").on(TWEETS, (403, {}, {"title": "Forbidden", "status": 403, "detail": "Forbidden"}))
    with pytest.raises(ConnectorError) as caught:
        sync(make_source(workspace, fake_x))
    assert caught.value.permanent and "needs re-authorization" in caught.value.message


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_transient(workspace, fake_x, status):
    fake_x.on(ME, "users_me").on(TWEETS, (status, {}, {"title": "Service Unavailable"}))
    source = make_source(workspace, fake_x)
    with pytest.raises(ConnectorError) as caught:
        sync(source)
    assert not caught.value.permanent and caught.value.retry_at is None
    source.refresh_from_db()
    assert source.status == "error"


def test_a_timeout_is_transient(workspace, fake_x):
    fake_x.on(ME, "users_me")
    source = make_source(workspace, fake_x, timeout="0.2")
    fake_x.delay = 0.6
    with pytest.raises(ConnectorError, match="timed out") as caught:
        sync(source)
    assert not caught.value.permanent


def test_a_body_that_is_not_json_is_transient(workspace, fake_x):
    fake_x.on(ME, "users_me").on(TWEETS, (200, {}, "<html>proxy error</html>"))
    with pytest.raises(ConnectorError, match="not JSON") as caught:
        sync(make_source(workspace, fake_x))
    assert not caught.value.permanent


def test_bad_settings_are_refused_when_the_source_is_added(workspace):
    from connectors.base import ConfigError
    from streams.services import source_create

    with pytest.raises(ConfigError, match="bearer_token"):
        source_create(workspace=workspace, connector="twitter", name="a", config={})
    with pytest.raises(ConfigError, match="numeric"):
        source_create(workspace=workspace, connector="twitter", name="b", config={"user_id": "@mesh_owner"},
                      secrets={"bearer_token": "t"})


# -- archive and API together -------------------------------------------------------------------


def test_archive_then_api_is_one_activity_and_a_renamed_handle_one_contact(workspace, fake_x, tmp_path):
    from streams.models import Activity, Contact, Identity

    run_import(workspace, build_conformance_archive(tmp_path / "archive.zip"))
    ana_contact = Identity.objects.get(workspace=workspace, kind="x", value=ANA).contact_id
    fake_x.on(ME, "users_me").on(TWEETS, "users_tweets__seen_in_archive_after_rename")
    source = make_source(workspace, fake_x, streams="posts")
    run = sync(source)
    assert (run.fetched, run.new, run.duplicate) == (2, 1, 1)
    assert Activity.objects.filter(workspace=workspace, dedup_key="x:1850000000000000003").count() == 1
    ana = Identity.objects.get(workspace=workspace, kind="x", value=ANA)
    assert ana.contact_id == ana_contact
    assert ana.display == "@ana_builds" and ana.contact.name == "@ana_builds"
    assert Contact.objects.filter(workspace=workspace, identities__kind="x", identities__value=ANA).count() == 1
    on_ana = Activity.objects.filter(timeline_entries__kind="c", timeline_entries__owner_id=ana_contact)
    assert on_ana.filter(dedup_key="x:1860000000000000050").exists()
    # The owner of the archive and of the token is one self identity.
    assert Identity.objects.filter(workspace=workspace, kind="x", value=OWNER, is_self=True).count() == 1


def test_mesh_source_add_then_mesh_sync_from_the_shell(workspace, fake_x):
    from streams.models import Activity, Source

    standard_routes(fake_x)
    out = io.StringIO()
    call_command("mesh_source", "add", "twitter", "--name", "Me", "--config", f"user_id={OWNER}",
                 "--config", f"api_base_url={fake_x.url}", "--secret", "bearer_token=app-token",
                 "--workspace", workspace.slug, "--json", stdout=out)
    source = Source.objects.get(pk=json.loads(out.getvalue())["id"])
    assert source.interval_seconds == 900 and "app-token" not in source.secrets_encrypted
    out = io.StringIO()
    call_command("mesh_sync", str(source.pk), "--workspace", workspace.slug, "--json", stdout=out, stderr=io.StringIO())
    assert json.loads(out.getvalue()) == {"fetched": 7, "new": 6, "duplicate": 0, "failed": 1}
    assert Activity.objects.filter(source=source, channel="twitter").count() == 6
