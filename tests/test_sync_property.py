"""Property: whatever interleaving of ingests, updates, merges, unmerges, erasures and pulls,
replicas kept by the sync client end equal to the server's state for their device's scope —
whether they started at the beginning, at any point in between (a fresh snapshot), or resume
from any token a replica stored along the way."""

from __future__ import annotations

import itertools
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.delivery import activity_delivery_update
from streams.feed_tokens import activity_erase
from streams.models import Activity, Contact
from streams.selectors.sync import sync_state
from streams.services import ServiceError, contact_merge, contact_unmerge
from streams.sync import device_sync_scope_set
from streams.sync_client import Replica
from tests.factories import (
    from_ana,
    ingest_drafts,
    ingest_events,
    make_device,
    make_event,
    make_workspace,
)
from tests.fakes.sync_http import pull

NUMBERS = ["+14155550100", "+14155550101", "+14155550102", "+14155550103"]
NAMES = ["Ana", "Ben", "Cleo", "Dan", "Ana S."]
SCOPES = ["own", "devices", "contacts"]
_run = itertools.count()

ingest = st.tuples(st.just("ingest"), st.integers(0, 1), st.integers(1, 4),
                   st.lists(st.tuples(st.sampled_from(NUMBERS), st.sampled_from(NAMES)), max_size=2))
mail = st.tuples(st.just("mail"), st.sampled_from(NUMBERS), st.sampled_from(NAMES))
pick = st.integers(0, 10_000)
operation = st.one_of(
    ingest, mail,
    st.tuples(st.just("delivery"), pick, st.sampled_from(["sent", "delivered", "failed"])),
    st.tuples(st.just("visibility"), pick),
    st.tuples(st.just("erase"), pick),
    st.tuples(st.just("merge"), pick, pick),
    st.tuples(st.just("unmerge"), pick),
    st.tuples(st.just("pull"), st.integers(0, 2), st.integers(1, 5), st.integers(1, 3)),
    st.tuples(st.just("join"), st.integers(0, 2)),
)


def _nth(items: list, n: int):
    return items[n % len(items)] if items else None


@pytest.mark.django_db(transaction=True)  # the sync API serves committed changes only
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ops=st.lists(operation, min_size=3, max_size=14))
def test_replicas_equal_the_server_after_any_interleaving(transactional_db, tmp_path, ops):
    run = next(_run)
    workspace = make_workspace(f"prop{run}", "Property")
    devices = []
    for i, scope in enumerate(SCOPES):
        device, token = make_device(workspace, f"D{i}")
        device_sync_scope_set(device=device, scope=scope)
        devices.append((device, token))
    folder = tmp_path / f"run{run}"
    folder.mkdir()
    replicas = {i: Replica(str(folder / f"r{i}.sqlite3")) for i in range(3)}  # one per scope from the start
    checkpoints: list[tuple[int, str]] = []  # (device index, copy of a replica file mid-way)
    late: list[tuple[int, Replica]] = []
    serial = itertools.count()

    for op in ops:
        kind = op[0]
        activities = list(Activity.objects.filter(workspace=workspace).order_by("pk"))
        contacts = list(Contact.objects.filter(workspace=workspace, is_self=False).order_by("pk"))
        if kind == "ingest":
            _, device_index, n, people = op
            device = devices[device_index][0]
            parts = [{"kind": "phone", "value": v, "role": "from", "name": name} for v, name in people]
            ingest_events(workspace, device, [
                make_event(f"e{next(serial)}", occurred_at=f"2026-05-01T10:{i:02d}:00Z", participants=parts)
                for i in range(n)
            ])
        elif kind == "mail":
            ingest_drafts(workspace, [(f"m{next(serial)}", {**from_ana(channel="email", occurred_at="2026-05-02T09:00:00+00:00"),
                                                            "participants": [{"role": "from", "kind": "phone",
                                                                              "value": op[1], "display": op[2]}]})])
        elif kind == "delivery" and activities:
            activity_delivery_update(workspace=workspace, dedup_key=_nth(activities, op[1]).dedup_key, state=op[2])
        elif kind == "visibility" and activities:
            a = _nth(activities, op[1])
            Activity.objects.filter(pk=a.pk).update(visibility="private" if a.visibility == "public" else "public")
        elif kind == "erase" and activities:
            activity_erase(activity=_nth(activities, op[1]))
        elif kind == "merge" and len(contacts) > 1:
            try:
                contact_merge(workspace=workspace, target=_nth(contacts, op[1]), other=_nth(contacts, op[2]))
            except ServiceError:
                pass  # the same contact twice, or one already merged: refused, nothing changes
        elif kind == "unmerge" and contacts:
            try:
                contact_unmerge(workspace=workspace, contact=_nth(contacts, op[1]))
            except ServiceError:
                pass
        elif kind == "pull":
            _, index, limit, pages = op
            pull(replicas[index], devices[index][1], limit=limit, max_pages=pages, settle=False)
            copy = folder / f"cp{next(serial)}.sqlite3"
            replicas[index].db.execute("PRAGMA wal_checkpoint(FULL)")
            shutil.copy(folder / f"r{index}.sqlite3", copy)
            checkpoints.append((index, str(copy)))
        elif kind == "join":  # a replica that starts here, from a snapshot
            late.append((op[1], Replica(str(folder / f"late{next(serial)}.sqlite3"))))
            pull(late[-1][1], devices[op[1]][1], limit=3, max_pages=2, settle=False)

    everyone = [(i, r) for i, r in replicas.items()] + late
    everyone += [(i, Replica(path)) for i, path in checkpoints]
    for index, replica in everyone:
        pull(replica, devices[index][1], limit=4)
        device = devices[index][0]
        device.refresh_from_db()
        assert replica.state() == sync_state(device=device), (index, ops)
        replica.close()
