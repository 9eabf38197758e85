"""The contact page's timeline blocks from the fragment cache (streams.page_cache): served again
without rendering, and never stale: whatever the blocks show changes the key."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from tests.factories import ana, ingest_mail, mail
from tests.fakes.readers import text_of

ITEMS = "streams/_timeline_items.html"


def timeline_of(html: str) -> str:
    return html[html.index('<div class="live-items"'):html.index('<nav class="pager"')]


def rendered(response) -> list[str]:
    return [t.name for t in response.templates]


@pytest.mark.django_db
def test_the_timeline_blocks_come_from_the_cache_and_are_never_stale(member_client, workspace):
    cache.clear()
    ingest_mail(workspace, [mail(1, day=1, thread_key="t1"), mail(2, day=1, thread_key="t1", subject="Re: Renewal quote"),
                            mail(3, day=2, subject="Lunch")])
    url = f"/contacts/{ana(workspace).pk}/"
    first = member_client.get(url)
    assert ITEMS in rendered(first)
    body = text_of(first)
    assert body.count('<section class="thread"') == 1 and "· 2 messages" in body
    again = member_client.get(url)
    assert ITEMS not in rendered(again)  # served from the cache
    assert timeline_of(text_of(again)) == timeline_of(body)

    # A new message joins the thread: the block changes, so does its key.
    ingest_mail(workspace, [mail(4, day=3, thread_key="t1", subject="Re: Renewal quote")])
    grown = member_client.get(url)
    assert ITEMS in rendered(grown) and "· 3 messages" in text_of(grown)

    # The reader's zone moves the day headings: another key.
    member_client.post("/settings/time-zone/", {"time_zone": "Pacific/Kiritimati"})
    kiritimati = text_of(member_client.get(url))
    assert timeline_of(kiritimati) != timeline_of(text_of(grown))

    # The empty page's wording depends on the filters: a filtered page never gets the plain one.
    nothing = text_of(member_client.get(url + "?channel=sms"))
    assert "Nothing matches these filters." in nothing and "No activity yet." not in nothing


@pytest.mark.django_db
def test_a_cached_timeline_is_what_the_template_renders(member_client, workspace):
    cache.clear()
    ingest_mail(workspace, [mail(n, day=1 + n % 4, thread_key=f"t{n % 3}") for n in range(12)])
    url = f"/contacts/{ana(workspace).pk}/"
    cold = timeline_of(text_of(member_client.get(url)))
    warm = timeline_of(text_of(member_client.get(url)))
    cache.clear()
    assert cold == warm == timeline_of(text_of(member_client.get(url)))
