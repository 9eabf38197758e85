"""IMAP sync against a real, throw-away Dovecot on loopback (tests/fakes/dovecot.py): no IMAP mocks.
Where a test needs the server to misbehave (a dropped connection, a message it does not
return), it patches the client at the network boundary for one call."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from imapclient import IMAPClient

from connectors.base import ConfigError, registry
from connectors.testing import ConnectorConformance, draft_dict
from streams.models import Activity, ImportFailure, Source
from streams.reprocess import source_reprocess
from streams.services import source_create, source_health, source_sync
from tests.fakes import dovecot as dv

FIXTURES = Path(__file__).parent / "fixtures" / "email"


@pytest.fixture(scope="session")
def dovecot():
    server = dv.Dovecot.start()
    yield server
    server.stop()


@pytest.fixture
def mailbox(dovecot):
    user, password = dovecot.add_user()
    client = dovecot.client(user, password)
    yield user, password, client
    try:
        client.logout()
    except Exception:
        pass


def eml(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


def imap_source(workspace, dovecot, user, password, name="Work", **config):
    cfg = {"host": "127.0.0.1", "port": str(dovecot.port), "security": "none", "username": user}
    cfg.update(config)
    return source_create(workspace=workspace, connector="imap", name=name, config=cfg, secrets={"password": password})


def show(source) -> dict:
    out = io.StringIO()
    call_command("mesh_source", "show", str(source.pk), "--workspace", source.workspace.slug, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_sync_reads_inbox_and_special_use_sent_and_resync_gives_zero_new(workspace, dovecot, mailbox):
    user, password, client = mailbox
    for n in (1, 3, 5):
        client.append("INBOX", eml(f"reply_chain__{n}"))
    for n in (2, 4):
        client.append("Sent", eml(f"reply_chain__{n}"))
    client.append("Archive", eml("calendar_invite"))  # not a default folder
    source = imap_source(workspace, dovecot, user, password, aliases="me@mesh.example")
    run = source_sync(source=source)
    assert (run.fetched, run.new, run.duplicate, run.failed) == (5, 5, 0, 0)
    by_key = {a.dedup_key: a for a in Activity.objects.filter(source=source)}
    assert by_key["email:chain-2@mesh.example"].direction == "out"
    assert by_key["email:chain-3@example.com"].direction == "in"
    assert {a.thread_key for a in by_key.values()} == {"email:chain-1@example.com"}
    raw = by_key["email:chain-3@example.com"].raw
    assert (raw["folder"], raw["uid"]) == ("INBOX", 2) and raw["uidvalidity"] and raw["internaldate"]
    source.refresh_from_db()
    assert set(source.cursor["folders"]) == {"INBOX", "Sent"}
    assert source.cursor["folders"]["INBOX"]["last_uid"] == 3

    again = source_sync(source=source)
    assert (again.fetched, again.new) == (0, 0)
    fresh = source_sync(source=source, fresh=True)
    assert (fresh.fetched, fresh.new, fresh.duplicate) == (5, 0, 5)
    assert source_health(source=source)["healthy"]


def test_new_message_between_two_syncs_is_the_only_one_fetched(workspace, dovecot, mailbox):
    user, password, client = mailbox
    client.append("INBOX", eml("reply_chain__1"))
    source = imap_source(workspace, dovecot, user, password)
    assert source_sync(source=source).new == 1
    client.append("INBOX", eml("reply_chain__3"))
    run = source_sync(source=source)
    assert (run.fetched, run.new) == (1, 1)


def test_deleted_message_keeps_its_activity_and_sync_goes_on(workspace, dovecot, mailbox):
    user, password, client = mailbox
    client.append("INBOX", eml("reply_chain__1"))
    client.append("INBOX", eml("reply_chain__3"))
    source = imap_source(workspace, dovecot, user, password)
    assert source_sync(source=source).new == 2
    client.select_folder("INBOX")
    client.delete_messages([1])
    client.expunge()
    client.append("INBOX", eml("reply_chain__5"))
    run = source_sync(source=source)
    assert (run.fetched, run.new) == (1, 1)
    assert Activity.objects.filter(source=source).count() == 3
    assert source_health(source=source)["healthy"]


def test_uidvalidity_reset_rescans_the_folder_and_duplicates_nothing(workspace, dovecot, mailbox):
    user, password, client = mailbox
    client.create_folder("Projects")
    client.append("Projects", eml("reply_chain__1"))
    client.append("Projects", eml("calendar_invite"))
    source = imap_source(workspace, dovecot, user, password, folders="INBOX,Projects")
    assert source_sync(source=source).new == 2
    source.refresh_from_db()
    old = source.cursor["folders"]["Projects"]["uidvalidity"]
    # Re-creating a mailbox gives it a new UIDVALIDITY, as a server restore or migration does.
    client.delete_folder("Projects")
    time.sleep(1.1)  # Dovecot's UIDVALIDITY is a timestamp
    client.create_folder("Projects")
    client.append("Projects", eml("calendar_invite"))
    client.append("Projects", eml("reply_chain__1"))
    client.append("Projects", eml("mailing_list"))
    run = source_sync(source=source)
    assert (run.fetched, run.new, run.duplicate) == (3, 1, 2)
    source.refresh_from_db()
    assert source.cursor["folders"]["Projects"]["uidvalidity"] != old
    assert Activity.objects.filter(source=source).count() == 3


def test_the_same_mail_in_two_folders_is_one_activity(workspace, dovecot, mailbox):
    user, password, client = mailbox
    client.append("INBOX", eml("reply_chain__1"))
    client.append("Archive", eml("reply_chain__1"))
    source = imap_source(workspace, dovecot, user, password, folders="INBOX,\\Archive")
    run = source_sync(source=source)
    assert (run.fetched, run.new, run.duplicate) == (2, 1, 1)


def test_sync_never_changes_seen_flags(workspace, dovecot, mailbox):
    user, password, client = mailbox
    client.append("INBOX", eml("reply_chain__1"))
    client.append("INBOX", eml("reply_chain__3"), flags=[b"\\Seen", b"\\Flagged"])
    client.select_folder("INBOX", readonly=True)
    before = {uid: set(v[b"FLAGS"]) - {b"\\Recent"} for uid, v in client.fetch([1, 2], ["FLAGS"]).items()}
    source = imap_source(workspace, dovecot, user, password)
    assert source_sync(source=source).new == 2
    client.unselect_folder()
    client.select_folder("INBOX", readonly=True)
    after = {uid: set(v[b"FLAGS"]) - {b"\\Recent"} for uid, v in client.fetch([1, 2], ["FLAGS"]).items()}
    assert after == before == {1: set(), 2: {b"\\Seen", b"\\Flagged"}}
    stored = Activity.objects.get(dedup_key="email:chain-3@example.com").raw
    assert stored["flags"] == ["\\Flagged", "\\Seen"]


def test_wrong_password_marks_the_source_auth_failed_with_the_servers_words(workspace, dovecot, mailbox):
    from connectors.base import ConnectorError

    user, _password, _client = mailbox
    source = imap_source(workspace, dovecot, user, "not-the-password")
    with pytest.raises(ConnectorError) as err:
        source_sync(source=source)
    assert err.value.permanent
    source.refresh_from_db()
    assert source.status == "auth_failed"
    assert "AUTHENTICATIONFAILED" in source.last_error or "Authentication failed" in source.last_error
    shown = show(source)
    assert shown["status"] == "auth_failed" and not shown["healthy"]
    assert "Authentication failed" in shown["last_error"]


def test_plaintext_is_refused_for_a_remote_host_and_a_secret_is_required(workspace):
    cls = registry.get("imap")
    with pytest.raises(ConfigError, match="loopback"):
        cls({"host": "imap.example.com", "username": "a@example.com", "security": "none"}, {"password": "x"})
    with pytest.raises(ConfigError, match="password"):
        cls({"host": "imap.example.com", "username": "a@example.com"}, {})
    with pytest.raises(ConfigError, match="security"):
        source_create(workspace=workspace, connector="imap", name="x",
                      config={"host": "imap.example.com", "username": "a", "security": "plain"}, secrets={"password": "x"})
    ok = cls({"host": "imap.example.com", "username": "a@example.com", "folders": "INBOX, Work"}, {"password": "x"})
    assert (ok.config.port, ok.config.security, ok.config.folders) == (993, "ssl", ("INBOX", "Work"))


def test_batches_are_bounded_and_a_crash_resumes_from_the_last_stored_batch(workspace, dovecot, mailbox, monkeypatch):
    user, password, client = mailbox
    for n in range(1, 6):
        client.append("INBOX", eml(f"reply_chain__{n}"))
    source = imap_source(workspace, dovecot, user, password, batch_size="2")
    cls = registry.get("imap")
    original = cls._batch
    calls = {"n": 0}

    def crash_on_third(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker killed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "_batch", crash_on_third)
    with pytest.raises(RuntimeError):
        source_sync(source=source)
    assert Activity.objects.filter(source=source).count() == 4
    monkeypatch.setattr(cls, "_batch", original)
    run = source_sync(source=source)
    assert (run.fetched, run.new, run.duplicate) == (1, 1, 0)
    assert run.batches >= 2  # a data batch and the closing cursor batch


def test_a_dropped_connection_is_retried_with_backoff(workspace, dovecot, mailbox, monkeypatch):
    import imaplib

    user, password, client = mailbox
    client.append("INBOX", eml("reply_chain__1"))
    client.append("INBOX", eml("reply_chain__3"))
    source = imap_source(workspace, dovecot, user, password, batch_size="1")
    original = IMAPClient.fetch
    state = {"dropped": False}

    def flaky(self, messages, data, modifiers=None):
        if "BODY.PEEK[]" in data and not state["dropped"] and 2 in messages:
            state["dropped"] = True
            self.shutdown()
            raise imaplib.IMAP4.abort("socket error: EOF")
        return original(self, messages, data, modifiers)

    monkeypatch.setattr(IMAPClient, "fetch", flaky)
    sleeps = []
    monkeypatch.setattr("connectors.imap.connector.time.sleep", sleeps.append)
    run = source_sync(source=source)
    assert state["dropped"] and sleeps == [1]
    assert (run.new, run.duplicate) == (2, 0)


def test_a_hole_is_reported_as_a_gap_until_reconciliation_fills_it(workspace, dovecot, mailbox, monkeypatch):
    user, password, client = mailbox
    for n in (1, 2, 3):
        client.append("INBOX", eml(f"reply_chain__{n}"))
    source = imap_source(workspace, dovecot, user, password)
    original = IMAPClient.fetch

    def loses_uid_2(self, messages, data, modifiers=None):
        result = original(self, messages, data, modifiers)
        if "BODY.PEEK[]" in data:
            result.pop(2, None)  # the server answered without this message (a real Exchange/Gmail habit)
        return result

    monkeypatch.setattr(IMAPClient, "fetch", loses_uid_2)
    run = source_sync(source=source)
    assert run.new == 2
    source.refresh_from_db()
    assert "INBOX: 1 message(s)" in source.gap and "UID 2" in source.gap
    health = source_health(source=source)
    assert not health["healthy"] and any("gap" in p for p in health["problems"])
    assert show(source)["gap"] == source.gap

    monkeypatch.setattr(IMAPClient, "fetch", original)
    client.append("INBOX", eml("reply_chain__4"))
    run = source_sync(source=source)
    assert (run.fetched, run.new) == (2, 2)  # the hole and the new message
    source.refresh_from_db()
    assert source.gap == ""
    assert source.cursor["folders"]["INBOX"]["seen"] == [[1, 4]]
    assert source_health(source=source)["healthy"]


def test_since_backfill_refetches_from_a_date_without_duplicates(workspace, dovecot, mailbox):
    user, password, client = mailbox
    client.append("INBOX", eml("reply_chain__1"))
    client.append("INBOX", eml("reply_chain__3"))
    source = imap_source(workspace, dovecot, user, password)
    source_sync(source=source)
    out = io.StringIO()
    call_command("mesh_sync", str(source.pk), "--since", "2024-01-01", "--workspace", workspace.slug, "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"fetched": 2, "new": 0, "duplicate": 2, "failed": 0}
    assert source_sync(source=source).fetched == 0


def test_a_message_the_parser_cannot_use_is_an_import_failure_and_sync_goes_on(workspace, dovecot, mailbox):
    user, password, client = mailbox
    client.append("INBOX", eml("reply_chain__1"))
    client.append("INBOX", eml("not_an_email"))  # binary data: holds no message at all
    client.append("INBOX", eml("reply_chain__3"))
    source = imap_source(workspace, dovecot, user, password)
    run = source_sync(source=source)
    assert (run.new, run.failed) == (2, 1)
    failure = ImportFailure.objects.get(source=source)
    assert failure.external_id.startswith("INBOX/") and failure.external_id.endswith("/2")
    assert "not an email" in failure.reason and failure.payload["rfc822_zb64"]
    assert [f["external_id"] for f in show(source)["failures"]] == [failure.external_id]


def test_a_message_without_any_header_imports_at_the_servers_internaldate(workspace, dovecot, mailbox):
    user, password, client = mailbox
    arrived = dt.datetime(2026, 5, 15, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    client.append("INBOX", eml("headerless__body_only"), msg_time=arrived)
    source = imap_source(workspace, dovecot, user, password)
    run = source_sync(source=source)
    assert (run.new, run.failed) == (1, 0)
    activity = Activity.objects.get(source=source)
    assert activity.occurred_at == dt.datetime(2026, 5, 15, 7, 30, tzinfo=dt.UTC)
    assert activity.extra["date_source"] == "internaldate"
    assert activity.extra["missing_headers"] == ["from", "to", "date", "subject", "message-id"]
    assert activity.text.startswith("Call the plumber") and not activity.participants.exists()


def test_copies_of_a_message_without_message_id_in_inbox_sent_and_an_mbox_are_one_activity(
        workspace, dovecot, mailbox, tmp_path):
    user, password, client = mailbox
    client.append("INBOX", eml("no_message_id__copy_imap"))
    client.append("Sent", eml("no_message_id__copy_saved"))
    client.append("INBOX", eml("no_message_id__script_a"))
    client.append("INBOX", eml("no_message_id__script_b"))
    source = imap_source(workspace, dovecot, user, password)
    run = source_sync(source=source)
    # The two script messages share every header and differ in their body: two activities.
    assert (run.fetched, run.new, run.duplicate, run.failed) == (4, 3, 1, 0)
    path = tmp_path / "backup.mbox"
    path.write_bytes((FIXTURES / "no_message_id__copy.mbox").read_bytes())
    out = io.StringIO()
    call_command("mesh_import", "mbox", str(path), "--workspace", workspace.slug, "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"fetched": 1, "new": 0, "duplicate": 1, "failed": 0}


def test_reprocess_reparses_stored_messages_without_the_server(workspace, dovecot, mailbox, monkeypatch):
    user, password, client = mailbox
    client.append("INBOX", eml("newsletter__html_only_tracking"))
    client.append("INBOX", eml("reply_chain__1"))
    source = imap_source(workspace, dovecot, user, password)
    source_sync(source=source)
    Source.objects.filter(pk=source.pk).update(config={**source.config, "port": "1"})  # the server is gone
    source.refresh_from_db()
    assert source_reprocess(source=source).counts() == {"reprocessed": 2, "changed": 0, "failed": 0}
    # A parser change: the normalizer now upper-cases subjects.
    import connectors.email_common as ec

    original = ec.email_draft

    def louder(data, **kwargs):
        d = original(data, **kwargs)
        d.subject = d.subject.upper()
        return d

    monkeypatch.setattr(ec, "email_draft", louder)
    assert source_reprocess(source=source).counts() == {"reprocessed": 2, "changed": 2, "failed": 0}
    assert Activity.objects.get(dedup_key="email:chain-1@example.com").subject == "CONTRACT RENEWAL"
    assert source_reprocess(source=source).counts() == {"reprocessed": 2, "changed": 0, "failed": 0}


def test_idle_triggers_a_sync_when_mail_arrives(workspace, dovecot, mailbox):
    user, password, client = mailbox
    source = imap_source(workspace, dovecot, user, password)
    out = io.StringIO()
    err = io.StringIO()

    def deliver():
        time.sleep(0.7)
        c = dovecot.client(user, password)
        c.append("INBOX", eml("reply_chain__1"))
        c.logout()

    thread = threading.Thread(target=deliver)
    thread.start()
    call_command("mesh_imap_idle", str(source.pk), "--workspace", workspace.slug, "--once", "--max-seconds", "20",
                 "--json", stdout=out, stderr=err)
    thread.join()
    result = json.loads(out.getvalue())
    assert result["triggered"] == 1
    assert Activity.objects.filter(source=source, dedup_key="email:chain-1@example.com").exists()


class TestImapConformance(ConnectorConformance):
    """The conformance kit against the real Dovecot: INBOX in two batches plus Sent."""

    connector_key = "imap"

    @pytest.fixture(autouse=True)
    def _dovecot(self, dovecot):
        self.server = dovecot

    def make_source(self, workspace, tmp_path):
        user, password = self.server.add_user()
        client = self.server.client(user, password)
        for message in (eml("reply_chain__1"), eml("mailing_list"), eml("not_an_email"), eml("reply_chain__3")):
            client.append("INBOX", message)
        client.append("Sent", eml("reply_chain__2"))
        validity = client.select_folder("INBOX", readonly=True)[b"UIDVALIDITY"]
        client.logout()
        type(self).bad_external_ids = {f"INBOX/{validity}/3"}
        type(self).expected_drafts = {
            f"INBOX/{validity}/1": draft_dict(
                channel="email", verb="receive", direction="in", occurred_at="2026-05-19T11:00:00+00:00",
                dedup_key="email:chain-1@example.com", subject="Contract renewal", text="Message 1 of the chain.\n",
                thread_key="email:chain-1@example.com",
                participants=[
                    {"role": "from", "kind": "email", "value": "ana@example.com", "display": "Ana Souza"},
                    {"role": "to", "kind": "email", "value": "me@mesh.example", "display": "Me"},
                ],
                extra={"message_id": "chain-1@example.com", "snippet": "Message 1 of the chain.",
                       "thread_subject": "Contract renewal", "size": len(eml("reply_chain__1"))},
            ),
        }
        return imap_source(workspace, self.server, user, password, batch_size="2", aliases="me@mesh.example")


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_imaps_and_starttls_verify_the_certificate(workspace, dovecot, mailbox, security):
    from connectors.base import ConnectorError

    user, password, client = mailbox
    client.append("INBOX", eml("reply_chain__1"))
    port = dovecot.ssl_port if security == "ssl" else dovecot.port
    source = imap_source(workspace, dovecot, user, password, security=security, port=str(port),
                         ca_file=dovecot.ca_file, name=f"tls {security}")
    assert source_sync(source=source).new == 1
    # Without the CA, the self-signed certificate is refused: no sync, no password sent.
    untrusted = imap_source(workspace, dovecot, user, password, security=security, port=str(port),
                            name=f"untrusted {security}")
    with pytest.raises(ConnectorError, match="certificate is not trusted") as err:
        source_sync(source=untrusted)
    assert err.value.permanent
    untrusted.refresh_from_db()
    assert untrusted.status == "needs_attention"


def test_idle_does_not_miss_mail_that_arrived_between_two_waits(workspace, dovecot, mailbox):
    user, password, client = mailbox
    client.append("INBOX", eml("reply_chain__1"))
    source = imap_source(workspace, dovecot, user, password)
    source_sync(source=source)
    client.append("INBOX", eml("reply_chain__3"))  # nobody is listening yet
    out = io.StringIO()
    call_command("mesh_imap_idle", str(source.pk), "--workspace", workspace.slug, "--once", "--max-seconds", "20",
                 "--json", stdout=out, stderr=io.StringIO())
    assert json.loads(out.getvalue())["triggered"] == 1
    assert Activity.objects.filter(source=source).count() == 2
