"""Mailbox imports (mbox, a folder of .eml files, a Google Takeout archive) through the shared
email normalizer: the conformance kit, plus the file shapes and the `mesh_import mbox` command."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from connectors.testing import ConnectorConformance, draft_dict
from streams.models import Activity, Contact, Identity, ImportFailure, Source

FIXTURES = Path(__file__).parent / "fixtures" / "email"
CONFORMANCE = ["reply_chain__1", "reply_chain__2", "not_an_email", "mailing_list", "reply_chain__3",
               "newsletter__html_only_tracking", "reply_chain__4"]


def mbox_bytes(names, *, from_line=b"From sender@example.com Mon May  4 10:00:00 2026\n") -> bytes:
    out = b""
    for name in names:
        data = (FIXTURES / f"{name}.eml").read_bytes().replace(b"\r\n", b"\n")
        lines = [b">" + line if line.startswith((b"From ", b">From ")) else line for line in data.split(b"\n")]
        out += from_line + b"\n".join(lines).rstrip(b"\n") + b"\n\n"
    return out


def run_import(workspace, path) -> dict:
    out = io.StringIO()
    call_command("mesh_import", "mbox", str(path), "--workspace", workspace.slug, "--json", stdout=out)
    return json.loads(out.getvalue())


class TestMboxConformance(ConnectorConformance):
    connector_key = "mbox"
    bad_external_ids = {"mail.mbox#3"}
    expected_drafts = {
        "mail.mbox#2": draft_dict(
            channel="email", verb="send", direction="out", occurred_at="2026-05-20T12:00:00+00:00",
            dedup_key="email:chain-2@mesh.example", subject="Re: Contract renewal",
            text="Message 2 of the chain.\n\nOn Mon, 19 May 2026, Ana Souza <ana@example.com> wrote:\n"
                 "> earlier message 1\n> more\n",
            thread_key="email:chain-1@example.com",
            participants=[
                {"role": "from", "kind": "email", "value": "me@mesh.example", "display": "Me"},
                {"role": "to", "kind": "email", "value": "ana@example.com", "display": "Ana Souza"},
            ],
            extra={"message_id": "chain-2@mesh.example", "snippet": "Message 2 of the chain.",
                   "thread_subject": "Contract renewal", "size": 380, "in_reply_to": "chain-1@example.com",
                   "references": ["chain-1@example.com"]},
        ),
        "mail.mbox#4": draft_dict(
            channel="email", verb="receive", direction="in", occurred_at="2026-05-14T16:00:00+00:00",
            dedup_key="email:list-1@example.cz", subject="[dev] Release 2.0 plan",
            text="Proposed dates for 2.0 are below.\n", thread_key="email:list-1@example.cz", automated=True,
            participants=[
                {"role": "from", "kind": "email", "value": "hana@example.cz", "display": "Hana Novak"},
                {"role": "sender", "kind": "email", "value": "dev-bounces@lists.example.org", "display": ""},
                {"role": "reply_to", "kind": "email", "value": "dev@lists.example.org", "display": ""},
                {"role": "to", "kind": "email", "value": "dev@lists.example.org", "display": ""},
            ],
            extra={"message_id": "list-1@example.cz", "snippet": "Proposed dates for 2.0 are below.",
                   "thread_subject": "Release 2.0 plan", "size": 384, "list_id": "Developers <dev.lists.example.org>",
                   "automated_reasons": ["precedence: list", "list-id", "list-unsubscribe"]},
        ),
    }

    def make_source(self, workspace, tmp_path):
        from streams.services import source_create

        path = tmp_path / "mail.mbox"
        path.write_bytes(mbox_bytes(CONFORMANCE))
        return source_create(workspace=workspace, connector="mbox", name="mbox file",
                             config={"path": str(path), "batch_size": "2", "aliases": "me@mesh.example"})


def test_mbox_import_is_idempotent_and_lists_the_bad_message(workspace, tmp_path):
    path = tmp_path / "all.mbox"
    path.write_bytes(mbox_bytes(CONFORMANCE))
    first = run_import(workspace, path)
    assert first == {"fetched": 7, "new": 6, "duplicate": 0, "failed": 1}
    assert run_import(workspace, path) == {"fetched": 7, "new": 0, "duplicate": 6, "failed": 1}
    source = Source.objects.get(workspace=workspace, name="mbox import")
    failure = ImportFailure.objects.get(source=source)
    assert failure.external_id == "all.mbox#3" and "not an email" in failure.reason
    assert failure.payload["rfc822_zb64"]  # the raw bytes are kept with the failure
    out = io.StringIO()
    call_command("mesh_source", "show", str(source.pk), "--workspace", workspace.slug, "--json", stdout=out)
    shown = json.loads(out.getvalue())
    assert [f["external_id"] for f in shown["failures"]] == ["all.mbox#3"]


def test_mboxrd_from_quoting_is_undone_and_from_lines_in_bodies_do_not_split(workspace, tmp_path):
    msg = (FIXTURES / "reply_chain__1.eml").read_bytes().replace(b"\r\n", b"\n")
    msg = msg.rstrip(b"\n") + b"\nFrom here on, this is body text.\n>From quoted too.\n"
    path = tmp_path / "q.mbox"
    path.write_bytes(b"From a@b.c Mon May  4 10:00:00 2026\n" + msg.replace(b"\nFrom here", b"\n>From here")
                     .replace(b"\n>From quoted", b"\n>>From quoted") + b"\n")
    assert run_import(workspace, path)["new"] == 1
    text = Activity.objects.get(dedup_key="email:chain-1@example.com").text
    assert "From here on, this is body text.\n>From quoted too." in text


def test_folder_of_eml_files_and_takeout_zip_give_the_same_activities(workspace, tmp_path):
    folder = tmp_path / "eml"
    folder.mkdir()
    for name in ("reply_chain__1", "calendar_invite", "missing_date"):
        (folder / f"{name}.eml").write_bytes((FIXTURES / f"{name}.eml").read_bytes())
    assert run_import(workspace, folder) == {"fetched": 3, "new": 3, "duplicate": 0, "failed": 0}

    takeout = tmp_path / "takeout-20260601.zip"
    labeled = mbox_bytes(["reply_chain__1", "calendar_invite", "missing_date", "reply_chain__2"],
                         from_line=b"From 1790345678901234567@xxx Mon May 04 10:00:00 +0000 2026\n")
    labeled = labeled.replace(b"Message-ID: <chain-2@", b"X-Gmail-Labels: Sent,Important\nMessage-ID: <chain-2@")
    with zipfile.ZipFile(takeout, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Takeout/Mail/All mail Including Spam and Trash.mbox", labeled)
        zf.writestr("Takeout/archive_browser.html", "<html></html>")
    assert run_import(workspace, takeout) == {"fetched": 4, "new": 1, "duplicate": 3, "failed": 0}
    assert Activity.objects.get(dedup_key="email:chain-2@mesh.example").extra["labels"] == ["Sent", "Important"]

    tgz = tmp_path / "takeout.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        info = tarfile.TarInfo("Takeout/Mail/Inbox.mbox")
        info.size = len(labeled)
        tf.addfile(info, io.BytesIO(labeled))
    assert run_import(workspace, tgz) == {"fetched": 4, "new": 0, "duplicate": 4, "failed": 0}


def test_mbox_from_line_date_is_the_fallback_for_a_dateless_message(workspace, tmp_path):
    data = (FIXTURES / "missing_message_id.eml").read_bytes().replace(b"Date: Sat, 09 May 2026 12:00:00 +0000\r\n", b"")
    path = tmp_path / "nodate.mbox"
    path.write_bytes(b"From dmitri@example.net Tue May 12 08:09:10 2026\n" + data.replace(b"\r\n", b"\n"))
    assert run_import(workspace, path)["new"] == 1
    activity = Activity.objects.get(workspace=workspace)
    assert activity.occurred_at.isoformat() == "2026-05-12T08:09:10+00:00"
    assert activity.extra["date_source"] == "mbox"


def test_automated_mail_creates_no_contacts_unless_the_workspace_opts_in(workspace, tmp_path):
    path = tmp_path / "auto.mbox"
    path.write_bytes(mbox_bytes(["newsletter__html_only_tracking", "bounce__dsn", "mailing_list"]))
    assert run_import(workspace, path)["new"] == 3
    assert all(Activity.objects.filter(workspace=workspace).values_list("automated", flat=True))
    assert not Contact.objects.filter(workspace=workspace, is_self=False).exists()
    assert Identity.objects.filter(workspace=workspace, value="no-reply@news.example.com", contact=None).exists()

    workspace.create_contacts_for_automated = True
    workspace.save()
    other = tmp_path / "auto2.mbox"
    other.write_bytes(mbox_bytes(["auto_reply__out_of_office"]))
    run_import(workspace, other)
    assert Contact.objects.filter(workspace=workspace, identities__value="ben.okafor@example.org").exists()


def test_a_lone_eml_without_any_header_imports_at_the_files_time_with_the_gap_recorded(workspace, tmp_path):
    path = tmp_path / "note.eml"
    path.write_bytes((FIXTURES / "headerless__body_only.eml").read_bytes())
    os.utime(path, (1778580000, 1778580000))  # 2026-05-12T10:00:00Z
    assert run_import(workspace, path) == {"fetched": 1, "new": 1, "duplicate": 0, "failed": 0}
    activity = Activity.objects.get(workspace=workspace)
    assert activity.occurred_at.isoformat() == "2026-05-12T10:00:00+00:00"
    assert activity.extra["date_source"] == "file"
    assert activity.extra["missing_headers"] == ["from", "to", "date", "subject", "message-id"]
    assert activity.text.startswith("Call the plumber") and not activity.participants.exists()


def test_a_headerless_eml_inside_a_zip_imports_at_the_members_time(workspace, tmp_path):
    path = tmp_path / "takeout.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        member = zipfile.ZipInfo("Takeout/Mail/note.eml", date_time=(2026, 5, 12, 10, 0, 0))
        zf.writestr(member, (FIXTURES / "headerless__body_only.eml").read_bytes())
    assert run_import(workspace, path) == {"fetched": 1, "new": 1, "duplicate": 0, "failed": 0}
    activity = Activity.objects.get(workspace=workspace)
    assert activity.occurred_at.isoformat() == "2026-05-12T10:00:00+00:00"
    assert activity.extra["date_source"] == "file"


def test_copies_of_a_message_without_message_id_in_mbox_and_eml_are_one_activity(workspace, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    for name in ("no_message_id__copy_imap.eml", "no_message_id__copy_saved.eml", "no_message_id__copy.mbox"):
        (folder / name).write_bytes((FIXTURES / name).read_bytes())
    assert run_import(workspace, folder) == {"fetched": 3, "new": 1, "duplicate": 2, "failed": 0}


def _legacy_dedup_key(message_id, hdr, subject, date_header, data):
    """The key as it was before content digests: headers only."""
    import hashlib

    from connectors.email_common.headers import decode_header, one_line

    if message_id:
        return f"email:{message_id}"
    parts = [one_line(decode_header(v)) for name in ("from", "to", "cc", "in-reply-to", "references")
             for v in hdr.get(name, [])]
    parts += [subject, one_line(date_header)]
    return "email:hash:" + hashlib.sha256("\n".join(parts).encode("utf-8", "replace")).hexdigest()[:48]


def test_mail_stored_under_header_only_keys_is_not_imported_again_after_the_upgrade(workspace, tmp_path, monkeypatch):
    import importlib

    from connectors.email_common import normalize

    path = tmp_path / "scripts.mbox"
    path.write_bytes(mbox_bytes(["no_message_id__script_a", "no_message_id__script_b", "missing_message_id",
                                 "headerless__body_only", "reply_chain__1"]))
    monkeypatch.setattr(normalize, "_dedup_key", _legacy_dedup_key)
    # Before: the two script messages had one key, and the second was counted a duplicate.
    assert run_import(workspace, path) == {"fetched": 5, "new": 4, "duplicate": 1, "failed": 0}
    legacy = set(Activity.objects.filter(workspace=workspace, dedup_key__startswith="email:hash:")
                 .values_list("dedup_key", flat=True))
    assert len(legacy) == 3
    monkeypatch.undo()

    migration = importlib.import_module("streams.migrations.0012_email_content_dedup_keys")
    assert migration.email_keys_rekey(Activity) == 3
    assert migration.email_keys_rekey(Activity) == 0  # a second run changes nothing
    assert not Activity.objects.filter(workspace=workspace, dedup_key__startswith="email:hash:").exists()
    # The same mailbox read again: nothing twice; the message the old key swallowed arrives.
    assert run_import(workspace, path) == {"fetched": 5, "new": 1, "duplicate": 4, "failed": 0}
    assert Activity.objects.filter(workspace=workspace, subject="disk usage").count() == 2
    assert run_import(workspace, path) == {"fetched": 5, "new": 0, "duplicate": 5, "failed": 0}


def test_a_file_that_is_not_an_mbox_fails_plainly_and_stores_nothing(workspace, tmp_path):
    random_bytes = tmp_path / "random.mbox"
    random_bytes.write_bytes(bytes(range(256)) * 64)
    sms_backup = tmp_path / "sms-20260501.xml"
    sms_backup.write_bytes(b"<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>\n<smses count=\"1\">\n"
                           b"<sms address=\"+14155550100\" date=\"1777628400000\" type=\"1\" body=\"hi\" /></smses>\n")
    for path, reason in ((random_bytes, "binary data"), (sms_backup, "it starts with \"<?xml version=")):
        err = io.StringIO()
        with pytest.raises((SystemExit, CommandError)) as failed:  # the command exits 1
            call_command("mesh_import", "mbox", str(path), "--workspace", workspace.slug, "--json",
                         stdout=io.StringIO(), stderr=err)
        assert getattr(failed.value, "code", 1) == 1
        assert f"{path} is not an mbox file: {reason}" in str(failed.value) + err.getvalue()
    assert not Activity.objects.filter(workspace=workspace).exists()
    assert not ImportFailure.objects.filter(source__workspace=workspace).exists()


def test_a_folder_takes_only_mail_files_and_counts_the_skipped_ones(workspace, tmp_path):
    folder = tmp_path / "mail"
    (folder / "Maildir" / "cur").mkdir(parents=True)
    (folder / "one.eml").write_bytes((FIXTURES / "reply_chain__1.eml").read_bytes())
    (folder / "two.mbox").write_bytes(mbox_bytes(["reply_chain__2"]))
    (folder / "Inbox").write_bytes(mbox_bytes(["reply_chain__3"]))  # Thunderbird: an mbox without a suffix
    (folder / "Maildir" / "cur" / "1778580000.M1P2.host:2,S").write_bytes((FIXTURES / "reply_chain__4.eml").read_bytes())
    (folder / "photo.png").write_bytes((FIXTURES / "not_an_email.eml").read_bytes())
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (folder / "labels.json").write_bytes(b'{"From": "someone"}\n')
    (folder / "notes.txt").write_bytes(b"Note: call Ana\n\nabout the contract\n")  # headers, but not in a Maildir
    assert run_import(workspace, folder) == {"fetched": 4, "new": 4, "duplicate": 0, "failed": 0}
    source = Source.objects.get(workspace=workspace, name="mbox import")
    assert source.cursor["skipped"] == {"count": 4, "names": [".DS_Store", "labels.json", "notes.txt", "photo.png"]}
    assert not ImportFailure.objects.filter(source=source).exists()


def test_a_zip_bomb_member_is_not_read_and_the_rest_of_the_archive_imports(workspace, tmp_path):
    takeout = tmp_path / "takeout.zip"
    with zipfile.ZipFile(takeout, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Takeout/Mail/Inbox.mbox", mbox_bytes(["reply_chain__1"]))
        with zf.open("Takeout/Mail/Bomb.mbox", "w") as member:
            member.write(b"From a@b.c Mon May  4 10:00:00 2026\nSubject: x\n\n")
            zeros = bytes(1024 * 1024)
            for _ in range(80):
                member.write(zeros)
    assert takeout.stat().st_size < 200_000
    assert run_import(workspace, takeout) == {"fetched": 2, "new": 1, "duplicate": 0, "failed": 1}
    failure = ImportFailure.objects.get(source__workspace=workspace)
    assert failure.external_id == "Takeout/Mail/Bomb.mbox"
    assert "more than 200 times: not read (a compression bomb?)" in failure.reason


READ_ONE_LINE_ZIP = """
import resource, sys
sys.path.insert(0, {root!r})
from connectors.base import BadItem
from connectors.mbox import connector as mbox

