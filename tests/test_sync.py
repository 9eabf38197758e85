"""The sync API (issue 16 §1): the change log written by triggers, pages of current state after an
opaque token, scopes, tombstones, the horizon's 410, commit order under concurrent writers, and
``mesh_sync_client`` keeping a SQLite replica equal to the server."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from dataclasses import replace

import orjson
import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connectors.device.connector import DeviceConnector
from streams.delivery import activity_delivery_update
from streams.feed_tokens import activity_erase
from streams.models import Activity, Change, ChangeHorizon, Contact, Identity
from streams.selectors.sync import (
    SCOPES,
    SyncToken,
    _activity_documents_pg,
    _snapshot_ids,
    activity_documents,
    sync_state,
    sync_wait_servable,
)
from streams.services import (
    contact_merge,
    contact_unmerge,
    device_revoke,
    source_create,
    source_sync,
)
from streams.sync import device_sync_scope_set, sync_prune
from streams.sync_client import Replica
from tests.factories import (
    ANA_NUMBER,
    contact_for,
    from_ana,
    ingest_drafts,
    ingest_events,
    make_device,
    make_event,
)
from tests.fakes.sync_http import pull

# The sync API serves committed changes only (a reader never sees its own open transaction's
# rows as final), so these tests commit: no test-wide transaction.
pytestmark = pytest.mark.django_db(transaction=True)

ANA = {"kind": "phone", "value": ANA_NUMBER, "role": "from", "name": "Ana"}
BEN = {"kind": "phone", "value": "+14155550101", "role": "from", "name": "Ben"}


def get(client, token, **params):
    return client.get("/api/v1/sync", params, headers={"Authorization": f"Bearer {token}"})


def events(prefix, n, **fields):
    return [make_event(f"{prefix}{i}", occurred_at=f"2026-05-01T10:{i % 60:02d}:00Z", **fields) for i in range(n)]


@pytest.fixture
def replica(tmp_path):
    r = Replica(str(tmp_path / "replica.sqlite3"))
    yield r
    r.close()


@pytest.mark.usefixtures("query_path")  # both: the poll that reads device and log in one statement
def test_a_replica_pulled_from_scratch_holds_the_devices_own_events_and_nothing_else(workspace, replica):
    phone, token = make_device(workspace, "Phone")
    laptop, _ = make_device(workspace, "Laptop")
    ingest_events(workspace, phone, events("p", 5))
    ingest_events(workspace, laptop, events("l", 3))

    result = pull(replica, token, limit=2)

    own = set(Activity.objects.filter(device=phone).values_list("pk", flat=True))
    assert {i for kind, i in replica.state() if kind == "activity"} == own
    assert replica.state() == sync_state(device=phone)
    assert result.changes == 5 and result.pages == 4  # 3 snapshot pages of 2, 2, 1, then the log's
    assert pull(replica, token).changes == 0


@pytest.mark.usefixtures("query_path")  # both: the poll that reads device and log in one statement
def test_each_scope_sees_its_own_share(workspace, replica, tmp_path):
    phone, _ = make_device(workspace, "Phone")
    laptop, laptop_token = make_device(workspace, "Laptop")
    ingest_events(workspace, phone, events("p", 2, participants=[ANA]))
    ingest_events(workspace, laptop, events("l", 2))
    ingest_drafts(workspace, [("m1", from_ana(channel="email", occurred_at="2026-05-02T09:00:00+00:00"))])

    device_sync_scope_set(device=laptop, scope="devices")
    pull(replica, laptop_token)
    assert {i for _, i in replica.state()} == set(Activity.objects.exclude(device=None).values_list("pk", flat=True))

    watcher, watcher_token = make_device(workspace, "Watch")
    device_sync_scope_set(device=watcher, scope="contacts")
    contacts = Replica(str(tmp_path / "contacts.sqlite3"))
    pull(contacts, watcher_token)
    state = contacts.state()
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    on_timelines = set(Activity.objects.filter(timeline_entries__kind="c").values_list("pk", flat=True))
    assert {i for kind, i in state if kind == "activity"} == on_timelines  # the calls with Ana and her mail
    assert state[("contact", ana.pk)]["name"] == "Ana"
    identities = Identity.objects.filter(workspace=workspace).values_list("pk", flat=True)
    assert {i for kind, i in state if kind == "identity"} == set(identities)
    assert state == sync_state(device=watcher)
    contacts.close()


@pytest.mark.usefixtures("query_path")  # both: the poll that reads device and log in one statement
def test_the_same_token_gives_the_same_answer(workspace, client):
    phone, token = make_device(workspace)
    ingest_events(workspace, phone, events("p", 4))
    first = get(client, token, limit=3).json()
    again = get(client, token, limit=3).json()
    # A snapshot's token also holds where the log resumes: the boundary of finished transactions
    # in the whole PostgreSQL server, which any other database's writes move on.
    assert {**first, "next": None} == {**again, "next": None}
    assert replace(SyncToken.decode(first["next"]), xid=0) == replace(SyncToken.decode(again["next"]), xid=0)
    page = get(client, token, since=first["next"], limit=3).json()
    assert page == get(client, token, since=first["next"], limit=3).json()
    assert [c["type"] for c in first["changes"]] == ["activity"] * 3 and first["more"] is True


@pytest.mark.usefixtures("query_path")  # both: the poll that reads device and log in one statement
def test_bad_requests_are_refused_plainly(workspace, client):
    _, token = make_device(workspace)
    assert get(client, "nope").status_code == 401
    assert client.get("/api/v1/sync").status_code == 401
    bad = get(client, token, since="not-a-token")
    assert bad.status_code == 400 and "bad sync token" in bad.json()["error"]
    assert get(client, token, since=SyncToken("own", 1, 2).encode()[:-2] + "!!").status_code == 400
    assert get(client, token, limit="0").status_code == 400
    assert get(client, token, limit="1001").status_code == 400
    assert get(client, token, limit="ten").status_code == 400
    assert client.post("/api/v1/sync", headers={"Authorization": f"Bearer {token}"}).status_code == 405


@pytest.mark.usefixtures("query_path")  # both: the poll that reads device and log in one statement
def test_updates_and_erasures_are_served_as_current_state_and_tombstones(workspace, replica, client):
    phone, token = make_device(workspace)
    ingest_events(workspace, phone, events("p", 3, participants=[ANA]))
    pull(replica, token)
    first, second, third = Activity.objects.filter(device=phone).order_by("pk")

    activity_delivery_update(workspace=workspace, dedup_key=first.dedup_key, state="delivered")
    activity_erase(activity=second)
    Activity.objects.filter(pk=third.pk).update(visibility="public")  # a writer outside the services

    sync_wait_servable()
    page = get(client, token, since=replica.next).json()
    by_id = {c["id"]: c for c in page["changes"]}
    assert by_id[first.pk]["op"] == "updated" and by_id[first.pk]["object"]["mesh:delivery"]["state"] == "delivered"
    assert by_id[second.pk] == {"type": "activity", "id": second.pk, "op": "erased", "deleted": True, "object": None}
    assert by_id[third.pk]["object"]["mesh:visibility"] == "public"
    pull(replica, token)
    assert replica.state() == sync_state(device=phone)
    assert ("activity", second.pk) not in replica.state()


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_the_lean_activity_documents_are_activity_as2s_byte_for_byte(workspace):
    """Sync pages build activities straight from one statement's rows; ``activity_documents``
    goes through ``activity_as2``, the export's shape. Every verb, participant role, attachment
    form, delivery state, an erasure and each scope must come out the same, key order included."""
    phone, _ = make_device(workspace)
    ingest_events(workspace, phone, events("p", 2, participants=[ANA, {**BEN, "role": "to"}]))
    ingest_events(workspace, phone, [make_event("bare", type="sms.outgoing")])
    people = [{"role": "from", "kind": "email", "value": "a@example.com", "display": ""},
              {"role": "author", "kind": "email", "value": "b@example.com", "display": "Bea"},
              {"role": "to", "kind": "email", "value": "c@example.com", "display": "Cy"},
              {"role": "cc", "kind": "email", "value": "d@example.com"},
              {"role": "bcc", "kind": "email", "value": "e@example.com"},
              {"role": "mention", "kind": "x", "value": "@fay"}]
    attachments = [{"name": "a.pdf", "type": "application/pdf", "size": 12}, {"mediaType": "image/png"},
                   {"name": "ünï \"q\"", "type": "", "mediaType": "text/plain", "size": 1.5}]
    verbs = ["send", "receive", "post", "message", "mention", "arrive", "leave", "call", "location", "react"]
    ingest_drafts(workspace, [
        (f"v{n}", {"channel": "email", "verb": verb, "occurred_at": f"2026-05-0{n % 9 + 1}T10:00:00.{n}51+02:00",
                   "subject": f"S{n}", "text": "x\u2028y", "thread_key": f"t{n % 2}", "participants": people,
                   "attachments": attachments if n % 2 else [], "automated": n == 3,
                   "visibility": "public" if n == 4 else "private"})
        for n, verb in enumerate(verbs)
    ])
    device_activities = Activity.objects.filter(device=phone).order_by("pk")
    activity_delivery_update(workspace=workspace, dedup_key=device_activities[0].dedup_key, state="delivered")
    activity_erase(activity=Activity.objects.get(dedup_key="email:v5"))
    ids = list(Activity.objects.filter(workspace=workspace).values_list("pk", flat=True))

    for scope in SCOPES:
        device = device_sync_scope_set(device=phone, scope=scope)
        device.workspace = workspace
        shown = sorted(_snapshot_ids(device, Change.Kind.ACTIVITY).filter(pk__in=ids).values_list("pk", flat=True))
        expected = activity_documents(workspace=workspace, ids=shown)
        lean = _activity_documents_pg(device, ids)
        assert sorted(lean) == sorted(expected) and len(lean) >= 3, scope
        for pk, doc in expected.items():
            assert orjson.dumps(lean[pk]) == orjson.dumps(doc), (scope, pk)


@pytest.mark.usefixtures("query_path")  # both: the poll that reads device and log in one statement
def test_a_revoked_token_is_refused_on_the_next_request(workspace, client):
    phone, token = make_device(workspace)
    assert get(client, token).status_code == 200
    device_revoke(device=phone)
    refused = get(client, token)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid or revoked token"


@pytest.mark.parametrize("query_path", ["prepared"], indirect=True)
def test_an_up_to_date_poll_is_one_statement_that_sees_a_revocation(workspace, client, query_path):
    phone, token = make_device(workspace)
    ingest_events(workspace, phone, events("p", 3))
    sync_wait_servable()
    up_to_date = pull_until_current(client, token)
    get(client, token, since=up_to_date)  # prepares the statement on this connection
    with CaptureQueriesContext(connection) as queries:
        page = get(client, token, since=up_to_date).json()
    assert (page["changes"], page["more"]) == ([], False)  # "next" follows the boundary of finished transactions
    assert [q["sql"].split("(")[0] for q in queries] == ["EXECUTE mesh_sync_poll_own_v1"]

    ingest_events(workspace, phone, events("q", 2))
    sync_wait_servable()
    fresh = get(client, token, since=page["next"]).json()
    new = list(Activity.objects.filter(device=phone).order_by("pk").values_list("pk", flat=True))[3:]
    assert [(c["id"], c["op"]) for c in fresh["changes"]] == [(pk, "created") for pk in new] and len(new) == 2
    device_revoke(device=phone)
    assert get(client, token, since=fresh["next"]).status_code == 401
    assert get(client, "mesh_dev_" + "x" * 300, since=fresh["next"]).status_code == 401


def pull_until_current(client, token) -> str:
    since = "0"
    while True:
        page = get(client, token, since=since, limit=1000).json()
        since = page["next"]
        if not page["more"]:
            return since


def test_merge_unmerge_rename_and_identity_moves_reach_a_contacts_replica(workspace, replica):
    watch, token = make_device(workspace, "Watch")
    device_sync_scope_set(device=watch, scope="contacts")
    ingest_events(workspace, watch, events("a", 2, participants=[ANA]) + events("b", 2, participants=[BEN]))
    pull(replica, token)
    ana, ben = contact_for(workspace, "phone", ANA_NUMBER), contact_for(workspace, "phone", BEN["value"])

    contact_merge(workspace=workspace, target=ana, other=ben)
    ops = set(Change.objects.filter(kind="c", object_id=ben.pk).values_list("op", flat=True))
    assert "m" in ops
    pull(replica, token)
    state = replica.state()
    assert state[("contact", ben.pk)]["merged_into"] == ana.pk
    ben_identity = Identity.objects.get(value=BEN["value"])
    assert state[("identity", ben_identity.pk)]["contact"] == ana.pk
    assert all(doc["mesh:contacts"] == [ana.pk] for (kind, _), doc in state.items() if kind == "activity")

    contact_unmerge(workspace=workspace, contact=ana)
    Contact.objects.filter(pk=ana.pk).update(name="Ana Smith")
    pull(replica, token)
    assert replica.state() == sync_state(device=watch)
    assert replica.state()[("contact", ana.pk)]["name"] == "Ana Smith"


def test_reprocessing_that_rewrites_participants_is_logged(workspace, replica, tmp_path, monkeypatch):
    phone, token = make_device(workspace)
    device_sync_scope_set(device=phone, scope="devices")
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(make_event("1", data={"text": "hello"}, participants=[ANA])) + "\n")
    source = source_create(workspace=workspace, connector="device", name="s",
                           config={"path": str(path), "device": phone.pk})
    source_sync(source=source)
    pull(replica, token)

    original = DeviceConnector.normalize

    def other_number(self, raw):
        draft = original(self, raw)
        draft.participants[0].value = BEN["value"]
        return draft

    monkeypatch.setattr(DeviceConnector, "normalize", other_number)
    call_command("mesh_reprocess", "--source", str(source.pk), "--workspace", workspace.slug, "--json",
                 stdout=io.StringIO())
    pull(replica, token)
    [doc] = [doc for (kind, _), doc in replica.state().items() if kind == "activity"]
    assert doc["actor"]["mesh:identity"] == f"phone:{BEN['value']}"
    assert replica.state() == sync_state(device=phone)


@pytest.mark.usefixtures("query_path")  # both: the poll that reads device and log in one statement
def test_a_token_past_the_pruned_horizon_answers_410_and_the_client_starts_again(workspace, replica, client):
    phone, token = make_device(workspace)
    ingest_events(workspace, phone, events("p", 3))
    snapshot_end = get(client, token).json()["next"]  # the snapshot, then the log
    ingest_events(workspace, phone, events("q", 3))
    sync_wait_servable()
    early = get(client, token, since=snapshot_end, limit=1).json()["next"]
    pull(replica, token)

    sync_wait_servable()  # only finished transactions' rows are pruned
    logged = Change.objects.filter(workspace_id=workspace.pk).count()
    Change.objects.update(at=timezone.now() - dt.timedelta(days=91))
    assert sync_prune() == logged  # every logged row is past the horizon
    assert Change.objects.count() == 0 and ChangeHorizon.objects.filter(workspace_id=workspace.pk).exists()

    gone = get(client, token, since=early)
    assert gone.status_code == 410
    assert gone.json()["reset_required"] is True
    assert gone.json()["snapshot"] == "http://testserver/api/v1/sync?since=0"
    assert get(client, token, since=replica.next).status_code == 200  # nothing after it was pruned

    stale = Replica(replica.db.execute("PRAGMA database_list").fetchone()[2] + ".stale")
    stale.reset(early)
    result = pull(stale, token)
    assert result.resets == 1 and stale.state() == sync_state(device=phone)
    stale.close()


@pytest.mark.usefixtures("query_path")  # both: the poll that reads device and log in one statement
def test_changing_a_devices_scope_makes_its_old_tokens_reset(workspace, replica):
    phone, token = make_device(workspace)
    ingest_events(workspace, phone, events("p", 2, participants=[ANA]))
    pull(replica, token)
    device_sync_scope_set(device=phone, scope="contacts")
    result = pull(replica, token)
    assert result.resets == 1
    assert {kind for kind, _ in replica.state()} == {"activity", "contact", "identity"}


def test_mesh_sync_client_command_resumes_from_its_stored_token(workspace, tmp_path, monkeypatch):
    from streams import sync_client
    from tests.fakes.sync_http import django_client_transport

    monkeypatch.setattr(sync_client, "urllib_transport", django_client_transport)  # HTTP's one seam
    phone, token = make_device(workspace)
    ingest_events(workspace, phone, events("p", 3))
    db = str(tmp_path / "cli.sqlite3")

    def run():
        sync_wait_servable()
        out = io.StringIO()
        call_command("mesh_sync_client", "--url", "http://testserver/", "--token", token, "--db", db, "--json",
                     stdout=out)
        return json.loads(out.getvalue())

    first = run()
    assert first["objects"] == {"activity": 3} and first["resets"] == 0
    ingest_events(workspace, phone, events("q", 2))
    second = run()
    assert second["changes"] == 2 and second["objects"] == {"activity": 5}


def test_a_transaction_that_commits_later_with_lower_sequence_numbers_is_not_skipped(tmp_path, settings):
    """Two real connections: A logs its rows first and commits last. A reader between the two
    commits must serve neither A's rows nor B's (B's sort after A's), then both."""
    settings.MESH_INGEST_ANALYZE = False
    from tests.factories import make_workspace

    workspace = make_workspace("race", "Race")
    phone, token = make_device(workspace, "Phone")
    laptop, _ = make_device(workspace, "Laptop")
    device_sync_scope_set(device=phone, scope="devices")
    replica = Replica(str(tmp_path / "race.sqlite3"))
    pull(replica, token)

    a_logged, b_committed, a_may_commit = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def writer_a():
        try:
            with transaction.atomic():
                ingest_events(workspace, phone, events("a", 3))
                a_logged.set()
                assert a_may_commit.wait(30)  # after B's commit and the reader's pull between
        except Exception as exc:  # surfaced in the main thread
            errors.append(exc)
            a_logged.set()
        finally:
            connection.close()

    def writer_b():
        try:
            assert a_logged.wait(30)
            ingest_events(workspace, laptop, events("b", 3))
        except Exception as exc:
            errors.append(exc)
        finally:
            b_committed.set()
            connection.close()

    a, b = threading.Thread(target=writer_a), threading.Thread(target=writer_b)
    a.start()
    b.start()
    assert b_committed.wait(30)
    b_seq = set(Change.objects.filter(device_id=laptop.pk).values_list("id", flat=True))
    assert len(b_seq) == 3 and not errors
    between = pull(replica, token, settle=False)  # A still open: its rows are not visible, B's must wait
    a_may_commit.set()
    assert between.changes == 0
    a.join(30)
    b.join(30)
    assert not errors
    a_seq = set(Change.objects.filter(device_id=phone.pk).values_list("id", flat=True))
    assert max(a_seq) < min(b_seq)  # A holds the lower sequence numbers and committed last
    after = pull(replica, token)
    assert after.changes == 6
    assert replica.state() == sync_state(device=phone)
    replica.close()


def test_mesh_bench_sync_catches_up_every_change_it_loaded():
    out = io.StringIO()
    call_command("mesh_bench_sync", "--changes", "300", "--page", "100", "--samples", "5", "--json", stdout=out)
    figures = json.loads(out.getvalue())
    assert figures["catch_up"]["changes"] == 300 and figures["catch_up"]["pages"] == 4
    assert figures["full_download"]["changes"] == 300
    assert figures["poll_up_to_date_ms"]["n"] == 5 and figures["poll_selector_ms"]["n"] == 5
    assert figures["poll_server_ms"]["n"] == 5 and 0 < figures["poll_server_ms"]["p50"] <= figures["poll_server_ms"]["max"]
    assert not Activity.objects.filter(workspace__slug="bench-sync").exists()  # dropped after
