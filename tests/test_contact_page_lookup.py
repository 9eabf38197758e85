"""The contact pages' lookup (streams.contact_page.member_contact, one raw statement) and the
timeline page's instances (built without Model.__init__): the same objects the ORM gives, and
membership of the workspace checked on every request, on both read paths."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext

from streams.contact_page import member_contact
from streams.models import Activity, Contact, ContactStrength, KeepInTouch, Membership
from streams.selectors.timelines import timeline_page
from streams.services import contact_merge
from tests.factories import ana, ingest_mail, mail, make_member, make_workspace


def orm_contact(contact_id: int, user) -> Contact:
    return Contact.objects.select_related("workspace", "merged_into", "keep_in_touch", "strength").get(
        pk=contact_id, workspace__memberships__user=user)


def related(obj, name: str) -> dict | None:
    try:
        return fields(getattr(obj, name))
    except (Contact.strength.RelatedObjectDoesNotExist, Contact.keep_in_touch.RelatedObjectDoesNotExist):
        return None
    except AttributeError:  # merged_into None
        return None


def fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


@pytest.mark.django_db
def test_the_lookup_gives_the_orms_contact_with_its_relations_attached(query_path, workspace, member):
    ingest_mail(workspace, [mail(1, day=1)])
    contact = ana(workspace)
    with CaptureQueriesContext(connection) as queries:
        found = member_contact(contact.pk, member.pk)
        assert found.workspace == workspace and found.merged_into is None
        with pytest.raises(Contact.strength.RelatedObjectDoesNotExist):
            found.strength  # noqa: B018 (missing, as select_related caches it: no query)
        with pytest.raises(Contact.keep_in_touch.RelatedObjectDoesNotExist):
            found.keep_in_touch  # noqa: B018
    assert [q["sql"].split()[0] for q in queries if not q["sql"].startswith("PREPARE")] == [
        "EXECUTE" if query_path == "prepared" and connection.vendor == "postgresql" else "SELECT"]
    assert fields(found) == fields(orm_contact(contact.pk, member)) and not found._state.adding

    ContactStrength.objects.create(contact=contact, workspace=workspace, tier="close", score=70,
                                   channels_90=["email"], computed_on=dt.date(2026, 1, 2))
    KeepInTouch.objects.create(contact=contact, every_days=7, at_most_days=21)
    survivor = Contact.objects.create(workspace=workspace, name="Survivor")
    contact_merge(workspace=workspace, target=survivor, other=contact)
    found, orm = member_contact(contact.pk, member.pk), orm_contact(contact.pk, member)
    with CaptureQueriesContext(connection) as queries:
        for name in ("workspace", "merged_into", "strength", "keep_in_touch"):
            assert related(found, name) == related(orm, name)
        assert found.merged_into == survivor
    assert len(queries) == 0
    assert fields(found) == fields(orm)
    # The survivor's own strength and cadence (the merge moves or recounts them).
    ContactStrength.objects.update_or_create(contact=survivor, defaults={
        "workspace": workspace, "tier": "close", "score": 70, "channels_90": ["email"], "computed_on": dt.date(2026, 1, 2)})
    KeepInTouch.objects.update_or_create(contact=survivor, defaults={"every_days": 7, "at_most_days": 21})
    found = member_contact(survivor.pk, member.pk)
    with CaptureQueriesContext(connection) as queries:
        assert found.strength.contact is found and found.strength.channels_90 == ["email"]
        assert found.keep_in_touch.every_days == 7 and found.merged_into is None
    assert len(queries) == 0
    orm = orm_contact(survivor.pk, member)
    assert fields(found) == fields(orm) and related(found, "strength") == related(orm, "strength")


@pytest.mark.django_db
def test_the_lookup_checks_membership_every_time(query_path, workspace, member):
    ingest_mail(workspace, [mail(1, day=1)])
    contact = ana(workspace)
    outsider = make_member(make_workspace("globex", "Globex"), "mallory")
    with pytest.raises(Http404):
        member_contact(contact.pk, outsider.pk)
    for missing in (contact.pk + 1000, 2**63, -(2**63) - 1):
        with pytest.raises(Http404):
            member_contact(missing, member.pk)
    assert member_contact(contact.pk, member.pk).pk == contact.pk
    Membership.objects.filter(user=member).delete()  # removed from the workspace: refused at once
    with pytest.raises(Http404):
        member_contact(contact.pk, member.pk)


@pytest.mark.django_db
def test_the_contact_pages_refuse_an_outsider(query_path, client, workspace, member):
    ingest_mail(workspace, [mail(1, day=1)])
    contact = ana(workspace)
    client.force_login(make_member(make_workspace("globex", "Globex"), "mallory"))
    assert client.get(f"/contacts/{contact.pk}/").status_code == 404
    assert client.get(f"/contacts/{2**70}/").status_code == 404
    client.force_login(member)
    assert client.get(f"/contacts/{contact.pk}/").status_code == 200


@pytest.mark.django_db
def test_the_timeline_pages_activities_are_the_orms(query_path, workspace):
    ingest_mail(workspace, [mail(n, day=1 + n) for n in range(3)])
    page = timeline_page(kind="c", owner_id=ana(workspace).pk)
    assert len(page.activities) == 3
    for activity in page.activities:
        orm = Activity.objects.defer("raw").get(pk=activity.pk)
        assert activity.get_deferred_fields() == orm.get_deferred_fields() == {"raw"}
        assert not activity._state.adding and activity._state.db == "default"
        assert fields(activity) == fields(orm)  # raw read when asked for, as the ORM's


@pytest.mark.django_db
def test_the_pages_identities_and_merged_contacts_are_the_orms(query_path, workspace):
    from streams.contact_page import contact_identities, merged_children
    from streams.selectors import contact_identities as orm_identities

    ingest_mail(workspace, [mail(1, day=1)])
    one, two = ana(workspace), Contact.objects.create(workspace=workspace, name="Two")
    survivor = Contact.objects.create(workspace=workspace, name="Survivor")
    for other in (two, one):
        contact_merge(workspace=workspace, target=survivor, other=other)
    assert merged_children(one) == [] and contact_identities(two) == []
    children = merged_children(survivor)
    assert [fields(c) for c in children] == [fields(c) for c in survivor.merged_children.order_by("pk")]
    assert [c.pk for c in children] == sorted([one.pk, two.pk])
    mine = contact_identities(survivor)
    assert mine and [fields(i) for i in mine] == [fields(i) for i in orm_identities(contact=survivor)]


@pytest.mark.django_db
def test_the_sms_forms_source_question_is_the_orms(query_path, workspace, other_workspace):
    from streams.contact_page import sending_source_exists
    from streams.models import Source

    assert not sending_source_exists(workspace.pk, ["twilio_sms"]) and not sending_source_exists(workspace.pk, [])
    Source.objects.create(workspace=other_workspace, connector="twilio_sms", name="Other's")
    assert not sending_source_exists(workspace.pk, ["twilio_sms"])
    Source.objects.create(workspace=workspace, connector="twilio_sms", name="Ours")
    assert sending_source_exists(workspace.pk, ["twilio_sms"]) and sending_source_exists(workspace.pk, {"x", "twilio_sms"})
    assert not sending_source_exists(workspace.pk, ["x"]) and not sending_source_exists(workspace.pk, [])
