"""/sources/: add, edit (secrets write-only), disable, remove (activities stay), dismiss
failures; unhealthy sources first, lag in words, a summary line; members only."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client
from django.urls import reverse

from streams.crypto import secrets_decrypt
from streams.models import Activity, ImportFailure, Source, SyncRun
from tests.factories import make_event
from tests.fakes.cli import run, run_json
from tests.fakes.ticker import ticker_source

pytestmark = pytest.mark.usefixtures("ticker")


def file_source(workspace, device, tmp_path, lines):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    run("mesh_import", "device", str(path), "--device", str(device.pk), "--workspace", "acme", "--json")
    return Source.objects.get(workspace=workspace, connector="device")


def test_page_puts_sources_needing_attention_first_with_a_summary_and_lag_in_words(member_client, workspace):
    fine = ticker_source(workspace, "A fine one")
    run_json("mesh_sync", str(fine.pk), "--workspace", "acme")
    run_ = SyncRun.objects.get(source=fine)
    SyncRun.objects.filter(pk=run_.pk).update(newest_item_at=run_.finished_at - dt.timedelta(days=3, hours=2))
    ticker_source(workspace, "Z broken")  # never synced
    off = ticker_source(workspace, "B off")
    run_json("mesh_source", "disable", str(off.pk), "--workspace", "acme")
    page = member_client.get(reverse("source-list")).content.decode()
    assert "3 sources · " in page and "1 needs attention" in page and "1 disabled" in page
    assert page.index("Z broken") < page.index("A fine one") < page.index("B off")
    assert ">3 days<" in page.replace("\xa0", " ")  # timesince joins with no-break spaces


def test_add_validates_with_the_connector_and_saves_nothing_on_error(member_client, workspace):
    form = {"connector": "ticker", "name": "Feed", "config:count": "-2", "secret:api_key": "k-1"}
    page = member_client.post(reverse("source-add"), form)
    assert page.status_code == 200 and "count must be 0 or more" in page.content.decode()
    assert not Source.objects.filter(workspace=workspace).exists()
    response = member_client.post(reverse("source-add"), {**form, "config:count": "4", "interval_seconds": "60"})
    source = Source.objects.get(workspace=workspace, name="Feed")
    assert response.status_code == 302 and source.config == {"count": "4"} and source.interval_seconds == 60
    assert secrets_decrypt(source.secrets_encrypted) == {"api_key": "k-1"}


def test_edit_never_shows_a_secret_and_an_empty_field_keeps_it(member_client, workspace):
    source = ticker_source(workspace)
    page = member_client.get(reverse("source-edit", args=[source.pk])).content.decode()
    assert "k-123" not in page and "leave empty to keep" in page and 'type="password"' in page
    response = member_client.post(reverse("source-edit", args=[source.pk]),
                                  {"name": "Renamed", "config:count": "7", "secret:api_key": ""})
    assert response.status_code == 302
    source.refresh_from_db()
    assert (source.name, source.config) == ("Renamed", {"count": "7"})
    assert secrets_decrypt(source.secrets_encrypted) == {"api_key": "k-123"}
    page = member_client.post(reverse("source-edit", args=[source.pk]), {"name": "Renamed", "config:count": "x"})
    assert "count: &#x27;x&#x27; is not a whole number" in page.content.decode()
    source.refresh_from_db()
    assert source.config == {"count": "7"}


def test_disable_enable_and_remove_after_confirmation_keeps_activities(member_client, workspace):
    source = ticker_source(workspace)
    run_json("mesh_sync", str(source.pk), "--workspace", "acme")
    member_client.post(reverse("source-enabled", args=[source.pk]), {"enabled": "0"})
    source.refresh_from_db()
    assert source.enabled is False
    member_client.post(reverse("source-enabled", args=[source.pk]), {"enabled": "1"})
    source.refresh_from_db()
    assert source.enabled is True
    confirm = member_client.get(reverse("source-remove", args=[source.pk])).content.decode()
    assert "its 3 activities" in confirm and Source.objects.filter(pk=source.pk).exists()
    member_client.post(reverse("source-remove", args=[source.pk]))
    assert not Source.objects.filter(pk=source.pk).exists()
    assert Activity.objects.filter(workspace=workspace, source=None).count() == 3


def test_dismiss_failures_resolves_them(member_client, workspace, device, tmp_path):
    source = file_source(workspace, device, tmp_path, [json.dumps(make_event("ok")), "not json"])
    assert "Dismiss 1 failure" in member_client.get(reverse("source-list")).content.decode()
    member_client.post(reverse("source-failures-dismiss", args=[source.pk]))
    assert not ImportFailure.objects.filter(source=source, resolved_at=None).exists()


def test_a_file_import_offers_no_sync_now_and_a_forced_post_records_nothing(member_client, workspace, device,
                                                                              tmp_path):
    source = file_source(workspace, device, tmp_path, [json.dumps(make_event("ok"))])
    page = member_client.get(reverse("source-list")).content.decode()
    assert reverse("source-sync", args=[source.pk]) not in page and "mesh_import device FILE" in page
    member_client.post(reverse("source-sync", args=[source.pk]))
    assert source.runs.count() == 1


def test_outsider_gets_404_and_posts_need_csrf(client, workspace, outsider, member):
    source = ticker_source(workspace)
    client.force_login(outsider)
    for name, method in (("source-edit", "get"), ("source-edit", "post"), ("source-enabled", "post"),
                         ("source-remove", "get"), ("source-remove", "post"), ("source-failures-dismiss", "post")):
        assert getattr(client, method)(reverse(name, args=[source.pk])).status_code == 404, name
    assert Source.objects.get(pk=source.pk).enabled
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(member)
    assert strict.post(reverse("source-remove", args=[source.pk])).status_code == 403
    assert Source.objects.filter(pk=source.pk).exists()
