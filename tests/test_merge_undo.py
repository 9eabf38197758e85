"""Merges with a preview and a chosen survivor, and undoing exactly one merge: a dry run changes
nothing, the survivor is the one asked for, one child among two splits off alone, nested merges
(A ← B ← C) come apart where asked, and a name a merge took goes back."""

from __future__ import annotations

import pytest

from streams.contacts import contact_rename
from streams.models import Contact, Identity, TimelineEntry
from streams.services import contact_merge, contact_unmerge
from streams.timelines import workspace_timelines_rebuild
from tests.factories import contact_for, ingest_drafts
from tests.fakes.cli import run_json

ME = {"role": "to", "kind": "email", "value": "me@mesh.example"}


def state(workspace):
    """Every contact's tree position, name, identities, timeline and summary."""
    return {
        c.pk: (c.merged_into_id, c.name, c.name_source,
               sorted(Identity.objects.filter(contact=c).values_list("kind", "value")),
               sorted(TimelineEntry.objects.filter(kind="c", owner_id=c.pk).values_list("activity_id", flat=True)),
               c.activity_count, c.channel_counts, c.last_activity_at)
        for c in Contact.objects.filter(workspace=workspace, is_self=False).order_by("pk")
    }


def timelines(workspace):
    return {pk: row[4:] for pk, row in state(workspace).items() if row[0] is None}


def rebuilt(workspace):
    workspace_timelines_rebuild(workspace_id=workspace.pk)
    return timelines(workspace)


@pytest.fixture
def people(workspace):
    """Ana by phone (a nickname), by personal mail and by work mail, in one shared thread."""
    ingest_drafts(workspace, [
        ("s1", {"channel": "sms", "occurred_at": "2026-05-01T10:00:00+00:00", "text": "hi", "direction": "in",
                "participants": [{"role": "from", "kind": "phone", "value": "+14155550100", "display": "Ana"}]}),
        ("m1", {"channel": "email", "occurred_at": "2026-05-02T10:00:00+00:00", "thread_key": "t1", "direction": "in",
                "participants": [{"role": "from", "kind": "email", "value": "ana@example.com",
                                  "display": "Ana Souza"}, ME]}),
        ("m2", {"channel": "email", "occurred_at": "2026-05-03T10:00:00+00:00", "thread_key": "t1", "direction": "in",
                "participants": [{"role": "from", "kind": "email", "value": "ana@work.example",
                                  "display": "Ana (work)"}, ME]}),
        ("m3", {"channel": "email", "occurred_at": "2026-05-04T10:00:00+00:00", "thread_key": "t2", "direction": "in",
                "participants": [{"role": "from", "kind": "email", "value": "ana@work.example"},
                                 {"role": "cc", "kind": "phone", "value": "+14155550100"}]}),
    ])
    return {
        "phone": contact_for(workspace, "phone", "+14155550100"),
        "mail": contact_for(workspace, "email", "ana@example.com"),
        "work": contact_for(workspace, "email", "ana@work.example"),
    }


def test_dry_run_shows_the_merge_and_changes_nothing(workspace, people):
    before = state(workspace)
    shown = run_json("mesh_contacts", "merge", str(people["phone"].pk), str(people["mail"].pk), "--dry-run",
                     "--workspace", workspace.slug)
    assert state(workspace) == before
    assert shown["dry_run"] is True
    assert shown["survivor"]["id"] == people["phone"].pk and shown["merged"]["id"] == people["mail"].pk
    assert shown["moves"] == {"identities": ["email:ana@example.com"], "activities": 1, "counts": {"email": 1},
                              "contacts": []}
    # The phone's "Ana" is a nickname; the mail's display name is the stronger source.
    assert shown["name"] == {"name": "Ana Souza", "from": "merged", "source": "email"}
    assert shown["overlap"] == {"activities": 0, "threads": 0}
    work = run_json("mesh_contacts", "merge", str(people["work"].pk), str(people["phone"].pk), "--dry-run",
                    "--workspace", workspace.slug)
    assert work["overlap"] == {"activities": 1, "threads": 1}  # m3 has both
    assert work["activities_after"] == 2 + 2 - 1
    assert state(workspace) == before


def test_unmerge_dry_run_changes_nothing(workspace, people):
    contact_merge(workspace=workspace, target=people["phone"], other=people["mail"])
    before = state(workspace)
    shown = run_json("mesh_contacts", "unmerge", str(people["mail"].pk), "--dry-run", "--workspace", workspace.slug)
    assert shown["stays"]["id"] == people["phone"].pk
    assert shown["split_off"] == [{"contact": shown["split_off"][0]["contact"], "identities": ["email:ana@example.com"]}]
    assert state(workspace) == before


def test_the_survivor_is_the_one_chosen(workspace, people):
    result = run_json("mesh_contacts", "merge", str(people["phone"].pk), str(people["mail"].pk),
                      "--into", str(people["mail"].pk), "--workspace", workspace.slug)
    assert result["id"] == people["mail"].pk and result["name"] == "Ana Souza"
    assert sorted(result["identities"]) == ["email:ana@example.com", "phone:+14155550100"]
    assert Contact.objects.get(pk=people["phone"].pk).merged_into_id == people["mail"].pk
    assert timelines(workspace) == rebuilt(workspace)


