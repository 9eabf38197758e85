"""Relationship strength and keep in touch on SQLite, the embedded default: the demo import kept
the aggregate through ingest's SQLite upsert, a rebuild gives the same rows, and the sorted
list, the going-cold page, its CLI and its feed answer."""

from __future__ import annotations

import io
import json

from django.core.management import call_command

from streams.models import Contact, ContactStrength, ConversationDay
from streams.ranking import rank_pending_refresh, workspace_rank_rebuild

ANA_PHONE = "+14155550100"


def cli(*args):
    out = io.StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def state(workspace):
    days = sorted(ConversationDay.objects.filter(contact__workspace=workspace).values_list(
        "contact_id", "day", "channel", "conversation", "inbound", "outbound", "mutual", "first_at", "last_at"))
    return days, sorted(ContactStrength.objects.filter(workspace=workspace).values_list("contact_id", "score"))


def test_demo_ranking_incremental_equals_rebuild_and_ana_is_scored(workspace):
    rank_pending_refresh()
    incremental = state(workspace)
    workspace_rank_rebuild(workspace=workspace)
    assert incremental == state(workspace) and incremental[0]
    ana = Contact.objects.get(workspace=workspace, merged_into=None, identities__value=ANA_PHONE)
    assert ContactStrength.objects.get(contact=ana).channels_365 >= 2


def test_sorted_list_cold_page_cli_and_feed(workspace, demo, client):
    rows = cli("mesh_contacts", "list", "--sort", "strength", "--workspace", workspace.slug)
    assert [r["strength"] for r in rows] == sorted((r["strength"] for r in rows), reverse=True)
    cli("mesh_contacts", "cadence", "--tier", "faint", "--every", "1d", "--workspace", workspace.slug)
    cli("mesh_contacts", "cadence", "--tier", "weak", "--every", "1d", "--workspace", workspace.slug)
    cold = cli("mesh_contacts", "cold", "--workspace", workspace.slug)
    assert cold and {"id", "name", "last_touch_at", "due_at", "strength"} <= set(cold[0])
    assert client.login(username=demo["username"], password="demo-pass-123")
    assert client.get("/cold/").status_code == 200
    assert client.get("/contacts/?sort=strength").status_code == 200
    token = cli("mesh_rank", "--feed-token", "create", "--workspace", workspace.slug)["token"]
    feed = client.get(f"/feeds/cold/{token}.json").json()
    assert [i["_mesh"]["id"] for i in feed["items"]][:3] == [c["id"] for c in cold][:3]


def test_the_ranking_benchmark_refuses_plainly_on_sqlite():
    import pytest
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="runs on PostgreSQL"):
        call_command("mesh_bench_rank", "--activities", "10", stdout=io.StringIO(), stderr=io.StringIO())
