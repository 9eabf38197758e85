"""Android "SMS Backup & Restore" imports: conformance, group MMS, emoji written as UTF-16
surrogate references, a malformed element and a broken file, bounded memory, and how a
backup joins up with Twilio (numbers and SIDs)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from django.core.management import call_command

from connectors.testing import ConnectorConformance, draft_dict

FIXTURES = Path(__file__).parent / "fixtures" / "sms_backup"
MIXED = FIXTURES / "backup__mixed.xml"


def items_of(path: Path, **config):
    from connectors.sms_backup.connector import SmsBackupConnector

    connector = SmsBackupConnector({"path": str(path), **config}, {}, context={"region": "US"})
    return connector, [i for batch in connector.fetch(None) for i in batch.items]


class TestSmsBackupConformance(ConnectorConformance):
    connector_key = "sms_backup"
    bad_external_ids = {"element-6"}

    def make_source(self, workspace, tmp_path):
        from streams.services import source_create

        connector, items = items_of(MIXED)
        ids = [i.external_id for i in items]
        assert len(ids) == 8
        type(self).expected_drafts = {
            ids[0]: draft_dict(
                channel="sms", verb="receive", direction="in", occurred_at="2026-05-01T09:00:00+00:00",
                dedup_key=f"smsbackup:{ids[0]}", text="Running 10 min late 🙂 sorry!",
                thread_key="sms:+14155550100",
                participants=[{"role": "from", "kind": "phone", "value": "4155550100", "display": "Ana Souza"}],
                extra={"origin": "sms_backup",
                       "delivery": {"state": "received", "error_code": None, "updated_at": "2026-05-01T09:00:00+00:00"}},
            ),
            ids[3]: draft_dict(
                channel="sms", verb="receive", direction="in", occurred_at="2026-05-01T09:20:00+00:00",
                dedup_key=f"smsbackup:{ids[3]}", text="Who's bringing the projector? 📍",
                thread_key="sms:+14155550102,+14155550103",
                participants=[
                    {"role": "from", "kind": "phone", "value": "4155550102", "display": "Chloé Martin"},
                    {"role": "to", "kind": "phone", "value": "4155550103", "display": "Dmitri Ivanov"},
                ],
                attachments=[{"mediaType": "image/jpeg", "name": "IMG_0412.jpg", "size": 90}],
                extra={"origin": "sms_backup", "group": True,
                       "delivery": {"state": "received", "error_code": None, "updated_at": "2026-05-01T09:20:00+00:00"}},
            ),
            ids[6]: draft_dict(
                channel="sms", verb="send", direction="out", occurred_at="2026-05-01T09:33:20+00:00",
                dedup_key="sms:SM1f0e8ee3c7d2b5c6a3f4e5d6c7b8a901",
                text="Same message as Twilio's: the backup carries its SID", thread_key="sms:+14155550199",
                participants=[{"role": "to", "kind": "phone", "value": "+14155550199", "display": "Support line"}],
                extra={"origin": "sms_backup",
                       "delivery": {"state": "sent", "error_code": None, "updated_at": "2026-05-01T09:33:20+00:00"}},
            ),
        }
        return source_create(workspace=workspace, connector="sms_backup", name="Phone backup",
                             config={"path": str(MIXED), "batch_size": "3", "numbers": "+14155550199"})


def test_group_mms_keeps_every_other_participant_and_not_the_owners_own_number(workspace):
    from streams.models import Activity
    from streams.services import source_create, source_sync

    source = source_create(workspace=workspace, connector="sms_backup", name="b",
                           config={"path": str(MIXED), "numbers": "+14155550199"})
    source_sync(source=source)
    sent = Activity.objects.get(text="Projector is on me.")
    assert sent.direction == "out" and sent.extra["group"] is True
    parts = sorted((p.role, p.identity.value) for p in sent.participants.select_related("identity"))
    assert parts == [("to", "+14155550102"), ("to", "+14155550103")]
    received = Activity.objects.get(text__startswith="Who's bringing")
    assert sorted(p.identity.value for p in received.participants.select_related("identity")) == [
        "+14155550102", "+14155550103"]
    assert received.attachments == [{"mediaType": "image/jpeg", "name": "IMG_0412.jpg", "size": 90}]
    # Short codes stay identities of their own; a failed send keeps its state.
    assert Activity.objects.get(text="Your code is 123456").participants.get().identity.value == "72345"
    failed = Activity.objects.get(extra__delivery__state="failed")
    assert failed.direction == "out" and failed.text == ""


def test_mesh_import_sms_backup_reports_counts_and_a_malformed_element_becomes_an_import_failure(workspace, capsys):
    from streams.models import Activity, ImportFailure

    call_command("mesh_import", "sms_backup", str(MIXED), "--workspace", workspace.slug, "--json")
    counts = json.loads(capsys.readouterr().out)
    assert counts == {"fetched": 8, "new": 7, "duplicate": 0, "failed": 1}
    failure = ImportFailure.objects.get()
    assert failure.external_id == "element-6" and "epoch milliseconds" in failure.reason
    assert failure.payload["body"] == "This element is malformed"
    call_command("mesh_import", "sms_backup", str(MIXED), "--workspace", workspace.slug, "--json")
    again = json.loads(capsys.readouterr().out)
    assert again == {"fetched": 8, "new": 0, "duplicate": 7, "failed": 1}
    assert Activity.objects.count() == 7


def test_a_truncated_file_imports_what_came_before_the_break_and_records_the_break(workspace):
    from streams.models import Activity, ImportFailure
    from streams.services import source_create, source_sync

    source = source_create(workspace=workspace, connector="sms_backup", name="b",
                           config={"path": str(FIXTURES / "backup__truncated.xml")})
    run = source_sync(source=source)
    assert (run.new, run.failed) == (2, 1)
    assert sorted(Activity.objects.values_list("text", flat=True)) == ["first", "second"]
    assert "XML error" in ImportFailure.objects.get().reason


def test_one_person_by_twilio_and_by_backup_is_one_contact(workspace, client, django_capture_on_commit_callbacks):
    from streams.models import Contact
    from streams.services import source_create, source_sync
    from tests.fakes.twilio import ACCOUNT, TOKEN, fixture, post_signed

    twilio = source_create(workspace=workspace, connector="twilio_sms", name="Support",
                           config={"account_sid": ACCOUNT, "numbers": "+14155550199"}, secrets={"auth_token": TOKEN})
    with django_capture_on_commit_callbacks(execute=True):
        params = {**fixture("inbound__sms"), "From": "+1 (415) 555-0100"}
        assert post_signed(client, f"/hooks/twilio/{twilio.pk}/sms", params).status_code == 200
    backup = source_create(workspace=workspace, connector="sms_backup", name="b", config={"path": str(MIXED)})
    source_sync(source=backup)
    ana = Contact.objects.get(identities__value="+14155550100")
    assert ana.activity_count == 2  # the webhook's text and the backup's
    assert set(ana.identities.values_list("value", flat=True)) == {"+14155550100"}


def test_a_backup_message_carrying_the_twilio_sid_is_the_same_activity(workspace, client, django_capture_on_commit_callbacks):
    from streams.models import Activity
    from streams.services import source_create, source_sync
    from tests.fakes.twilio import ACCOUNT, TOKEN, fixture, post_signed

    twilio = source_create(workspace=workspace, connector="twilio_sms", name="Support",
                           config={"account_sid": ACCOUNT, "numbers": "+14155550199"}, secrets={"auth_token": TOKEN})
    with django_capture_on_commit_callbacks(execute=True):
        post_signed(client, f"/hooks/twilio/{twilio.pk}/sms", fixture("inbound__sms"))
    backup = source_create(workspace=workspace, connector="sms_backup", name="b", config={"path": str(MIXED)})
    run = source_sync(source=backup)
    assert run.duplicate == 1
    one = Activity.objects.get(dedup_key="sms:SM1f0e8ee3c7d2b5c6a3f4e5d6c7b8a901")
    assert one.connector == "twilio_sms"
    # Without a SID nothing is merged by guesswork: backup messages are marked as such.
    assert set(Activity.objects.filter(connector="sms_backup").values_list("extra__origin", flat=True)) == {"sms_backup"}


def test_a_big_export_streams_in_bounded_memory(tmp_path):
    path = tmp_path / "big.xml"
    body = "x" * 1000
    with path.open("w") as fh:
        fh.write("<?xml version='1.0' encoding='UTF-8'?>\n<smses count='10000'>\n")
        for i in range(10000):
            fh.write(f'<sms address="41555501{i % 100:02d}" date="{1777626000000 + i * 1000}" type="{1 + i % 2}" '
                     f'body="{body} {i} &#55357;&#56832;" contact_name="P{i % 100}" />\n')
        fh.write("</smses>\n")
    assert path.stat().st_size > 10_000_000
    from connectors.sms_backup.connector import SmsBackupConnector

    list(items_of(MIXED)[0].fetch(None))  # warm up: phone metadata and parser load once
    # Memory is bounded by one batch (kept small here) plus the parser's read buffer.
    connector = SmsBackupConnector({"path": str(path), "batch_size": 200}, {}, context={"region": "US"})
    tracemalloc.start()
    count = 0
    for batch in connector.fetch(None):
        count += len(batch.items)
        del batch
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 10000
    assert peak < 4_000_000, f"peak {peak} bytes: the file is not being streamed"


@pytest.mark.parametrize("chunk", [1, 5, 9, 17, 4096])
def test_surrogate_pairs_split_across_read_chunks_are_joined(chunk):
    import io
    import xml.etree.ElementTree as ET

    from connectors.sms_backup.connector import SurrogateFixer

    doc = b'<smses>' + b'<sms body="a &#55357;&#56832; b &#xD83D;&#xDE00; lone &#56832; ctl &#1; &amp;" />' * 20 + b'</smses>'
    bodies = {e.get("body") for _, e in ET.iterparse(SurrogateFixer(io.BytesIO(doc), chunk=chunk)) if e.tag == "sms"}
    assert bodies == {"a 😀 b 😀 lone \ufffd ctl \ufffd &"}


# -- files that are not what they are declared to be ------------------------------------------------


def refused(workspace, path: Path) -> str:
    """mesh_import sms_backup on a file it must refuse: the message (exit status 1)."""
    import io

    from django.core.management.base import CommandError

    out = io.StringIO()
    with pytest.raises((SystemExit, CommandError)) as failure:
        call_command("mesh_import", "sms_backup", str(path), "--workspace", workspace.slug, "--json",
                     stdout=out, stderr=io.StringIO())
    if isinstance(failure.value, SystemExit):
        assert failure.value.code == 1
        return json.loads(out.getvalue())["error"]
    return str(failure.value)


def connector_error_of(path: Path):
    from connectors.base import ConnectorError

    with pytest.raises(ConnectorError) as failure:
        items_of(path)
    assert failure.value.permanent
    return failure.value


def test_an_mbox_given_as_an_sms_backup_is_refused_plainly(workspace):
    path = FIXTURES / "not_a_backup__mbox.mbox"
    assert connector_error_of(path).message.startswith("not_a_backup__mbox.mbox is not an SMS Backup & Restore file: ")
    assert refused(workspace, path).startswith("not_a_backup__mbox.mbox is not an SMS Backup & Restore file: ")


def test_an_x_archive_given_as_an_sms_backup_is_refused_plainly(workspace, tmp_path):
    from connectors.twitter_archive import writer

    path = writer.write_archive(tmp_path / "twitter-2024.zip", account=writer.account("4000000001", "mesh_owner"))
    assert refused(workspace, path).startswith("twitter-2024.zip is not an SMS Backup & Restore file: ")


def test_random_bytes_and_an_empty_file_are_refused_plainly(tmp_path):
    noise = tmp_path / "noise.xml"
    noise.write_bytes(bytes(range(256)) * 8)
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    for path in (noise, empty):
        assert connector_error_of(path).message.startswith(f"{path.name} is not an SMS Backup & Restore file: ")


def test_a_call_log_from_the_same_app_is_not_an_sms_backup():
    error = connector_error_of(FIXTURES / "not_a_backup__call_log.xml")
    assert "its root element is <calls>, not <smses>" in error.message


def test_entity_expansion_is_refused_before_anything_expands():
    error = connector_error_of(FIXTURES / "backup__entity_expansion.xml")
    assert "declares XML entities" in error.message


def test_a_backup_with_several_bad_items_imports_every_good_one(workspace):
    from streams.models import Activity, ImportFailure
    from streams.services import source_create, source_sync

    source = source_create(workspace=workspace, connector="sms_backup", name="b",
                           config={"path": str(FIXTURES / "backup__several_bad_items.xml")})
    run = source_sync(source=source)
    assert (run.fetched, run.new, run.failed) == (6, 2, 4)
    assert sorted(Activity.objects.values_list("text", flat=True)) == ["first good", "last good"]
    reasons = sorted(ImportFailure.objects.values_list("reason", flat=True))
    assert [r.split(":")[0].split(" '")[0] for r in reasons] == [
        "date is not epoch milliseconds", "sms without address", "unknown mms msg_box", "unknown sms type"]
