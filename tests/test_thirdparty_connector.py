"""A third-party connector, installed as its own distribution, is found through the
``mesh.connectors`` entry points and synced with no change to Mesh; it passes the same
conformance kit as the built-in ones. It also takes a webhook (its URLconf mounted by the site
from the registry at ``/hooks/notes/``) and sends (``Connector.send``, called by
``message_send``), again with no change to Mesh."""

from __future__ import annotations

import io
import json
import sys
import textwrap

import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import clear_url_caches, reverse

from connectors.base import registry
from connectors.testing import ConnectorConformance, draft_dict

PACKAGE = '''
"""mesh-notes: a toy third-party connector that reads notes from a JSON file, takes new ones
by webhook (POST /hooks/notes/<source>/note, this module is its URLconf) and "sends" a note to
someone."""
import datetime as dt
import json
from dataclasses import dataclass

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from connectors.base import ActivityDraft, Batch, BadItem, Connector, ParticipantDraft, RawItem
from streams.services import inbound_store, webhook_source


@dataclass(frozen=True)
class NotesConfig:
    path: str
    per_batch: int = 2

    def __post_init__(self):
        object.__setattr__(self, "per_batch", int(self.per_batch))


class NotesConnector(Connector):
    key = "notes"
    label = "Notes file"
    channel = "note"
    Config = NotesConfig
    pollable = True
    urls = "mesh_notes"
    send_to_kind = "email"
    sent = []  # what the outside world received

    def send(self, *, to, body, sender=None):
        note = {"id": f"sent-{len(self.sent) + 1}", "at": dt.datetime.now(dt.UTC).isoformat(), "text": body,
                "about": [to], "role": "to"}
        self.sent.append(note)
        return RawItem(note["id"], note)

    def fetch(self, cursor, *, since=None):
        notes = json.load(open(self.config.path))
        start = (cursor or {}).get("index", 0)
        for i in range(start, len(notes), self.config.per_batch):
            chunk = notes[i : i + self.config.per_batch]
            yield Batch([RawItem(str(n.get("id", f"row-{i + k}")), n) for k, n in enumerate(chunk)],
                        {"index": i + len(chunk)})

    def normalize(self, raw):
        note = raw.payload
        if "at" not in note:
            raise BadItem("note has no 'at' time")
        return ActivityDraft(
            channel="note", verb="post", direction="out",
            occurred_at=dt.datetime.fromisoformat(note["at"]),
            dedup_key=f"notes:{note['id']}", text=note.get("text", ""),
            participants=[ParticipantDraft(note.get("role", "mention"), "email", a) for a in note.get("about", [])],
        )


@csrf_exempt
def note_hook(request, source_id):
    source = webhook_source(source_id=source_id, connector="notes")
    if source is None:
        return HttpResponse(status=404)
    note = json.loads(request.body)
    inbound_store(workspace=source.workspace, connector="notes", source=source, items=[RawItem(note["id"], note)])
    return HttpResponse(status=202)


urlpatterns = [path("<int:source_id>/note", note_hook, name="notes-hook")]
'''

NOTES = [
    {"id": "n1", "at": "2026-03-01T09:00:00+00:00", "text": "Met Ana", "about": ["Ana@Example.com"]},
    {"id": "n2", "at": "2026-03-02T09:00:00+00:00", "text": "Ben called back", "about": ["ben@example.org"]},
    {"id": "n3", "text": "no time on this one"},
    {"id": "n4", "at": "2026-03-04T09:00:00+00:00", "text": "Renewal signed"},
    {"id": "n5", "at": "2026-03-05T09:00:00+00:00", "text": "Lunch", "about": ["ana@example.com", "ben@example.org"]},
]


@pytest.fixture
def notes_package(tmp_path_factory, monkeypatch):
    """Install the package the way pip would leave it: the module plus a .dist-info folder with
    its entry points, on sys.path. Its own pyproject.toml is written too, for the record."""
    root = tmp_path_factory.mktemp("mesh_notes_dist")
    (root / "mesh_notes.py").write_text(PACKAGE)
    (root / "pyproject.toml").write_text(textwrap.dedent("""
        [project]
        name = "mesh-notes"
        version = "0.1.0"
        [project.entry-points."mesh.connectors"]
        notes = "mesh_notes:NotesConnector"
    """))
    info = root / "mesh_notes-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mesh-notes\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[mesh.connectors]\nnotes = mesh_notes:NotesConnector\n")
    monkeypatch.syspath_prepend(str(root))
    registry.refresh()
    _restart_urls()
    yield root
    monkeypatch.delitem(sys.modules, "mesh_notes", raising=False)
    registry.refresh()
    _restart_urls()


