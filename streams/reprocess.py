"""Re-normalize stored raw items after a parser change, without contacting the source.

Every activity keeps the raw payload it came from; ``source_reprocess`` runs the connector's
current ``normalize`` over them and applies what changed (fields, participants, timelines).
Import failures of the source are retried from their stored payloads too. The dedup key (and
so the feed GUID) of a stored activity never changes. Running it twice changes nothing the
second time."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from connectors.base import ActivityDraft, BadItem, RawItem

from .ingest import activity_row, ingest_batch, participants_resolve
from .models import Activity, Identity, ImportFailure, Participant, Source, TimelineEntry
from .search import search_queue
from .services import _source_device, source_connector
from .timelines import contact_summaries_refresh, contact_timelines_rebuild

COMPARED = [
    "verb", "direction", "occurred_at", "subject", "text", "html", "url", "thread_key", "visibility",
    "attachments", "automated", "extra", "channel",
]  # fmt: skip
CHUNK = 500


@dataclass(slots=True)
class ReprocessResult:
    reprocessed: int = 0
    changed: int = 0
    failed: int = 0

    def counts(self) -> dict[str, int]:
        return {"reprocessed": self.reprocessed, "changed": self.changed, "failed": self.failed}


def source_reprocess(*, source: Source, progress=None) -> ReprocessResult:
    connector = source_connector(source=source)
    workspace = source.workspace
    result = ReprocessResult()
    last_pk = 0
    while True:
        chunk = list(
            Activity.objects.filter(source=source, pk__gt=last_pk).filter(raw__isnull=False).order_by("pk")[:CHUNK]
        )
        if not chunk:
            break
        last_pk = chunk[-1].pk
        with transaction.atomic():
            _reprocess_chunk(workspace, source, connector, chunk, result)
        if progress:
            progress(result)
    # Items that failed before may parse now.
    failures = list(ImportFailure.objects.filter(source=source, resolved_at=None).order_by("pk"))
    for i in range(0, len(failures), CHUNK):
        part = failures[i : i + CHUNK]
        items = [RawItem(f.external_id, f.payload) for f in part]
        stored = ingest_batch(workspace=workspace, connector=connector, items=items, source=source,
                              device=_source_device(source))
        result.reprocessed += len(part)
        result.changed += stored.new
        result.failed += stored.failed
    return result


def _reprocess_chunk(workspace, source, connector, chunk: list[Activity], result: ReprocessResult) -> None:
    drafts: list[tuple[RawItem, ActivityDraft, Activity]] = []
    for activity in chunk:
        raw = RawItem(activity.external_id, activity.raw, activity.created_at)
        result.reprocessed += 1
        try:
            draft = connector.normalize(raw)
            draft.validate()
            draft.clean()
        except BadItem:
            result.failed += 1
            continue
        except Exception:
            result.failed += 1
            continue
        draft.dedup_key = activity.dedup_key  # identity of a stored item never changes
        drafts.append((raw, draft, activity))
    if not drafts:
        return
    parts = participants_resolve(workspace, workspace.region, [(raw, d) for raw, d, _ in drafts])
    now = timezone.now()
    rebuild_contacts: set[int] = set()
    refresh_contacts: set[int] = set()
    reindex: list[int] = []
    for raw, draft, stored in drafts:
        resolved, invalid = parts[draft.dedup_key]
        fresh = activity_row(workspace, source, stored.device, connector.key, raw, draft, now, resolved, invalid)
        # Live state written after ingest (SMS delivery callbacks) is not in the raw item: keep it.
        if isinstance(stored.extra, dict) and "delivery" in stored.extra:
            fresh.extra = {**fresh.extra, "delivery": stored.extra["delivery"]}
        changes = {f: getattr(fresh, f) for f in COMPARED if getattr(fresh, f) != getattr(stored, f)}
        old_parts = set(Participant.objects.filter(activity=stored).values_list("identity_id", "role"))
        new_parts = {(ident.pk, role) for ident, role in resolved}
        if not changes and old_parts == new_parts:
            continue
        result.changed += 1
        if changes:
            changes["updated_at"] = now
            Activity.objects.filter(pk=stored.pk).update(**changes)
            if {"subject", "text"} & set(changes):
                reindex.append(stored.pk)
        if old_parts != new_parts:
            Participant.objects.filter(activity=stored).delete()
            Participant.objects.bulk_create(
                [Participant(activity=stored, identity_id=i, role=r) for i, r in new_parts], ignore_conflicts=True
            )
            idents = {i for i, _ in old_parts | new_parts}
            rebuild_contacts.update(
                c for c in Identity.objects.filter(pk__in=idents).values_list("contact_id", flat=True) if c
            )
        elif {"occurred_at", "channel", "direction"} & set(changes):
            # Same people: the timeline rows stay, their copied sort/filter columns move.
            entries = TimelineEntry.objects.filter(activity=stored)
            refresh_contacts.update(entries.filter(kind="c").values_list("owner_id", flat=True))
            entries.update(occurred_at=fresh.occurred_at, channel=fresh.channel, direction=fresh.direction)
    search_queue(activity_ids=reindex)
    if rebuild_contacts:
        contact_timelines_rebuild(contact_ids=sorted(rebuild_contacts))
    refresh_contacts -= rebuild_contacts
    if refresh_contacts:
        contact_summaries_refresh(contact_ids=sorted(refresh_contacts))
