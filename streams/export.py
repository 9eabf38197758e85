"""Activities as Activity Streams 2.0 objects with a ``mesh:`` extension: the shape of
``mesh_export`` lines (and the user's way to take their data out)."""

from __future__ import annotations

import datetime as dt

from .models import Activity, Participant

AS2_CONTEXT = ["https://www.w3.org/ns/activitystreams", {"mesh": "https://mesh.example/ns#"}]
VERB_TYPES = {
    "send": "Create", "receive": "Create", "post": "Create", "message": "Create", "mention": "Create",
    "arrive": "Arrive", "leave": "Leave", "call": "Create", "location": "Arrive",
}  # fmt: skip


def rfc3339(value: dt.datetime | None) -> str | None:
    """The one written form of a time, in exports, feeds and every command's JSON: UTC, whole
    seconds, ``Z`` (``2026-12-06T00:14:59Z``)."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def tag_uri(activity: Activity) -> str:
    """A GUID that never changes: from the workspace and the dedup key, both immutable."""
    created = activity.workspace.created_at.strftime("%Y") if hasattr(activity, "workspace") else "2026"
    return f"tag:mesh,{created}:{activity.workspace.slug}/{activity.dedup_key}"


def _person(p: Participant) -> dict:
    ident = p.identity
    return {"mesh:identity": f"{ident.kind}:{ident.value}", "name": ident.display or ident.value}


def activity_as2(activity: Activity, *, contact_ids: list[int] | None = None) -> dict:
    # The sync API builds this same shape from raw rows (selectors/sync._activity_documents_pg);
    # a change here must be made there too: tests/test_sync.py compares the two byte for byte.
    parts = getattr(activity, "persons", None)
    if parts is None:
        parts = list(activity.participants.all())
    actor = next((p for p in parts if p.role in ("from", "author")), None)
    return {
        "id": tag_uri(activity),
        "type": VERB_TYPES.get(activity.verb, "Create"),
        "published": rfc3339(activity.occurred_at),
        "updated": rfc3339(activity.updated_at),
        "name": activity.subject,
        "content": activity.text,
        "actor": _person(actor) if actor else None,
        "to": [_person(p) for p in parts if p.role == "to"],
        "cc": [_person(p) for p in parts if p.role == "cc"],
        "attachment": [
            {"name": a.get("name", ""), "mediaType": a.get("type") or a.get("mediaType", ""), "size": a.get("size")}
            for a in (activity.attachments or [])
        ],
        "mesh:channel": activity.channel,
        "mesh:verb": activity.verb,
        "mesh:direction": activity.direction,
        "mesh:dedupKey": activity.dedup_key,
        "mesh:threadKey": activity.thread_key,
        "mesh:source": activity.source_id,
        "mesh:device": activity.device_id,
        "mesh:contacts": sorted(contact_ids or []),
        "mesh:visibility": activity.visibility,
        "mesh:automated": activity.automated,
    }
