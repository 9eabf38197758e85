"""Services: every write Mesh makes goes through a function here (HackSoft style: keyword-only,
named ``<entity>_<action>``). Views, tasks and commands call these; models stay plain."""

from __future__ import annotations

import datetime as dt
import logging
import time

import phonenumbers
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.utils import timezone

from connectors.base import Connector, ConnectorError, RawItem, registry
from connectors.text import clean_text

from .conf import conf
from .crypto import secrets_decrypt, secrets_encrypt

# Re-exported ``as`` themselves: connectors reach ``streams`` only through ``streams.services``
# (and selectors), so the services kept in modules of their own (``delivery``, ``webhooks``) and
# the few other names connectors need are named here.
from .delivery import activity_delivery_update as activity_delivery_update
from .delivery import delivery_report_receive as delivery_report_receive
from .delivery import delivery_reports_apply as delivery_reports_apply
from .devices import device_by_token as device_by_token
from .devices import device_create as device_create
from .devices import device_revoke as device_revoke
from .devices import device_rotate_token as device_rotate_token
from .identity import InvalidIdentity as InvalidIdentity
from .identity import identity_mark_self, merge_name_apply, merge_name_undo, merge_order
from .identity import normalize_phone as normalize_phone
from .inbound import device_events_store as device_events_store
from .inbound import devices_events_store as devices_events_store
from .inbound import inbound_kick as inbound_kick
from .inbound import inbound_kick_key
from .inbound import inbound_store as inbound_store
from .ingest import IngestResult, ingest_batch, scope_for
from .locks import source_lock
from .models import (
    Contact,
    Device,
    Identity,
    InboundItem,
    Membership,
    Source,
    SyncRun,
    Workspace,
)
from .queue import task_send
from .ranking import contact_rank_merge
from .selectors import NO_PENDING, contact_subtree_ids, inbound_pending
from .throttle import device_api_throttle as device_api_throttle  # for the device API view
from .throttle import device_token as device_token  # the token of a Bearer or Basic request
from .timelines import contact_timelines_rebuild
from .webhooks import request_body as request_body
from .webhooks import source_mark_self as source_mark_self
from .webhooks import source_secrets as source_secrets
from .webhooks import webhook_source as webhook_source

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """A request that cannot be done as asked; the message is for the user."""


# --- workspaces -------------------------------------------------------------------------------


def workspace_get_or_create(*, slug: str = "default", name: str = "") -> Workspace:
    ws, _ = Workspace.objects.get_or_create(slug=slug, defaults={"name": name or slug.title()})
    return ws


def workspace_create(*, slug: str, name: str = "", region: str = "") -> Workspace:
    """A new workspace; ServiceError for a slug that is taken or malformed, or a region that
    is not an ISO country code phonenumbers knows."""
    try:
        validate_slug(slug)
    except ValidationError:
        raise ServiceError(f"{slug!r} is not a slug (letters, digits, '-' and '_')") from None
    region = region.strip().upper()
    if region and region not in phonenumbers.SUPPORTED_REGIONS:
        raise ServiceError(f"{region!r} is not a region code phonenumbers knows (e.g. US, GB, DE)")
    if Workspace.objects.filter(slug=slug).exists():
        raise ServiceError(f"workspace {slug!r} already exists")
    return Workspace.objects.create(slug=slug, name=name or slug.title(), default_region=region)


def workspace_add_member(*, workspace: Workspace, user, role: str = Membership.Role.MEMBER) -> Membership:
    membership, _ = Membership.objects.get_or_create(workspace=workspace, user=user, defaults={"role": role})
    return membership


def user_set_password(*, username: str, password: str, staff: bool = False):
    User = get_user_model()
    user, _ = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.is_staff = user.is_staff or staff
    user.save()
    return user


# --- sources ----------------------------------------------------------------------------------


