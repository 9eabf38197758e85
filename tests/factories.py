"""Builders of Mesh's own data for the tests: workspaces, members, devices, device events,
contacts and activities. Everything goes through the real write path (the services and
``ingest_batch``), never by creating rows by hand. Test modules import these; they never
import one another. Stand-ins for the world outside Mesh are in tests/fakes/.
"""

from __future__ import annotations

import datetime as dt

from connectors.base import ActivityDraft, Connector, ParticipantDraft, RawItem
from connectors.device.connector import DeviceConnector
from streams.ingest import ingest_batch
from streams.models import Contact, Identity

PASSWORD = "correct horse battery"

# People as participants name them. Ana has a phone, a personal and a work address; Ben a phone.
ANA_NUMBER = "+14155550100"
ANA_PHONE = {"kind": "phone", "value": ANA_NUMBER, "role": "from", "name": "Ana"}
ANA_MAIL = {"kind": "email", "value": "ana@example.com", "role": "to", "name": "Ana S."}
ANA_WORK = {"kind": "email", "value": "ana@work.example", "role": "cc", "name": "Ana (work)"}
BEN_PHONE = {"kind": "phone", "value": "+14155550101", "role": "to", "name": "Ben"}
# Mail between Ana and the workspace's owner (``mail``, ``ingest_mail``).
ANA_EMAIL = {"kind": "email", "value": "ana@example.com", "role": "from", "display": "Ana"}
ME_EMAIL = {"kind": "email", "value": "me@mesh.example", "role": "to", "display": "Me"}


# --- workspaces, people, devices ---------------------------------------------------------------


def make_workspace(slug: str = "acme", name: str = "Acme"):
    from streams.services import workspace_get_or_create

    return workspace_get_or_create(slug=slug, name=name)


def make_member(workspace, username: str, *, role: str = "member"):
    """A user who can log in with PASSWORD, member of ``workspace`` with ``role``."""
    from django.contrib.auth import get_user_model

    from streams.services import workspace_add_member

    user = get_user_model().objects.create_user(username, password=PASSWORD)
    workspace_add_member(workspace=workspace, user=user, role=role)
    return user


def make_device(workspace, name: str = "Phone", kind: str = "phone"):
    """(device, token): the token is shown once, as the device API hands it out."""
    from streams.services import device_create

    return device_create(workspace=workspace, name=name, kind=kind)


def contact_for(workspace, kind: str, value: str) -> Contact:
    return Identity.objects.select_related("contact").get(workspace=workspace, kind=kind, value=value).contact


# --- device events -----------------------------------------------------------------------------


def make_event(event_id, *, type="call.incoming", occurred_at="2026-05-01T10:00:00Z", data=None, participants=None,
               **extra):
    """A device event as a client sends it."""
    event = {"id": event_id, "type": type, "occurred_at": occurred_at, "data": data or {}}
    if participants is not None:
        event["participants"] = participants
    event.update(extra)
    return event


def ingest_events(workspace, device, events):
    """Device events (``make_event``) through the device connector, as the device API stores them."""
    connector = DeviceConnector({}, {}, context={"device_id": device.pk, "region": workspace.region})
    items = [RawItem(f"{device.pk}/{e['id']}", e) for e in events]
    return ingest_batch(workspace=workspace, connector=connector, device=device, items=items)


# --- activities of any channel -----------------------------------------------------------------


class DraftConnector(Connector):
    """A stand-in for the email/SMS/X connectors: the payload is the draft's fields as plain
    data (``occurred_at`` as ISO text, participants as dicts)."""

    key = "drafts"
    label = "Drafts (tests)"

    def normalize(self, raw: RawItem) -> ActivityDraft:
        p = dict(raw.payload)
        return ActivityDraft(
            channel=p["channel"], verb=p.get("verb", "send"), direction=p.get("direction"),
            occurred_at=dt.datetime.fromisoformat(p["occurred_at"]), dedup_key=f"{p['channel']}:{raw.external_id}",
            subject=p.get("subject", ""), text=p.get("text", ""), html=p.get("html", ""), url=p.get("url", ""),
            thread_key=p.get("thread_key", ""), visibility=p.get("visibility", "private"),
            participants=[ParticipantDraft(**x) for x in p.get("participants", [])],
            attachments=p.get("attachments", []), extra=p.get("extra", {}), automated=p.get("automated", False),
        )


def ingest_drafts(workspace, items, **defaults):
    """(external id, draft fields) pairs through ``DraftConnector``; ``defaults`` fill the fields
    an item leaves out."""
    connector = DraftConnector({}, {}, context={"region": workspace.region})
    return ingest_batch(workspace=workspace, connector=connector,
                        items=[RawItem(eid, {**defaults, **fields}) for eid, fields in items])


def from_ana(**fields):
    """Draft fields of something Ana sent from her phone."""
    return {"participants": [{"role": "from", "kind": "phone", "value": ANA_NUMBER, "display": "Ana"}],
            "direction": "in", **fields}


def mixed_history(workspace) -> Contact:
    """Ana's contact with two mails, two SMS (one each way) and a mention on X."""
    ingest_drafts(workspace, [
        ("m1", from_ana(channel="email", occurred_at="2026-03-02T09:00:00+00:00", subject="Renewal quote",
                        text="Here is the renewal quote for next year.")),
        ("m2", from_ana(channel="email", occurred_at="2026-04-10T09:00:00+00:00", subject="Lunch",
                        text="Shall we have lunch on Friday?")),
        ("s1", from_ana(channel="sms", occurred_at="2026-04-11T12:00:00+00:00", text="Running late")),
        ("s2", {**from_ana(channel="sms", occurred_at="2026-04-12T12:00:00+00:00", text="On my way"),
                "direction": "out", "participants": [{"role": "to", "kind": "phone", "value": ANA_NUMBER}]}),
        ("x1", from_ana(channel="twitter", verb="mention", occurred_at="2026-05-01T08:00:00+00:00",
                        text="@me nice quote")),
    ])
    return contact_for(workspace, "phone", ANA_NUMBER)


def mail(n, *, subject="Renewal quote", text="Hello, here is the quote.", day=1, **extra):
    """Item ``n`` for ``ingest_mail``: a mail on 2026-05-``day``."""
    return (f"m{n}", {"occurred_at": f"2026-05-{day:02d}T10:{n % 60:02d}:00+00:00", "subject": subject, "text": text,
                      **extra})


def ingest_mail(workspace, items):
    """Mail Ana sent the owner, unless an item says otherwise."""
    return ingest_drafts(workspace, items, channel="email", verb="receive", direction="in",
                         participants=[ANA_EMAIL, ME_EMAIL])


def ana(workspace) -> Contact:
    """The contact of ``mail``'s Ana."""
    return contact_for(workspace, "email", ANA_EMAIL["value"])
