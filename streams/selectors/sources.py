"""What a source has stored and how its runs went, read by the connector conformance kit
(``connectors.testing``), which may read the core only through the selectors."""

from __future__ import annotations

from django.db.models import QuerySet

from ..models import Activity, ImportFailure, Source, SyncRun, TimelineEntry


def source_activity_external_ids(*, source: Source) -> list[str]:
    """The external id of every activity the source stored (one per activity)."""
    return list(Activity.objects.filter(source=source).values_list("external_id", flat=True))


def source_import_failures(*, source: Source) -> QuerySet[ImportFailure]:
    return ImportFailure.objects.filter(source=source)


def source_latest_run(*, source: Source) -> SyncRun | None:
    return SyncRun.objects.filter(source=source).order_by("-started_at").first()


def timeline_entries_total(*, workspace_id: int) -> int:
    """How many timeline rows the workspace's activities have, on every timeline."""
    return TimelineEntry.objects.filter(activity__workspace_id=workspace_id).count()