def source_create(
    *,
    workspace: Workspace,
    connector: str,
    name: str,
    config: dict | None = None,
    secrets: dict | None = None,
    interval_seconds: int | None = None,
) -> Source:
    cls = registry.get(connector)
    config = dict(config or {})
    secrets = dict(secrets or {})
    # Build it once now so that a bad config is refused here, not at 3 a.m. in a worker.
    cls(config, secrets, context=connector_context(workspace=workspace))
    if Source.objects.filter(workspace=workspace, name=name).exists():
        raise ServiceError(f"a source named {name!r} already exists in workspace {workspace.slug}")
    if interval_seconds is None:
        interval_seconds = 900 if cls.pollable else 0
    return Source.objects.create(
        workspace=workspace,
        connector=connector,
        name=name,
        config=config,
        secrets_encrypted=secrets_encrypt(secrets),
        interval_seconds=interval_seconds,
        next_run_at=timezone.now() if interval_seconds else None,
    )


def connector_context(*, workspace: Workspace, device: Device | None = None) -> dict:
    return {
        "workspace": workspace.slug,
        "region": workspace.region,
        "self_identities": [
            f"{k}:{v}" for k, v in Identity.objects.filter(workspace=workspace, is_self=True).values_list("kind", "value")
        ],
        "device_id": device.pk if device else None,
        # The device's places go to the lifestream (a connector of fixes makes them public).
        "places_public": bool(device and device.places_public),
    }


def source_connector(*, source: Source) -> Connector:
    cls = registry.get(source.connector)
    device = _source_device(source)
    # The source's id, for a connector that names its own webhook URLs (Twilio's status callback).
    context = {**connector_context(workspace=source.workspace, device=device), "source_id": source.pk}
    return cls(source.config, secrets_decrypt(source.secrets_encrypted), context=context)


def source_sync(
    *, source: Source, since: dt.datetime | None = None, trigger: str = "manual", fresh: bool = False,
    progress=None,
) -> SyncRun:
    """Pull every batch the connector has after the stored cursor (or from scratch when
    ``fresh``/``since``), storing each batch with its cursor in one transaction.

    Raises ConnectorError after recording it on the Source (status, last_error, the run)."""
    with source_lock(source.pk):
        _interrupt_stale_runs(source)
        now = timezone.now()
        run = SyncRun.objects.create(source=source, trigger=trigger, started_at=now)
        Source.objects.filter(pk=source.pk).update(last_attempt_at=now)
        source.refresh_from_db()
        device = _source_device(source)
        total = IngestResult()
        try:
            connector = source_connector(source=source)
            for kind, value, display in connector.self_identities():  # the owner's own ids, before any item
                identity_mark_self(workspace=source.workspace, kind=kind, value=value, display=display)
            cursor = None if (fresh or since) else source.cursor
            for batch in connector.fetch(cursor, since=since):
                result = ingest_batch(
                    workspace=source.workspace, connector=connector, items=batch.items, source=source,
                    device=device, cursor=batch.cursor, gap=batch.gap, run=run,
                )
                total.add(result)
                if progress:
                    progress(total)
        except ConnectorError as exc:
            _run_failed(source, run, exc.message, status=exc.status, retry_at=exc.retry_at)
            raise
        except Exception as exc:
            _run_failed(source, run, f"{type(exc).__name__}: {exc}", status=Source.Status.ERROR)
            raise
        finished = timezone.now()
        SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.OK, finished_at=finished)
        Source.objects.filter(pk=source.pk).update(
            status=Source.Status.OK, last_error="", last_success_at=finished, retry_at=None,
        )
        run.refresh_from_db()
        source.refresh_from_db()
        return run


def _source_device(source: Source) -> Device | None:
    if isinstance(source.config, dict) and source.config.get("device"):
        return Device.objects.filter(pk=source.config["device"], workspace=source.workspace_id).first()
    return None


def _interrupt_stale_runs(source: Source) -> None:
    # We hold the lock, so any run still "running" died without finishing: say so.
    SyncRun.objects.filter(source=source, status=SyncRun.Status.RUNNING).update(
        status=SyncRun.Status.INTERRUPTED, finished_at=timezone.now(),
        error="interrupted: the process stopped before the run finished",
    )


def _run_failed(source: Source, run: SyncRun, message: str, *, status: str, retry_at=None) -> None:
    message = clean_text(message)  # an error may quote what the source sent, NUL and all
    now = timezone.now()
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.FAILED, finished_at=now, error=message[:5000])
    Source.objects.filter(pk=source.pk).update(status=status, last_error=message[:5000], retry_at=retry_at)


