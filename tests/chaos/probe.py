"""Run in a subprocess by the chaos tests, with DATABASE_URL pointed at their throw-away
PostgreSQL: set data up and report the state of a workspace as JSON on stdout.

  python -m tests.chaos.probe setup SLUG          -> {"workspace", "device", "token"}
  python -m tests.chaos.probe source SLUG DEVICE PATH BATCH  -> {"source"}
  python -m tests.chaos.probe state SLUG          -> the counts the tests assert
"""

from __future__ import annotations

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mesh_site.settings")
django.setup()

from streams.models import (  # noqa: E402
    Activity,
    Contact,
    Device,
    InboundItem,
    SyncRun,
    TimelineEntry,
    Workspace,
)
from streams.services import device_create, source_create, workspace_get_or_create  # noqa: E402
from streams.timelines import workspace_timelines_rebuild  # noqa: E402


def setup(slug: str) -> dict:
    workspace = workspace_get_or_create(slug=slug)
    device, token = device_create(workspace=workspace, name="Phone", kind="phone")
    return {"workspace": workspace.pk, "device": device.pk, "token": token}


def source(slug: str, device_id: str, path: str, batch: str) -> dict:
    workspace = Workspace.objects.get(slug=slug)
    created = source_create(workspace=workspace, connector="device", name=f"file {path}", interval_seconds=0,
                            config={"path": path, "device": int(device_id), "batch_size": int(batch)})
    return {"source": created.pk}


def summaries(workspace: Workspace) -> list:
    """Every timeline and summary of the workspace, to compare with what a rebuild gives."""
    contacts = sorted(Contact.objects.filter(workspace=workspace).values_list(
        "pk", "activity_count", "channel_counts", "last_activity_at"))
    devices = sorted(Device.objects.filter(workspace=workspace).values_list("pk", "activity_count", "last_event_at"))
    entries = sorted(TimelineEntry.objects.filter(activity__workspace=workspace).values_list(
        "kind", "owner_id", "activity_id", "occurred_at"))
    return json.loads(json.dumps([contacts, devices, entries], default=str))


def state(slug: str) -> dict:
    workspace = Workspace.objects.get(slug=slug)
    activities = Activity.objects.filter(workspace=workspace)
    entries = TimelineEntry.objects.filter(activity__workspace=workspace)
    before = summaries(workspace)
    workspace_timelines_rebuild(workspace_id=workspace.pk)
    return {
        "activities": activities.count(),
        "distinct_activities": activities.values("dedup_key").distinct().count(),
        "device_entries": entries.filter(kind="d").count(),
        "contact_entries": entries.filter(kind="c").count(),
        "device_counts": sorted(Device.objects.filter(workspace=workspace).values_list("activity_count", flat=True)),
        "pending": InboundItem.objects.filter(workspace=workspace, state="pending").count(),
        "inbound_done": InboundItem.objects.filter(workspace=workspace, state="done").count(),
        "summaries_equal_rebuild": before == summaries(workspace),
        "runs": [list(r) for r in SyncRun.objects.filter(source__workspace=workspace).order_by("pk").values_list(
            "status", "new", "duplicate")],
    }


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    print(json.dumps({"setup": setup, "source": source, "state": state}[command](*args)))
