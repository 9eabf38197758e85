"""What a feed poll costs: a conditional GET answered 304, and a body served from the cache,
read no activity and run the same queries for every format (issue #6: under 2 ms at p95).

Runs on both read paths (the ``query_path`` fixture of tests/conftest.py: the ORM, and the prepared
statements of persistent connections), through the test client, so that the middleware is
counted too (no session or user is looked up for a feed)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from streams.feeds import views as feeds
from streams.models import Activity
from tests.fakes.readers import FORMATS, feed_url, get

# Every test runs on both read paths of the feeds (the ``query_path`` fixture).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("query_path")]

# Prepared: the token and the head in one statement. ORM: the token, then the head.
POLL_QUERIES = {"prepared": 1, "orm": 2}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_304_costs_the_token_and_the_head_in_every_format(client, ana_feed, query_path, fmt,
                                                            django_assert_max_num_queries):
    _contact, token = ana_feed
    first = get(client, feed_url(token, fmt))  # also records last use (once an hour) and prepares
    for header, value in (("If-None-Match", first["ETag"]), ("If-Modified-Since", first["Last-Modified"])):
        with django_assert_max_num_queries(POLL_QUERIES[query_path]):
            response = get(client, feed_url(token, fmt), **{header: value})
        assert response.status_code == 304 and response.content == b""
        assert response["ETag"] == first["ETag"] and response["Last-Modified"] == first["Last-Modified"]


def test_a_304_runs_the_same_queries_for_every_format(client, ana_feed):
    _contact, token = ana_feed
    etags = {fmt: get(client, feed_url(token, fmt))["ETag"] for fmt in FORMATS}
    statements = {}
    for fmt in FORMATS:
        with CaptureQueriesContext(connection) as queries:
            assert get(client, feed_url(token, fmt), **{"If-None-Match": etags[fmt]}).status_code == 304
        statements[fmt] = [re.sub(r"'[^']*'", "?", q["sql"]) for q in queries.captured_queries]  # the clock
    assert len({tuple(s) for s in statements.values()}) == 1, statements


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_cached_body_costs_what_a_304_costs(client, ana_feed, query_path, fmt, monkeypatch,
                                              django_assert_max_num_queries):
    _contact, token = ana_feed
    store: dict[str, bytes] = {}
    monkeypatch.setattr(feeds._Cache, "get", classmethod(lambda cls, key: store.get(key)))
    monkeypatch.setattr(feeds._Cache, "set", classmethod(lambda cls, key, body: store.__setitem__(key, body)))
    first = get(client, feed_url(token, fmt))
    monkeypatch.setattr(feeds.TimelineFeed, "get_feed", lambda *a: pytest.fail("rendered a cached page"))
    with django_assert_max_num_queries(POLL_QUERIES[query_path]):
        again = get(client, feed_url(token, fmt))
    assert again.status_code == 200 and again.content == first.content and again["ETag"] == first["ETag"]


@pytest.mark.parametrize("query_path", ["prepared"], indirect=True)  # what it is about: prepared only
def test_the_poll_statement_is_planned_once(client, workspace, ana_feed, query_path):
    """PostgreSQL plans a prepared statement for its first five executions, then keeps a generic
    plan unless that looks costlier; then it plans every execution again (0.7 ms, three times
    the execution at 1,000,000 activities). A parameter in the tombstones' range condition
    (``erased_at >= $n``, which a generic plan estimates as a third of the activities) did that
    as soon as the activities table was not tiny."""
    _contact, token = ana_feed
    with connection.cursor() as cur:  # enough activities for a sequential scan to look costly
        cur.execute(f"""
            INSERT INTO {Activity._meta.db_table} (connector, external_id, dedup_key, channel, verb, direction,
                occurred_at, subject, text, html, url, thread_key, visibility, attachments, automated, extra,
                created_at, updated_at, workspace_id)
            SELECT 'filler', n::text, 'filler:' || n, 'email', 'receive', 'in', now() - n * interval '1 minute',
                   '', '', '', '', '', 'private', '[]', false, '{{}}', now(), now(), %s
            FROM generate_series(1, 20000) AS n""", [workspace.pk])
        cur.execute(f"ANALYZE {Activity._meta.db_table}")

    def plans():
        with connection.cursor() as cur:
            cur.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                        "WHERE name LIKE 'mesh_feed_poll%%'")
            return cur.fetchone()

    etag = get(client, feed_url(token, "atom"))["ETag"]
    for _ in range(6):
        get(client, feed_url(token, "atom"), **{"If-None-Match": etag})
    generic, custom = plans()
    for _ in range(10):
        assert get(client, feed_url(token, "atom"), **{"If-None-Match": etag}).status_code == 304
    after = plans()
    with connection.cursor() as cur:  # ANALYZE writes the table's size outside the transaction
        cur.execute(f"DELETE FROM {Activity._meta.db_table} WHERE connector = 'filler'")
        cur.execute(f"ANALYZE {Activity._meta.db_table}")
    assert after == (generic + 10, custom)
