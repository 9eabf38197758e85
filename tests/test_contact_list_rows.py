"""The contact list's rows as the page reads them (streams.selectors.contacts.contact_rows: values,
no model instances) and their last activity in words (streams.contact_list.last_seen, naturaltime
with its strings formatted once)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.utils import timezone, translation

from streams.contact_list import last_seen
from streams.models import Contact, ContactStrength, Identity
from streams.selectors.contacts import contact_rows, contacts_list
from streams.selectors.ranking import contacts_by_strength


@pytest.mark.parametrize("language", ["en-us", "fr"])
def test_last_seen_says_what_naturaltime_says(language):
    now = timezone.now()
    ages = [dt.timedelta(seconds=s) for s in (0, 1, 59, 61, 3599, 3601, 86399)] + [
        dt.timedelta(days=d, hours=h, minutes=m) for d in (1, 2, 6, 7, 8, 13, 20, 29, 30, 31, 59, 89, 364, 365, 400, 800)
        for h, m in ((0, 0), (5, 7), (23, 59))]
    with translation.override(language):
        for _ in range(2):  # the second pass from the memo
            for age in ages + [-dt.timedelta(days=3), -dt.timedelta(minutes=5)]:
                # a whole minute either way of a boundary: both read the clock, microseconds apart
                when = now - age - dt.timedelta(seconds=30)
                assert last_seen(when) == str(naturaltime(when)), (language, age)


@pytest.mark.django_db
def test_rows_carry_what_the_list_shows_in_the_lists_order(workspace):
    now = timezone.now()
    ana = Contact.objects.create(workspace=workspace, name="Ana", last_activity_at=now, channel_counts={"sms": 2})
    ben = Contact.objects.create(workspace=workspace, name="", last_activity_at=now - dt.timedelta(days=3))
    cleo = Contact.objects.create(workspace=workspace, name="Cleo")
    Identity.objects.create(workspace=workspace, kind="phone", value="+14155550100", contact=ana)
    Identity.objects.create(workspace=workspace, kind="email", value="ana@example.com", display="Ana", contact=ana,
                            avatar_url="https://pbs.twimg.com/a.jpg")
    ContactStrength.objects.create(contact=ben, workspace=workspace, score=40, tier="steady", computed_on=now.date())

    rows = contact_rows(contacts_list(workspace=workspace), limit=10)
    assert [r.pk for r in rows] == [ana.pk, ben.pk, cleo.pk]
    assert [str(r) for r in rows] == ["Ana", f"Contact {ben.pk}", "Cleo"]
    assert rows[0].channel_counts == {"sms": 2} and rows[0].last_activity_at == now
    assert sorted((i.kind, i.value, i.display, i.avatar_url) for i in rows[0].identities) == [
        ("email", "ana@example.com", "Ana", "https://pbs.twimg.com/a.jpg"), ("phone", "+14155550100", "", "")]
    assert rows[1].identities == [] and rows[0].tier is None

    by_strength = contact_rows(contacts_by_strength(workspace=workspace), limit=2, by_strength=True)
    assert [(r.pk, r.tier, r.rank_score) for r in by_strength] == [(ben.pk, "steady", 40), (cleo.pk, None, None)]