def test_unmerge_of_one_child_among_two_leaves_the_other_merged(workspace, people):
    original = state(workspace)
    contact_merge(workspace=workspace, target=people["phone"], other=people["mail"])
    contact_merge(workspace=workspace, target=people["phone"], other=people["work"])
    result = contact_unmerge(workspace=workspace, contact=people["mail"])
    assert [c.pk for c in result] == [people["phone"].pk, people["mail"].pk]
    now = state(workspace)
    assert now[people["work"].pk][0] == people["phone"].pk  # still merged
    assert now[people["mail"].pk] == original[people["mail"].pk]
    assert now[people["phone"].pk][3] == [("email", "ana@work.example"), ("phone", "+14155550100")]
    assert timelines(workspace) == rebuilt(workspace)
    contact_unmerge(workspace=workspace, contact=people["work"])
    assert state(workspace) == original


def test_nested_merges_come_apart_where_asked(workspace, people):
    original = state(workspace)
    phone, mail, work = people["phone"], people["mail"], people["work"]
    contact_merge(workspace=workspace, target=mail, other=work)  # mail ← work
    contact_merge(workspace=workspace, target=phone, other=mail)  # phone ← mail ← work
    assert Identity.objects.filter(contact=phone).count() == 3
    # Undo the inner merge: work comes back with its own identity; mail stays inside phone.
    contact_unmerge(workspace=workspace, contact=work)
    now = state(workspace)
    assert now[work.pk] == original[work.pk]
    assert now[mail.pk][0] == phone.pk
    assert now[phone.pk][3] == [("email", "ana@example.com"), ("phone", "+14155550100")]
    assert timelines(workspace) == rebuilt(workspace)
    contact_unmerge(workspace=workspace, contact=mail)
    assert state(workspace) == original


def test_nested_unmerge_of_the_middle_takes_its_child_along(workspace, people):
    phone, mail, work = people["phone"], people["mail"], people["work"]
    contact_merge(workspace=workspace, target=mail, other=work)
    contact_merge(workspace=workspace, target=phone, other=mail)
    contact_unmerge(workspace=workspace, contact=mail)
    assert sorted(Identity.objects.filter(contact=mail).values_list("value", flat=True)) == [
        "ana@example.com", "ana@work.example"]
    assert Contact.objects.get(pk=work.pk).merged_into_id == mail.pk
    assert timelines(workspace) == rebuilt(workspace)


def test_a_name_the_merge_took_goes_back_when_it_is_undone(workspace, people):
    phone, mail = people["phone"], people["mail"]
    assert (phone.name, phone.name_source) == ("Ana", "phone")
    survivor = contact_merge(workspace=workspace, target=phone, other=mail)
    assert (survivor.name, survivor.name_source) == ("Ana Souza", "email")
    contact_unmerge(workspace=workspace, contact=mail)
    phone.refresh_from_db()
    assert (phone.name, phone.name_source) == ("Ana", "phone")


def test_names_taken_by_two_merges_go_back_in_turn_whatever_the_order(workspace, people):
    phone, mail, work = people["phone"], people["mail"], people["work"]
    contact_rename(workspace=workspace, contact=work, name="Ana at Work")  # by hand: the strongest
    contact_merge(workspace=workspace, target=phone, other=mail)  # takes "Ana Souza"
    contact_merge(workspace=workspace, target=phone, other=work)  # takes "Ana at Work"
    assert Contact.objects.get(pk=phone.pk).name == "Ana at Work"
    contact_unmerge(workspace=workspace, contact=mail)  # the older merge first
    assert Contact.objects.get(pk=phone.pk).name == "Ana at Work"
    contact_unmerge(workspace=workspace, contact=work)
    assert Contact.objects.get(pk=phone.pk).name == "Ana"


def test_a_name_set_by_hand_after_the_merge_stays_on_undo(workspace, people):
    survivor = contact_merge(workspace=workspace, target=people["phone"], other=people["mail"])
    contact_rename(workspace=workspace, contact=survivor, name="Ana S.")
    contact_unmerge(workspace=workspace, contact=people["mail"])
    assert Contact.objects.get(pk=survivor.pk).name == "Ana S."


def test_web_preview_chooses_the_survivor_and_the_page_undoes_one_merge(workspace, people, member_client):
    phone, mail, work = people["phone"], people["mail"], people["work"]
    page = member_client.get(f"/contacts/{phone.pk}/merge/?other={mail.pk}&into={mail.pk}").content.decode()
    assert 'name="into"' in page and "Which contact stays" in page
    assert f'name="into" value="{mail.pk}" checked' in page and "shared conversations" in page
    response = member_client.post(f"/contacts/{phone.pk}/merge/", {"other": mail.pk, "into": mail.pk})
    assert response.status_code == 302 and response["Location"] == f"/contacts/{mail.pk}/"
    member_client.post(f"/contacts/{mail.pk}/merge/", {"other": work.pk})
    survivor_page = member_client.get(f"/contacts/{mail.pk}/").content.decode()
    assert survivor_page.count("undo this merge") == 2
    assert f'href="/contacts/{phone.pk}/unmerge/"' in survivor_page
    member_client.post(f"/contacts/{phone.pk}/unmerge/")
    assert Contact.objects.get(pk=phone.pk).merged_into_id is None
    assert Contact.objects.get(pk=work.pk).merged_into_id == mail.pk
    assert timelines(workspace) == rebuilt(workspace)


def test_the_undo_page_says_which_name_comes_back(workspace, people, member_client):
    contact_merge(workspace=workspace, target=people["phone"], other=people["mail"])
    page = member_client.get(f"/contacts/{people['mail'].pk}/unmerge/").content.decode()
    assert "<bdi>Ana Souza</bdi> gets back its name “<bdi>Ana</bdi>”." in page
