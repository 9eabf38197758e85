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