def source_health(*, source: Source, now: dt.datetime | None = None) -> dict:
    """Whether a source is healthy, and every reason it is not. Never green while missing data:
    a stale last success, a reported gap, an error status, a failed last run or unresolved
    import failures all count."""
    now = now or timezone.now()
    problems: list[str] = []
    last_run = source.runs.order_by("-started_at").first()
    if source.status != Source.Status.OK:
        problems.append(f"status {source.status}: {source.last_error or 'no detail'}")
    if source.gap:
        problems.append(f"gap: {source.gap}")
    if source.last_success_at is None:
        problems.append("never synced successfully")
    elif source.interval_seconds and now - source.last_success_at > source.stale_after():
        problems.append(f"last success {int((now - source.last_success_at).total_seconds())}s ago")
    if last_run is not None and last_run.status in (SyncRun.Status.FAILED, SyncRun.Status.INTERRUPTED):
        problems.append(f"last run {last_run.status}: {last_run.error[:200]}")
    open_failures = source.failures.filter(resolved_at=None).count()
    if open_failures:
        problems.append(f"{open_failures} item(s) failed to import")
    # Pushed items (webhooks) still waiting to be ingested: long waits mean a lost task.
    scope = scope_for(source=source)
    pending = inbound_pending(workspace=source.workspace, scope=scope).get(scope, NO_PENDING)
    if pending["oldest_at"] and now - pending["oldest_at"] > dt.timedelta(seconds=conf.INBOUND_SWEEP_SECONDS):
        problems.append(f"{pending['count']} pushed item(s) waiting since {pending['oldest_at'].isoformat(timespec='seconds')}")
    lag = None
    if last_run is not None and last_run.newest_item_at and last_run.finished_at:
        lag = int((last_run.finished_at - last_run.newest_item_at).total_seconds())
    return {
        "healthy": not problems,
        "problems": problems,
        "lag_seconds": lag,
        "open_failures": open_failures,
        "pending": pending,
    }


# --- pushed items, ingested by a worker (stored by ``inbound``) --------------------------------


INBOUND_BATCH = 500  # items a worker ingests in one transaction
INBOUND_BUDGET_S = 20.0  # then the rest of a backlog goes to a fresh task


def inbound_process(*, item_ids: list[int]) -> IngestResult:
    """Ingest stored raw items (idempotent: done items are skipped)."""
    total = IngestResult()
    # Items another task already stored still name their scope: whatever is pending there is
    # taken too, so a burst drains in batches whichever task runs first.
    pending = list(
        InboundItem.objects.select_related("workspace", "source", "device")
        .filter(pk__in=item_ids)
        .order_by("pk")
    )
    groups: dict[tuple, list[InboundItem]] = {}
    for item in pending:
        groups.setdefault((item.workspace_id, item.connector, item.source_id, item.device_id), []).append(item)
    # Clear the kicks first (see inbound_kick): what commits from now on kicks a new task.
    cache.delete_many([inbound_kick_key(g[0].scope) for g in groups.values()])
    start = time.monotonic()
    for group in groups.values():
        first = group[0]
        cls = registry.get(first.connector)
        if first.source is not None:
            connector = source_connector(source=first.source)
        else:
            connector = cls({}, {}, context=connector_context(workspace=first.workspace, device=first.device))
        connectors = {first.connector: connector}
        mine_ids = [i.pk for i in group]
        while True:
            with transaction.atomic():
                # This task's items and, up to a batch, other pending items of the same scope:
                # under a burst of webhooks one task stores hundreds of items in one transaction
                # instead of one each (items another worker holds are skipped, not waited for).
                mine = list(
                    InboundItem.objects.select_for_update(skip_locked=True)
                    .filter(pk__in=mine_ids, state=InboundItem.State.PENDING)
                    .order_by("pk")
                ) if mine_ids else []
                room = max(0, INBOUND_BATCH - len(mine))
                more = list(
                    InboundItem.objects.select_for_update(skip_locked=True)
                    .filter(scope=first.scope, state=InboundItem.State.PENDING)
                    .exclude(pk__in=[i.pk for i in mine])
                    .order_by("pk")[:room]
                ) if room else []
                locked = mine + more
                if not locked:
                    break
                result = IngestResult()
                # A device's scope holds its API events and its OwnTracks messages: each part is
                # read by its own connector's normalizer.
                for key in dict.fromkeys(i.connector for i in locked):
                    if key not in connectors:
                        connectors[key] = registry.get(key)(
                            {}, {}, context=connector_context(workspace=first.workspace, device=first.device))
                    result.add(ingest_batch(
                        workspace=first.workspace, connector=connectors[key], source=first.source,
                        device=first.device,
                        items=[RawItem(i.external_id, i.payload, i.received_at) for i in locked if i.connector == key],
                    ))
                InboundItem.objects.filter(pk__in=[i.pk for i in locked]).update(
                    state=InboundItem.State.DONE, processed_at=timezone.now()
                )
            total.add(result)
            mine_ids = []
            if len(locked) < INBOUND_BATCH:
                break  # the scope is drained (what arrives now kicks a task of its own)
            if time.monotonic() - start > INBOUND_BUDGET_S:
                # A long backlog: hand the rest to a fresh task rather than hold the worker.
                rest = list(InboundItem.objects.filter(scope=first.scope, state=InboundItem.State.PENDING)
                            .order_by("pk").values_list("pk", flat=True)[:1])
                if rest:
                    task_send("ingest_inbound", rest)
                break
    return total


