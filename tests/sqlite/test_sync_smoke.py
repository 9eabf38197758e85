"""The sync API on SQLite (the embedded default): the migration's row triggers log every change,
and a replica pulled by the reference client equals the server, through snapshot and log."""

from __future__ import annotations

from streams.feed_tokens import activity_erase
from streams.models import Activity, Change, Workspace
from streams.selectors.sync import sync_state
from streams.services import contact_merge
from streams.sync import device_sync_scope_set
from streams.sync_client import Replica
from tests.factories import ingest_events, make_device, make_event
from tests.fakes.sync_http import pull


def test_a_contacts_replica_follows_ingest_merges_and_erasures_on_sqlite(demo, tmp_path):
    workspace = Workspace.objects.get(slug=demo["workspace"])
    watch, token = make_device(workspace, "Watch")
    device_sync_scope_set(device=watch, scope="contacts")
    replica = Replica(str(tmp_path / "replica.sqlite3"))
    pull(replica, token, limit=50)
    assert replica.state() == sync_state(device=watch)

    ingest_events(workspace, watch, [make_event("w1", participants=[
        {"kind": "phone", "value": "+14155550199", "role": "from", "name": "Zoe"}])])
    call = Activity.objects.get(dedup_key=f"device:{watch.pk}/w1")
    assert Change.objects.filter(kind="a", object_id=call.pk, op="c").exists()
    contacts = [c for c in workspace.contacts.filter(merged_into=None, is_self=False).order_by("pk")][:2]
    contact_merge(workspace=workspace, target=contacts[0], other=contacts[1])
    activity_erase(activity=Activity.objects.filter(workspace=workspace).exclude(pk=call.pk).first())

    result = pull(replica, token, limit=7)
    assert result.changes > 0
    assert replica.state() == sync_state(device=watch)
    replica.close()
