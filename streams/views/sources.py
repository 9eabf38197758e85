"""The source pages: every source with its health and recent runs, and adding, editing,
enabling, removing and syncing one. Writes go through ``streams.sources`` and services."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from connectors.base import ConfigError, registry

from ..models import Source
from ..presenters import connector_info, lag_words
from ..services import ServiceError, source_create
from ..sources import (
    connector_fields,
    source_config_fields,
    source_disable,
    source_edit,
    source_enable,
    source_failures_dismiss,
    source_history,
    source_is_file_import,
    source_remove,
    sources_overview,
)
from ..tasks import sync_source
from .common import member_workspace


@login_required
@require_safe
def source_list(request: HttpRequest) -> HttpResponse:
    workspace = member_workspace(request)
    sources, summary = [], None
    if workspace is not None:
        rows, summary = sources_overview(workspace=workspace)
        for row in rows:
            s = row["source"]
            sources.append({
                **row,
                "lag": lag_words(row["health"]["lag_seconds"]),
                "file_import": source_is_file_import(source=s),
                **source_history(source=s),
            })
    return render(request, "streams/source_list.html", {"workspace": workspace, "sources": sources,
                                                        "summary": summary})


def _member_source(request: HttpRequest, source_id: int) -> Source:
    return get_object_or_404(Source.objects.select_related("workspace"), pk=source_id,
                             workspace__memberships__user=request.user)


def _source_anchor(source_id: int) -> str:
    return reverse("source-list") + f"#source-{source_id}"


def _posted_pairs(request: HttpRequest, prefix: str, names) -> dict[str, str]:
    return {n: request.POST.get(f"{prefix}{n}", "").strip() for n in names if f"{prefix}{n}" in request.POST}


def _posted_interval(request: HttpRequest) -> int | None:
    text = request.POST.get("interval_seconds", "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ServiceError(f"the interval is a number of seconds, not {text[:40]!r}") from None


@login_required
def source_add(request: HttpRequest) -> HttpResponse:
    """Add a source: choose a connector, then fill in its config and secrets."""
    workspace = member_workspace(request)
    if workspace is None:
        raise Http404("no workspace")
    key = request.POST.get("connector") or request.GET.get("connector", "")
    cls = registry.connectors.get(key)
    error = ""
    if request.method == "POST" and cls is not None:
        fields, secrets = connector_fields(cls=cls)
        config = {k: v for k, v in _posted_pairs(request, "config:", [f["name"] for f in fields]).items() if v}
        given = {k: v for k, v in _posted_pairs(request, "secret:", [x["name"] for x in secrets]).items() if v}
        try:
            source = source_create(workspace=workspace, connector=key, name=request.POST.get("name", "").strip(),
                                   config=config, secrets=given, interval_seconds=_posted_interval(request))
        except (ConfigError, ServiceError) as exc:
            error = str(exc)
        else:
            messages.success(request, f"Added “{source.name}”.")
            return redirect(_source_anchor(source.pk))
        fields, secrets = connector_fields(cls=cls, config=config)
    elif request.method not in ("GET", "HEAD", "POST"):
        return HttpResponse(status=405)
    elif cls is not None:
        fields, secrets = connector_fields(cls=cls)
    else:
        fields, secrets = [], []
    return render(request, "streams/source_form.html", {
        "workspace": workspace, "source": None, "connector": connector_info(cls), "error": error, "fields": fields,
        "secrets": secrets, "name": request.POST.get("name", ""),
        "interval": request.POST.get("interval_seconds", ""),
        "connectors": [connector_info(registry.connectors[k]) for k in registry.keys()],
    })


@login_required
def source_edit_view(request: HttpRequest, source_id: int) -> HttpResponse:
    """Edit a source's name, interval, config and secrets. Secrets are write-only: the form
    never shows them, and an empty field keeps the stored one."""
    source = _member_source(request, source_id)
    error = ""
    fields, secrets = source_config_fields(source=source)
    if request.method == "POST":
        config = _posted_pairs(request, "config:", [f["name"] for f in fields])
        given = {k: v for k, v in _posted_pairs(request, "secret:", [x["name"] for x in secrets]).items() if v}
        try:
            source_edit(source=source, config=config, secrets=given, name=request.POST.get("name"),
                        interval_seconds=_posted_interval(request))
        except ServiceError as exc:
            error = str(exc)
            for f in fields:  # show what was typed, so it can be corrected
                f["value"] = config.get(f["name"], f["value"])
        else:
            messages.success(request, f"Saved “{source.name}”.")
            return redirect(_source_anchor(source.pk))
    elif request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    return render(request, "streams/source_form.html", {
        "workspace": source.workspace, "source": source, "connector": connector_info(registry.connectors.get(source.connector)),
        "error": error, "fields": fields, "secrets": secrets,
        "name": request.POST.get("name", source.name), "interval": request.POST.get("interval_seconds", source.interval_seconds),
    })


@login_required
@require_POST
def source_enabled_view(request: HttpRequest, source_id: int) -> HttpResponse:
    """Disable (``enabled=0``) or enable (``enabled=1``) a source."""
    source = _member_source(request, source_id)
    if request.POST.get("enabled") == "1":
        source_enable(source=source)
        messages.success(request, f"“{source.name}” is enabled.")
    else:
        source_disable(source=source)
        messages.success(request, f"“{source.name}” is disabled: it is not synced until enabled again.")
    return redirect(_source_anchor(source.pk))


@login_required
def source_remove_view(request: HttpRequest, source_id: int) -> HttpResponse:
    """Ask, then remove: the source's activities stay on their timelines."""
    source = _member_source(request, source_id)
    if request.method == "POST":
        try:
            kept = source_remove(source=source)
        except ServiceError as exc:
            messages.error(request, str(exc))
            return redirect(_source_anchor(source.pk))
        messages.success(request, f"Removed “{source.name}”; its {kept:,} activities stay on their timelines.")
        return redirect("source-list")
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    return render(request, "streams/source_remove.html", {
        "workspace": source.workspace, "source": source, "activities": source.activities.count(),
        "runs": source.runs.count(), "failures": source.failures.filter(resolved_at=None).count(),
    })


