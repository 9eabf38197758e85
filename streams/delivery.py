"""Delivery states of the messages Mesh sends, whatever connector sent them.

A sent message's state lives on its activity as ``Activity.extra["delivery"] = {"state",
"error_code", "updated_at"}``; every change bumps ``Activity.updated_at`` (feeds and exports
rely on it). States only move forward (queued < sending < sent < delivered; delivered,
undelivered, failed and canceled are final), so reports that arrive out of order or twice
change nothing.

A connector that takes delivery reports (Twilio's status callbacks) hands each one, once its
signature is checked, to ``delivery_report_receive``: the report is kept as an InboundItem
(scope ``<delivery_scope>:<source>``, one row per message and state), so a report that arrives
before the sent message is recorded is applied when it is (``delivery_reports_apply``, called
by ``message_send``). Connectors reach these through ``streams.services``.
"""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, transaction
from django.utils import timezone

from connectors.base import registry

from .models import Activity, InboundItem, Source, Workspace

# Delivery states in order; a state never moves backwards and a terminal state never changes.
STATE_RANK = {
    "scheduled": 0, "accepted": 0, "queued": 1, "sending": 2, "sent": 3,
    "receiving": 1, "received": 3,
    "delivered": 4, "read": 4, "undelivered": 4, "failed": 4, "canceled": 4,
}  # fmt: skip
TERMINAL_STATES = frozenset({"delivered", "read", "undelivered", "failed", "canceled", "received"})


def delivery_state_advances(current: str | None, new: str) -> bool:
    """Whether delivery state ``new`` may replace ``current`` (never backwards, terminal stays)."""
    if new not in STATE_RANK:
        return False
    if not current:
        return True
    if current in TERMINAL_STATES:
        return False
    return STATE_RANK[new] > STATE_RANK.get(current, -1)


def activity_delivery_update(
    *, workspace: Workspace, dedup_key: str, state: str, error_code=None, at: dt.datetime | None = None
) -> bool:
    """Move the delivery state of the activity ``dedup_key`` forward to ``state``. Returns
    whether it changed; an unknown activity, a stale or repeated state change nothing."""
    at = at or timezone.now()
    with transaction.atomic():
        activity = (
            Activity.objects.select_for_update()
            .filter(workspace=workspace, dedup_key=dedup_key)
            .only("pk", "extra")
            .first()
        )
        if activity is None:
            return False
        extra = dict(activity.extra or {})
        current = (extra.get("delivery") or {}).get("state")
        if not delivery_state_advances(current, state):
            return False
        extra["delivery"] = {"state": state, "error_code": _code(error_code), "updated_at": at.isoformat()}
        Activity.objects.filter(pk=activity.pk).update(extra=extra, updated_at=at)
    return True


def _report_scope(source: Source) -> str:
    cls = registry.get(source.connector)
    return f"{cls.delivery_scope or cls.key + '-status'}:{source.pk}"


def delivery_report_receive(
    *, source: Source, message_id: str, dedup_key: str, state: str, error_code=None, payload: dict
) -> bool:
    """A (signature-checked) delivery report for message ``message_id`` (the sent item's
    external id), whose activity is ``dedup_key``: keep it, then apply it. Returns whether the
    delivery state changed."""
    if not message_id or not state:
        return False
    now = timezone.now()
    workspace = source.workspace
    changed = activity_delivery_update(workspace=workspace, dedup_key=dedup_key, state=state,
                                       error_code=error_code, at=now)
    matched = changed or Activity.objects.filter(workspace=workspace, dedup_key=dedup_key).exists()
    try:
        with transaction.atomic():
            InboundItem.objects.create(
                workspace=workspace, connector=source.connector, scope=_report_scope(source), source=source,
                external_id=f"{message_id}/{state}"[:255], payload={**payload, "_error_code": error_code}, received_at=now,
                # Never "pending": pending items are fed to ingest, and a report is not a message.
                state=InboundItem.State.DONE if matched else InboundItem.State.FAILED,
                processed_at=now if matched else None,
            )
    except IntegrityError:
        pass  # the same report again (providers retry): already kept
    return changed


def delivery_reports_apply(*, source: Source, message_id: str, dedup_key: str) -> None:
    """Apply the reports about ``message_id`` that arrived before its activity was stored."""
    early = InboundItem.objects.filter(
        scope=_report_scope(source), external_id__startswith=f"{message_id}/", state=InboundItem.State.FAILED
    ).order_by("received_at")
    for item in early:
        state = item.external_id[len(message_id) + 1:]
        activity_delivery_update(workspace=source.workspace, dedup_key=dedup_key, state=state,
                                 error_code=(item.payload or {}).get("_error_code"), at=item.received_at)
        InboundItem.objects.filter(pk=item.pk).update(state=InboundItem.State.DONE, processed_at=timezone.now())


def _code(value):
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)
