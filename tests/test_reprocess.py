"""mesh_reprocess re-applies the current parser to stored raw items."""

from __future__ import annotations

import io
import json

from django.core.management import call_command

from connectors.device.connector import DeviceConnector
from streams.models import Activity, Contact, ImportFailure, TimelineEntry
from streams.services import source_create, source_sync
from streams.timelines import workspace_timelines_rebuild
from tests.factories import make_event


def reprocess(source) -> dict:
    out = io.StringIO()
    call_command("mesh_reprocess", "--source", str(source.pk), "--workspace", source.workspace.slug, "--json", stdout=out)
    return json.loads(out.getvalue())


def snapshot():
    return sorted(TimelineEntry.objects.values_list("kind", "owner_id", "activity_id", "occurred_at", "channel", "direction"))


def test_reprocess_applies_a_parser_change_once(workspace, device, tmp_path, monkeypatch):
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in [
        make_event("1", data={"text": "hello"}, participants=[{"kind": "phone", "value": "+14155550100", "role": "from"}]),
        make_event("2", type="battery", data={"battery": 50}),
    ]) + "\n{not json: stays a failure}\n")
    source = source_create(workspace=workspace, connector="device", name="s", config={"path": str(path), "device": device.pk})
    source_sync(source=source)
    assert reprocess(source) == {"reprocessed": 3, "changed": 0, "failed": 1}

    original = DeviceConnector.normalize

    def louder(self, raw):
        draft = original(self, raw)
        draft.text = draft.text.upper()
        if draft.verb == "call":
            draft.participants[0].value = "+14155550101"  # the parser now reads another field
        return draft

    monkeypatch.setattr(DeviceConnector, "normalize", louder)
    assert reprocess(source) == {"reprocessed": 3, "changed": 1, "failed": 1}
    call = Activity.objects.get(dedup_key=f"device:{device.pk}/1")
    assert call.text == "HELLO"
    [contact] = Contact.objects.filter(identities__value="+14155550101")
    assert list(TimelineEntry.objects.filter(kind="c", owner_id=contact.pk).values_list("activity_id", flat=True)) == [call.pk]
    before = snapshot()
    workspace_timelines_rebuild(workspace_id=workspace.pk)
    assert snapshot() == before
    assert reprocess(source) == {"reprocessed": 3, "changed": 0, "failed": 1}


def test_reprocess_retries_import_failures_from_their_payload(workspace, device, tmp_path, monkeypatch):
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(make_event("late", occurred_at="2026-05-01 10:00")) + "\n")
    source = source_create(workspace=workspace, connector="device", name="s", config={"path": str(path), "device": device.pk})
    run = source_sync(source=source)
    assert run.failed == 1
    original = DeviceConnector.normalize

    def lenient(self, raw):
        payload = dict(raw.payload)
        payload["occurred_at"] = payload["occurred_at"].replace(" ", "T") + "Z"
        return original(self, type(raw)(raw.external_id, payload))

    monkeypatch.setattr(DeviceConnector, "normalize", lenient)
    assert reprocess(source) == {"reprocessed": 1, "changed": 1, "failed": 0}
    assert ImportFailure.objects.get(source=source).resolved_at is not None
    assert reprocess(source)["changed"] == 0