@login_required
@require_POST
def source_failures_dismiss_view(request: HttpRequest, source_id: int) -> HttpResponse:
    source = _member_source(request, source_id)
    n = source_failures_dismiss(source=source)
    messages.success(request, f"Dismissed {n} import failure{'' if n == 1 else 's'} of “{source.name}”.")
    return redirect(_source_anchor(source.pk))


@login_required
@require_POST
def source_sync_now(request: HttpRequest, source_id: int) -> HttpResponse:
    """Queue a sync of the source now (a Celery task; run in-process when there is no broker)."""
    source = _member_source(request, source_id)
    if not source.enabled:
        messages.error(request, f"“{source.name}” is disabled.")
        return redirect(_source_anchor(source.pk))
    if source_is_file_import(source=source):
        # A file is read by mesh_import, on the machine that has it; a sync here would read
        # nothing new and record a success for nothing.
        messages.error(request, f"“{source.name}” is a file import: read it again with "
                                f"`mesh_import {source.connector} FILE --source {source.pk}`.")
        return redirect(_source_anchor(source.pk))
    try:
        result = sync_source.delay(source.pk, trigger="web")
    except Exception as exc:  # eager mode runs the sync here; a failure is recorded on the source
        messages.error(request, f"Sync of “{source.name}” failed: {type(exc).__name__}: {str(exc)[:200]}")
    else:
        outcome = getattr(result, "result", None) if getattr(result, "ready", lambda: False)() else None
        if isinstance(outcome, dict) and "run" in outcome:
            messages.success(request, f"Synced “{source.name}”: {outcome['new']} new, {outcome['duplicate']} "
                                      f"duplicate, {outcome['failed']} failed.")
        elif isinstance(outcome, dict) and outcome.get("error"):
            messages.error(request, f"Sync of “{source.name}” failed: {outcome['error']}")
        elif isinstance(outcome, dict) and outcome.get("skipped"):
            messages.info(request, f"“{source.name}”: {outcome['skipped']}.")
        else:
            messages.success(request, f"Sync of “{source.name}” queued.")
    return redirect(_source_anchor(source.pk))
