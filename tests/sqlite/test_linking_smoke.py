"""Merge suggestions, merge previews and name precedence on SQLite (the embedded default): the
evidence pass, the CLI and the pages use nothing PostgreSQL-only."""

from __future__ import annotations

import io
import json

from django.core.management import call_command

from streams.linking import merge_suggestions_refresh, merge_suggestions_score
from streams.models import Contact, MergeSuggestion, Workspace


def cli(*args):
    out = io.StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_suggestions_merge_preview_and_undo_on_sqlite(demo, client):
    workspace = Workspace.objects.get(slug=demo["workspace"])
    merge_suggestions_score(workspace=workspace)  # the whole evidence pass runs
    first = merge_suggestions_refresh(workspace=workspace)
    assert merge_suggestions_refresh(workspace=workspace).new == 0  # a second pass finds nothing new
    rows = cli("mesh_contacts", "suggestions", "--workspace", workspace.slug)
    assert len(rows) == first.suggested == MergeSuggestion.objects.filter(state="open").count()
    assert all(set(r) == {"id", "contacts", "score", "reasons"} for r in rows)

    assert client.login(username=demo["username"], password="demo-pass-123")
    assert client.get("/contacts/suggestions/").status_code == 200

    a, b = Contact.objects.filter(workspace=workspace, merged_into=None, is_self=False).order_by("pk")[:2]
    shown = cli("mesh_contacts", "merge", str(a.pk), str(b.pk), "--into", str(b.pk), "--dry-run",
                "--workspace", workspace.slug)
    assert shown["survivor"]["id"] == b.pk and not Contact.objects.get(pk=a.pk).merged_into_id
    merged = cli("mesh_contacts", "merge", str(a.pk), str(b.pk), "--into", str(b.pk), "--workspace", workspace.slug)
    assert merged["id"] == b.pk
    page = client.get(f"/contacts/{b.pk}/").content.decode()
    assert f'href="/contacts/{a.pk}/unmerge/"' in page
    cli("mesh_contacts", "unmerge", str(a.pk), "--workspace", workspace.slug)
    assert Contact.objects.get(pk=a.pk).merged_into_id is None