def _restart_urls():
    """The site's URLconf as a fresh start builds it: from the connectors installed now."""
    sys.modules.pop(settings.ROOT_URLCONF, None)
    clear_url_caches()


def test_third_party_connector_is_found_and_synced_from_the_cli(notes_package, workspace, tmp_path):
    assert "notes" in registry.keys() and "device" in registry.keys()
    path = tmp_path / "notes.json"
    path.write_text(json.dumps(NOTES))
    out = io.StringIO()
    call_command("mesh_source", "add", "notes", "--name", "My notes", "--config", f"path={path}",
                 "--workspace", "acme", "--json", stdout=out)
    source_id = json.loads(out.getvalue())["id"]
    out = io.StringIO()
    call_command("mesh_sync", str(source_id), "--workspace", "acme", "--json", stdout=out, stderr=io.StringIO())
    assert json.loads(out.getvalue()) == {"fetched": 5, "new": 4, "duplicate": 0, "failed": 1}
    out = io.StringIO()
    call_command("mesh_contacts", "list", "--workspace", "acme", "--json", stdout=out)
    contacts = {tuple(c["identities"]): c["counts"] for c in json.loads(out.getvalue())}
    assert contacts == {("email:ana@example.com",): {"note": 2}, ("email:ben@example.org",): {"note": 2}}


def test_third_party_webhook_is_mounted_from_the_registry_and_its_send_is_recorded(
    notes_package, workspace, tmp_path, client, django_capture_on_commit_callbacks
):
    from streams.messaging import message_send
    from streams.models import Activity, Contact
    from streams.services import source_create

    source = source_create(workspace=workspace, connector="notes", name="notes",
                           config={"path": str(tmp_path / "none.json")})
    url = reverse("notes-hook", args=[source.pk])
    assert url == f"/hooks/notes/{source.pk}/note"
    note = {"id": "w1", "at": "2026-03-06T09:00:00+00:00", "text": "Ana called", "about": ["ana@example.com"]}
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, note, content_type="application/json").status_code == 202
    assert client.post(f"/hooks/notes/{source.pk + 1}/note", note, content_type="application/json").status_code == 404
    received = Activity.objects.get(dedup_key="notes:w1")
    assert (received.connector, received.source_id, received.text) == ("notes", source.pk, "Ana called")

    ana = Contact.objects.get(identities__value="ana@example.com")
    sent = message_send(workspace=workspace, contact=ana, body="Thanks for calling")
    outside = registry.get("notes").sent
    assert [(n["about"], n["text"]) for n in outside] == [(["ana@example.com"], "Thanks for calling")]
    assert (sent.connector, sent.source_id, sent.direction, sent.text) == ("notes", source.pk, "out", "Thanks for calling")
    assert sent.dedup_key == f"notes:{outside[0]['id']}"
    assert [(p.role, p.identity.value) for p in sent.participants.select_related("identity")] == [("to", "ana@example.com")]


def test_a_connector_whose_urls_cannot_be_imported_is_left_out_and_the_site_still_answers(
    notes_package, client, caplog, monkeypatch
):
    monkeypatch.setattr(registry.get("notes"), "urls", "mesh_notes_gone.urls")
    _restart_urls()
    assert client.get("/accounts/login/").status_code == 200
    assert client.post("/hooks/notes/1/note", {}).status_code == 404
    assert "cannot mount the URLs mesh_notes_gone.urls of connector notes" in caplog.text


class TestNotesConformance(ConnectorConformance):
    connector_key = "notes"
    bad_external_ids = {"n3"}
    expected_drafts = {
        "n1": draft_dict(
            channel="note", verb="post", direction="out", occurred_at="2026-03-01T09:00:00+00:00",
            dedup_key="notes:n1", text="Met Ana",
            participants=[{"role": "mention", "kind": "email", "value": "Ana@Example.com", "display": ""}],
        ),
        "n4": draft_dict(
            channel="note", verb="post", direction="out", occurred_at="2026-03-04T09:00:00+00:00",
            dedup_key="notes:n4", text="Renewal signed",
        ),
    }

    @pytest.fixture(autouse=True)
    def _installed(self, notes_package):
        yield

    def make_source(self, workspace, tmp_path):
        from streams.services import source_create

        path = tmp_path / "notes.json"
        path.write_text(json.dumps(NOTES))
        return source_create(workspace=workspace, connector="notes", name="notes", config={"path": str(path)})
