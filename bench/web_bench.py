"""Server time of the web pages, through Django's test client, on the "bench" workspace that
``mesh_bench`` loads (``mesh_bench --activities 1000000 --skip-peer``, then ``mesh_bench_web``).

Measured (p50/p95/max in ms over ``samples`` requests each):

- contact page (first page of 50, header, heat strip) of the hot, a middling and a typical
  contact, warm (heat strip and rendered activities cached under keys that change with the data:
  the normal case) and cold (cache cleared before every request: a first visit);
- the "older" page at depths of 1,000, 10,000 and 50,000 rows of the hot contact, as mesh.js
  loads it (the items to append, ``X-Mesh-More: 1``) and as the whole page (without script);
- the contact list: first page, a page 5,000 contacts deep, a name search, a channel filter;
- full-text search across the workspace (frequent word, two words, a phrase, a word with no
  match) and inside the hot contact's timeline;
- the live-update poll, and the heat strip's query alone for the hot contact.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .run import WORKSPACE, pct

SEARCHES = {
    "frequent_word": "invoice",
    "two_words": "invoice renewal",
    "phrase": '"renewal invoice"',
    "no_match": "zebra",
}


def timed(fn: Callable[[], object], n: int, *, before: Callable[[], None] | None = None) -> dict:
    fn()  # warm up (connections, template cache)
    samples = []
    for _ in range(n):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return pct(samples)


class WebBench:
    def __init__(self, *, samples: int = 100, log=None):
        self.samples = samples
        self.log = log
        self.results: dict = {}

    def say(self, message: str) -> None:
        if self.log is not None:
            self.log.write(message + "\n")
            self.log.flush()

    def _client(self, ws):
        from django.contrib.auth import get_user_model
        from django.test import Client

        from streams.services import workspace_add_member

        user, _ = get_user_model().objects.get_or_create(username="bench-web-reader")
        workspace_add_member(workspace=ws, user=user)
        client = Client()
        client.force_login(user)
        return client

    def _get(self, client, url: str, params: dict | None = None, headers: dict | None = None):
        def get():
            response = client.get(url, params or {}, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{url} {params} answered {response.status_code}")
            return response

        return get

    def _contacts(self, ws) -> dict:
        from streams.models import Contact

        top = list(Contact.objects.filter(workspace=ws, merged_into=None, is_self=False)
                   .order_by("-activity_count").values_list("pk", "activity_count")[:2000])
        if not top:
            raise RuntimeError("no bench workspace: run `mesh_bench --activities 1000000 --skip-peer` first")

        def near(count):
            return min(top, key=lambda row: abs(row[1] - count))

        return {"hot": top[0], "middling": near(1000), "typical": near(100)}

    def run(self) -> dict:
        from django.core.cache import cache
        from django.db import connection

        from streams.heatmap import heat_weeks
        from streams.models import Activity, Contact, TimelineEntry, Workspace
        from streams.selectors import Cursor

        ws = Workspace.objects.filter(slug=WORKSPACE).first()
        if ws is None:
            raise RuntimeError("no bench workspace: run `mesh_bench --activities 1000000 --skip-peer` first")
        client = self._client(ws)
        n = self.samples
        r = self.results
        r["activities"] = Activity.objects.filter(workspace=ws).count()
        r["contacts_total"] = Contact.objects.filter(workspace=ws, merged_into=None).count()
        contacts = self._contacts(ws)
        r["contacts"] = {k: {"id": pk, "items": count} for k, (pk, count) in contacts.items()}
        with connection.cursor() as cur:
            cur.execute("ANALYZE streams_activity")

        self.say("contact pages ...")
        r["contact_page"] = {}
        for name, (pk, _count) in contacts.items():
            url = f"/contacts/{pk}/"
            r["contact_page"][name] = {
                "warm": timed(self._get(client, url), n),
                "cold_caches": timed(self._get(client, url), n, before=cache.clear),
            }
        hot = contacts["hot"][0]
        r["heat_strip_query_hot"] = timed(
            lambda: heat_weeks(kind="c", owner_id=hot), n
        )

        self.say("older pages ...")
        r["older_page"], r["older_page_whole"] = {}, {}
        hot_items = contacts["hot"][1]
        for depth in sorted({min(d, max(hot_items - 51, 0)) for d in (1_000, 10_000, 50_000)}):
            row = (TimelineEntry.objects.filter(kind="c", owner_id=hot).order_by("-occurred_at", "-activity_id")
                   .values_list("occurred_at", "activity_id")[depth : depth + 1])
            if not row:
                continue
            cursor = Cursor(*row[0]).encode()
            # What the "Older" link loads: with mesh.js, the items to append (X-Mesh-More);
            # without script, the whole page again with those items.
            r["older_page"][str(depth)] = timed(
                self._get(client, f"/contacts/{hot}/", {"before": cursor}, {"X-Mesh-More": "1"}), n)
            r["older_page_whole"][str(depth)] = timed(self._get(client, f"/contacts/{hot}/", {"before": cursor}), n)

        self.say("contact list ...")
        deep = (Contact.objects.filter(workspace=ws, merged_into=None, is_self=False)
                .order_by("-last_activity_at", "-pk").values_list("last_activity_at", "pk")[5000:5001])
        r["contact_list"] = {"first": timed(self._get(client, "/contacts/"), n)}
        if deep:
            when, pk = deep[0]
            cursor = f"{when.strftime('%Y%m%dT%H%M%S.%fZ')}_{pk}"
            r["contact_list"]["5000_deep"] = timed(self._get(client, "/contacts/", {"before": cursor}), n)
        r["contact_list"]["search_name"] = timed(self._get(client, "/contacts/", {"q": "person 4711"}), n)
        r["contact_list"]["channel_sms"] = timed(self._get(client, "/contacts/", {"channel": "sms"}), n)

        self.say("full-text search ...")
        r["search_workspace"] = {
            name: timed(self._get(client, "/search/", {"q": q}), n) for name, q in SEARCHES.items()
        }
        r["search_contact_hot"] = {
            name: timed(self._get(client, f"/contacts/{hot}/", {"q": q}), n) for name, q in SEARCHES.items()
        }

        self.say("live poll ...")
        r["live_poll"] = timed(self._get(client, f"/contacts/{hot}/since", {"after": "20991231T000000.000000Z_0"}), n)

        r["summary_p95_ms"] = {
            "contact_page_hot_warm": r["contact_page"]["hot"]["warm"]["p95"],
            "contact_page_hot_cold": r["contact_page"]["hot"]["cold_caches"]["p95"],
            "older_page_max": max((v["p95"] for v in r["older_page"].values()), default=None),
            "older_page_whole_max": max((v["p95"] for v in r["older_page_whole"].values()), default=None),
            "contact_list_max": max(v["p95"] for v in r["contact_list"].values()),
            "search_workspace_max": max(v["p95"] for v in r["search_workspace"].values()),
        }
        return r
