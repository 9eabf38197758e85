"""Search documents are built off the ingest path: ingest queues, the indexer drains, and
searches never miss an item while the queue drains."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from streams import search
from streams.models import Activity, SearchDocument, SearchPending
from streams.search import search_index_pending
from streams.selectors import search as search_read
from streams.selectors.search import search_backlog, timeline_search_page, workspace_search_page
from tests.factories import ingest_drafts, mixed_history

pytestmark = pytest.mark.django_db


def subjects(page) -> list[str]:
    return [a.subject or a.text for a in page.activities]


def test_ingest_queues_ids_and_search_tests_queued_items_directly(workspace):
    ana = mixed_history(workspace)
    assert SearchPending.objects.count() == 5 and not SearchDocument.objects.exists()
    assert subjects(workspace_search_page(workspace=workspace, q="lunch")) == ["Lunch"]
    assert subjects(timeline_search_page(kind="c", owner_id=ana.pk, q="quote")) == ["@me nice quote", "Renewal quote"]

    assert search_index_pending() == 5
    assert not SearchPending.objects.exists() and SearchDocument.objects.count() == 5
    # The same answers from the documents alone.
    assert subjects(workspace_search_page(workspace=workspace, q="lunch")) == ["Lunch"]
    assert subjects(timeline_search_page(kind="c", owner_id=ana.pk, q="quote")) == ["@me nice quote", "Renewal quote"]
    assert search_index_pending() == 0


def test_reimport_queues_nothing_and_reindexing_is_idempotent(workspace):
    mixed_history(workspace)
    search_index_pending()
    mixed_history(workspace)  # all duplicates
    assert not SearchPending.objects.exists()
    search.search_queue(activity_ids=list(Activity.objects.values_list("pk", flat=True)))
    assert search_index_pending(batch=2) == 5  # several batches, upserts
    assert SearchDocument.objects.count() == 5
    assert subjects(workspace_search_page(workspace=workspace, q="friday")) == ["Lunch"]


def test_an_erased_item_leaves_no_searchable_words(workspace):
    from streams.feed_tokens import activity_erase

    mixed_history(workspace)
    search_index_pending()
    lunch = Activity.objects.get(subject="Lunch")
    activity_erase(activity=lunch)
    assert not SearchDocument.objects.filter(activity_id=lunch.pk).exists()
    assert subjects(workspace_search_page(workspace=workspace, q="lunch")) == []
    # Re-queued (say by a reprocess) it still gets no document: there is nothing to index.
    search.search_queue(activity_ids=[lunch.pk])
    search_index_pending()
    assert not SearchDocument.objects.filter(activity_id=lunch.pk).exists()


def test_a_big_backlog_is_reported_instead_of_scanned(workspace, monkeypatch):
    monkeypatch.setattr(search_read, "PENDING_SCAN_MAX", 2)
    mixed_history(workspace)
    assert search_backlog() == 5
    assert subjects(workspace_search_page(workspace=workspace, q="lunch")) == []  # not searchable yet
    search_index_pending(batch=2, max_batches=1)
    assert search_backlog() == 3
    search_index_pending()
    assert search_backlog() == 0
    assert subjects(workspace_search_page(workspace=workspace, q="lunch")) == ["Lunch"]


def test_search_page_says_how_many_items_are_not_searchable_yet(member_client, workspace, monkeypatch):
    monkeypatch.setattr(search_read, "PENDING_SCAN_MAX", 2)
    mixed_history(workspace)
    body = member_client.get("/search/", {"q": "lunch"}).content.decode()
    assert "5 recent items are not searchable yet" in body
    search_index_pending()
    body = member_client.get("/search/", {"q": "lunch"}).content.decode()
    assert "not searchable yet" not in body and "Lunch" in body


def test_a_commit_kicks_the_indexer(workspace, django_capture_on_commit_callbacks):
    cache.delete(search.KICK_KEY)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ingest_drafts(workspace, [("k1", {"participants": [{"role": "from", "kind": "phone", "value": "+14155550100"}],
                                    "direction": "in", "channel": "sms", "occurred_at": "2026-04-11T12:00:00+00:00",
                                    "text": "kicked off"})])
    assert len(callbacks) == 1
    assert not SearchPending.objects.exists()
    assert SearchDocument.objects.count() == 1


def test_the_indexer_task_drains_everything(workspace):
    from streams.tasks import search_index

    mixed_history(workspace)
    assert search_index.delay().get() == 5
    assert not SearchPending.objects.exists() and SearchDocument.objects.count() == 5


def test_frequent_and_rare_words_give_the_same_pages(workspace, monkeypatch):
    """A word with more documents than CANDIDATES_MAX is matched by the semi-join walk instead
    of the candidate list: same results, same order, same paging."""
    ana = mixed_history(workspace)
    search_index_pending()
    rare = [subjects(workspace_search_page(workspace=workspace, q=q)) for q in ("quote", "lunch", "zebra")]
    rare_tl = subjects(timeline_search_page(kind="c", owner_id=ana.pk, q="quote", limit=1))
    monkeypatch.setattr(search_read, "CANDIDATES_MAX", 0)
    assert [subjects(workspace_search_page(workspace=workspace, q=q)) for q in ("quote", "lunch", "zebra")] == rare
    page = timeline_search_page(kind="c", owner_id=ana.pk, q="quote", limit=1)
    assert subjects(page) == rare_tl and page.next_cursor is not None
    older = timeline_search_page(kind="c", owner_id=ana.pk, q="quote", limit=1, before=page.next_cursor)
    assert subjects(older) == ["Renewal quote"]
