"""Sending a message from Mesh, through whichever connector of the workspace can send (Twilio
SMS today; any installed connector that implements ``Connector.send``). Called by the contact
page's "Reply by SMS" form and ``mesh_sms send``.

The connector sends and returns the sent message as a RawItem; Mesh records it at once, through
the same ingest as everything else, on the contact's timeline, and applies delivery reports
that arrived before it was recorded (``streams.delivery``).
"""

from __future__ import annotations

import logging

from connectors.base import BadItem, ConfigError, ConnectorError, registry

from .delivery import delivery_reports_apply
from .ingest import ingest_batch
from .models import Activity, Contact, Identity, Source, Workspace
from .services import ServiceError, source_connector
from .webhooks import source_mark_self

log = logging.getLogger(__name__)


class MessageSendError(ServiceError):
    """Sending failed; ``code`` is the provider's error code when it gave one."""

    def __init__(self, message: str, *, code: int | str | None = None):
        super().__init__(message)
        self.code = code


def sending_connectors() -> dict[str, type]:
    """The installed connectors that can send, by key."""
    return {key: cls for key, cls in registry.connectors.items() if cls.can_send()}


def message_source_for(*, workspace: Workspace, source_id: int | None = None) -> Source:
    """The source to send from: ``source_id``, else the workspace's only source that can send."""
    senders = sending_connectors()
    sources = Source.objects.filter(workspace=workspace, connector__in=senders).order_by("pk")
    if source_id is not None:
        source = sources.filter(pk=source_id).first()
        if source is None:
            raise MessageSendError(f"no source {source_id} that can send in workspace {workspace.slug}")
        return source
    found = list(sources[:2])
    if not found:
        kinds = " or ".join(sorted(cls.label for cls in senders.values())) or "sending"
        hint = " or ".join(f"`mesh_source add {key} --help`" for key in sorted(senders))
        raise MessageSendError(f"no {kinds} source in workspace {workspace.slug}" + (f": see {hint}" if hint else ""))
    if len(found) > 1:
        raise MessageSendError("several sources can send: choose one with --source ID")
    return found[0]


def message_recipient_for(*, contact: Contact, connector: type) -> str:
    """The address to send a contact to through ``connector``: the connector's pick among the
    contact's identities of its kind, most recently used first."""
    values = list(
        Identity.objects.filter(contact=contact, kind=connector.send_to_kind, is_self=False)
        .order_by("-participations__activity__occurred_at", "-pk")
        .values_list("value", flat=True)
    )
    recipient = connector.recipient(list(dict.fromkeys(values)))
    if recipient is None:
        raise MessageSendError(f"contact {contact.pk} ({contact}) has no {connector.send_to_kind} to send to")
    return recipient


def message_send(
    *,
    workspace: Workspace,
    body: str,
    contact: Contact | None = None,
    source: Source | None = None,
    to: str | None = None,
    sender: str | None = None,
) -> Activity:
    """Send ``body`` to ``contact`` (or to the address ``to``) from ``source`` (default: the
    workspace's only source that can send) and record it at once on the contact's timeline.
    Raises MessageSendError with a plain message; nothing is recorded then."""
    body = (body or "").strip()
    if not body:
        raise MessageSendError("the message is empty")
    if contact is not None and contact.workspace_id != workspace.pk:
        raise MessageSendError("the contact is not in this workspace")
    source = source or message_source_for(workspace=workspace)
    cls = registry.connectors.get(source.connector)
    if source.workspace_id != workspace.pk or cls is None or not cls.can_send():
        raise MessageSendError(f"source {source.pk} is not a source of this workspace that can send")
    if to is None:
        if contact is None:
            raise MessageSendError("give a contact or an address to send to")
        to = message_recipient_for(contact=contact, connector=cls)
    try:
        connector = source_connector(source=source)
    except ConfigError as exc:
        raise MessageSendError(f"source {source.pk} is misconfigured: {exc}") from None
    try:
        source_mark_self(source=source, identities=connector.self_identities())
        raw = connector.send(to=to, body=body, sender=sender)
    except ConnectorError as exc:
        if exc.status == Source.Status.AUTH_FAILED:
            Source.objects.filter(pk=source.pk).update(status=Source.Status.AUTH_FAILED, last_error=exc.message)
        raise MessageSendError(exc.message, code=exc.code) from None
    try:
        dedup_key = connector.normalize(raw).dedup_key
    except BadItem as exc:
        raise MessageSendError(f"the message was sent ({raw.external_id}) but cannot be recorded: {exc.reason}") from None
    result = ingest_batch(workspace=workspace, connector=connector, items=[raw], source=source)
    if result.failed:
        log.error("sent message %s could not be recorded", raw.external_id)
    delivery_reports_apply(source=source, message_id=raw.external_id, dedup_key=dedup_key)
    activity = Activity.objects.filter(workspace=workspace, dedup_key=dedup_key).first()
    if activity is None:
        raise MessageSendError(f"the message was sent ({raw.external_id}) but could not be recorded; "
                               "see the source's failures")
    return activity