# --- contacts ---------------------------------------------------------------------------------


def contact_merge_check(*, workspace: Workspace, target: Contact, other: Contact) -> None:
    """ServiceError when merging ``other`` into ``target`` is refused (the preview asks too)."""
    if target.workspace_id != workspace.pk or other.workspace_id != workspace.pk:
        raise ServiceError("both contacts must belong to the workspace")
    if target.pk == other.pk:
        raise ServiceError("cannot merge a contact into itself")
    if target.merged_into_id or other.merged_into_id:
        raise ServiceError("merge top-level contacts only (one of these is already merged into another)")
    if target.is_self or other.is_self:
        raise ServiceError("the workspace owner's own contact cannot be merged")


@transaction.atomic
def contact_merge(*, workspace: Workspace, target: Contact, other: Contact) -> Contact:
    """Merge ``other`` into ``target``: identities move, both timelines are rebuilt, and
    ``other`` remembers where it went so that ``contact_unmerge`` can split them again."""
    if target.workspace_id != workspace.pk or other.workspace_id != workspace.pk:
        raise ServiceError("both contacts must belong to the workspace")  # before locking another's rows
    target = Contact.objects.select_for_update().get(pk=target.pk)
    other = Contact.objects.select_for_update().get(pk=other.pk)
    contact_merge_check(workspace=workspace, target=target, other=other)  # on the locked rows
    merge_name_apply(survivor=target, other=other)  # which name wins, and how to undo it
    other.merged_into = target
    other.merged_at = timezone.now()
    other.save(update_fields=["merged_into", "merged_at"])
    Identity.objects.filter(contact=other).update(contact=target)
    # Before the rebuild: the strength's move reads the timelines as they were.
    moved = contact_rank_merge(target_id=target.pk, other_id=other.pk)
    contact_timelines_rebuild(contact_ids=[target.pk, other.pk], rank=not moved)
    target.refresh_from_db()
    return target


@transaction.atomic
def contact_unmerge(*, workspace: Workspace, contact: Contact) -> list[Contact]:
    """Undo merges. For a merged contact, split it (with what was merged into it) off its
    parent; for a top-level contact, split off every contact merged into it. Returns the
    top-level contacts that result, the one that stays on top first."""
    if contact.workspace_id != workspace.pk:
        raise ServiceError("contact is not in this workspace")
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    if contact.merged_into_id:
        root = contact.root()
        detach = [contact]
    else:
        root = contact
        detach = list(Contact.objects.select_for_update().filter(merged_into=contact).order_by("pk"))
        if not detach:
            raise ServiceError(f"contact {contact.pk} has nothing merged into it")
    for child in sorted(detach, key=merge_order, reverse=True):  # latest first: names come back in turn
        merge_name_undo(child)
        child.merged_into = None
        child.merged_at = None
        child.save(update_fields=["merged_into", "merged_at"])
        Identity.objects.filter(home_contact__in=contact_subtree_ids(child)).update(contact=child)
    contact_timelines_rebuild(contact_ids=[root.pk, *[c.pk for c in detach]])
    result = [root, *detach]
    for c in result:
        c.refresh_from_db()
    return result