mbox.MAX_RATIO = 10**9  # let the member through: what is measured is the line reader
reader = mbox.MboxConnector({{"path": {path!r}}})
outcomes = []
for batch in reader.fetch(None):
    for item in batch.items:
        try:
            outcomes.append(reader.normalize(item).subject)
        except BadItem as exc:
            outcomes.append("failed: " + exc.reason)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(repr((outcomes, peak_kb)))
"""


def test_one_enormous_line_in_an_archive_is_read_in_bounded_memory(tmp_path):
    import ast
    import subprocess
    import sys

    path = tmp_path / "takeout.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("Takeout/Mail/All.mbox", "w") as member:
        member.write(b"From a@b.c Mon May  4 10:00:00 2026\nFrom: a@b.c\nSubject: huge\n\n")
        chunk = b"A" * (1024 * 1024)
        for _ in range(400):  # one 400 MB line: ~400 KB compressed
            member.write(chunk)
        member.write(b"\n\n" + mbox_bytes(["reply_chain__1"]))
    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-c", READ_ONE_LINE_ZIP.format(root=root, path=str(path))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    outcomes, peak_kb = ast.literal_eval(done.stdout.strip())
    assert outcomes == ["failed: message larger than 52428800 bytes", "Contract renewal"]
    assert peak_kb < 300 * 1024, f"peak RSS {peak_kb // 1024} MB"


def test_a_tar_archive_that_expands_like_a_bomb_is_refused_before_it_is_read(workspace, tmp_path):
    class Zeros(io.RawIOBase):
        def __init__(self, size):
            self.left = size

        def readinto(self, buffer):
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    path = tmp_path / "takeout.tgz"
    size = 72 * 1024 * 1024  # over the 64 MB below which any ratio is allowed
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("Takeout/Mail/Inbox.mbox")
        info.size = size
        tf.addfile(info, Zeros(size))
    err = io.StringIO()
    with pytest.raises((SystemExit, CommandError)) as failed:
        call_command("mesh_import", "mbox", str(path), "--workspace", workspace.slug, "--json",
                     stdout=io.StringIO(), stderr=err)
    assert "more than 200 times: not read (a compression bomb?)" in str(failed.value) + err.getvalue()
    assert not Activity.objects.filter(workspace=workspace).exists()


def test_an_mbox_whose_first_message_carries_raw_binary_bytes_is_still_an_mbox(workspace, tmp_path):
    path = tmp_path / "binary-first.mbox"
    path.write_bytes(b"From a@b.c Mon May  4 10:00:00 2026\nFrom: Ana <ana@example.com>\nTo: me@mesh.example\n"
                     b"Subject: raw bytes\nMessage-ID: <raw-1@example.com>\nDate: Mon, 04 May 2026 10:00:00 +0000\n"
                     b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n"
                     + bytes(range(256)) * 8 + b"\n\n" + mbox_bytes(["reply_chain__1"]))
    assert run_import(workspace, path) == {"fetched": 2, "new": 2, "duplicate": 0, "failed": 0}
