"""Mailbox imports (mbox, a folder of .eml files, a Google Takeout archive) through the shared
email normalizer: the conformance kit, plus the file shapes and the `mesh_import mbox` command."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

from django.core.management import call_command

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
