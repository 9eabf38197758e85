"""The contact list and going-cold pages read indexes in their order on PostgreSQL: a page reads
the rows it shows instead of sorting (or scoring) every contact of the workspace."""

from __future__ import annotations

import pytest
from django.db import connection

from streams.models import Contact
from streams.selectors.contacts import ContactCursor, contacts_list

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL plans")


def plan(qs) -> str:
    with connection.cursor() as cur:
        # a test workspace is small enough to sort: ask whether the index *can* give the order
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_sort = off")
        sql, params = qs.query.sql_with_params()
        cur.execute("EXPLAIN " + sql, params)
        return "\n".join(r[0] for r in cur.fetchall())


def test_the_list_by_recency_reads_its_index_in_order(workspace):
    import datetime as dt

    from django.utils import timezone

    now = timezone.now()
    for i in range(6):
        Contact.objects.create(workspace=workspace, name=f"c{i}",
                               last_activity_at=None if i % 3 == 0 else now - dt.timedelta(days=i))
    rows = list(contacts_list(workspace=workspace)[:51])
    # contacts without activity last (NULLS LAST), newest id first among equals
    assert [c.last_activity_at is None for c in rows] == [False] * 4 + [True] * 2
    assert rows[-2].pk > rows[-1].pk
    first_page = plan(contacts_list(workspace=workspace)[:51])
    assert "contact_list_idx" in first_page and "Sort" not in first_page
    later = plan(contacts_list(workspace=workspace, before=ContactCursor.after(rows[1]))[:51])
    assert "contact_list_idx" in later and "Sort" not in later


def test_the_going_cold_page_scores_few_candidates_and_lists_what_scoring_all_lists(workspace):
    """The page's statement (a limit: candidates from strength_cold_idx under a bound) lists the
    same entries, in the same order, with the same total, as scoring every contact."""
    import datetime as dt
    import random

    from django.utils import timezone

    from streams.models import ContactStrength, KeepInTouch
    from streams.selectors.ranking import going_cold

    rng = random.Random(17)
    now = timezone.now()
    tiers = ["strong", "steady", "weak", "faint"]
    for i in range(160):
        contact = Contact.objects.create(workspace=workspace, name=f"c{i}")
        ContactStrength.objects.create(
            contact=contact, workspace=workspace, score=rng.choice([0, 3, 40, 40, 77, 100]), tier=rng.choice(tiers),
            last_touch_at=None if i % 17 == 0 else now - dt.timedelta(days=rng.uniform(0, 900)),
            computed_on=now.date())
        if i % 9 == 0:
            KeepInTouch.objects.create(contact=contact, every_days=rng.choice([3, 30, 400]), at_most_days=500)
    cadences = {"strong": (14, 42), "steady": (30, 90), "weak": None, "faint": (180, 365)}
    for when in (now, now - dt.timedelta(days=300), now + dt.timedelta(days=2000)):
        every = going_cold(workspace=workspace, now=when, cadences=cadences)
        assert len(every) > 10 and every.total == len(every)
        for limit in (1, 7, 50, 1000):
            page = going_cold(workspace=workspace, now=when, limit=limit, cadences=cadences)
            assert page == every[:limit] and page.total == every.total
    assert not going_cold(workspace=workspace, now=now - dt.timedelta(days=5000), limit=50, cadences=cadences)


def test_the_going_cold_page_with_a_tier_nobody_is_in(workspace):
    """A tier with a cadence and no one in it bounds nothing (and is not scanned for its highest score)."""
    import datetime as dt

    from django.utils import timezone

    from streams.models import ContactStrength
    from streams.selectors.ranking import going_cold

    now = timezone.now()
    for i in range(30):
        contact = Contact.objects.create(workspace=workspace, name=f"c{i}")
        ContactStrength.objects.create(contact=contact, workspace=workspace, score=i % 15, tier="faint",
                                       last_touch_at=now - dt.timedelta(days=200 + 7 * i), computed_on=now.date())
    cadences = {"strong": (14, 42), "steady": (30, 90), "faint": (180, 365)}
    every = going_cold(workspace=workspace, now=now, cadences=cadences)
    assert len(every) == 30
    for limit in (1, 10, 50):
        page = going_cold(workspace=workspace, now=now, limit=limit, cadences=cadences)
        assert page == every[:limit] and page.total == 30
