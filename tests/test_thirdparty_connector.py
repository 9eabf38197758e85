"""A third-party connector, installed as its own distribution, is found through the
``mesh.connectors`` entry points and synced with no change to Mesh; it passes the same
conformance kit as the built-in ones."""

from __future__ import annotations

import io
import json
import sys
import textwrap

import pytest
from django.core.management import call_command

from connectors.base import registry
from connectors.testing import ConnectorConformance, draft_dict

PACKAGE = '''
"""mesh-notes: a toy third-party connector that reads notes from a JSON file."""
import datetime as dt
import json
from dataclasses import dataclass

from connectors.base import ActivityDraft, Batch, BadItem, Connector, ParticipantDraft, RawItem


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
            participants=[ParticipantDraft("mention", "email", a) for a in note.get("about", [])],
        )
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
    yield root
    monkeypatch.delitem(sys.modules, "mesh_notes", raising=False)
    registry.refresh()


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
