"""The sync API's speed (issue 16): a device catching up ``changes`` changes in pages of
``page``, and the poll of a device that is up to date. Driven by ``manage.py mesh_bench_sync``.

A workspace of its own ("bench-sync", dropped first) gets one phone (scope ``own``) that
pushes ``changes`` call events with a participant from a pool of 500 numbers, through the
real ingest path, so the change log is written by its triggers as in production. Requests go
through Django's test client in this process: middleware, the token check, the rate limit,
the selectors and the JSON, without a socket. Figures: changes/s over the whole catch-up (and
each page's p50/p95), the same for a full download from ``since=0``, and the up-to-date poll's
p50/p95/max over ``samples`` requests: through the test client, through Django's WSGI handler
as a server calls it (the server's time), and as ``sync_page`` alone.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import sys
import time

import orjson
from django.db import connection

from mesh_site.heap import heap_frozen

from .run import drop_workspace, pct

WORKSPACE = "bench-sync"
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


class SyncBench:
    def __init__(self, *, changes: int = 100_000, page: int = 1000, samples: int = 500, keep: bool = False,
                 log=None):
        self.changes, self.page, self.samples, self.keep, self.log = changes, page, samples, keep, log
        self.results: dict = {"changes": changes, "page": page}
        self.parse_cpu_s = 0.0  # the client's JSON parsing, counted apart from the server's work

    def say(self, message: str) -> None:
        if self.log is not None:
            self.log.write(message + "\n")
            self.log.flush()

    def run(self) -> dict:
        from streams.models import Workspace

        if connection.vendor != "postgresql":
            raise RuntimeError("mesh_bench_sync measures PostgreSQL; set DATABASE_URL=postgres://…")
        old = Workspace.objects.filter(slug=WORKSPACE).first()
        if old is not None:
            self._drop(old)
        ws, device, token = self._setup()
        start_token = self._pull_all(token, "0", self.page)[0]  # the empty snapshot: the log from here on
        self._load(ws, device)
        self.results["catch_up"] = self._catch_up(token, start_token, "log")
        self.results["full_download"] = self._catch_up(token, "0", "snapshot")
        up_to_date = self.results["catch_up"].pop("_next")
        self.results["poll_up_to_date_ms"] = self._poll(token, up_to_date)
        self.results["poll_server_ms"] = self._poll_server(token, up_to_date)
        self.results["poll_selector_ms"] = self._poll_selector(device, up_to_date)
        self.results["full_download"].pop("_next")
        if not self.keep:
            self._drop(ws)
        return self.results

    def _setup(self):
        from streams.services import device_create, workspace_get_or_create

        ws = workspace_get_or_create(slug=WORKSPACE, name="Sync benchmark")
        device, token = device_create(workspace=ws, name="Phone", kind="phone")
        return ws, device, token

    def _load(self, ws, device) -> None:
        from connectors.base import RawItem
        from connectors.device.connector import DeviceConnector
        from streams.ingest import ingest_batch
        from streams.search import search_deferred

        connector = DeviceConnector({}, {}, context={"device_id": device.pk, "region": ws.region})
        t0 = time.perf_counter()
        with search_deferred():
            for first in range(0, self.changes, 1000):
                items = [
                    RawItem(f"{device.pk}/c{n}", {
                        "id": f"c{n}", "type": "call.incoming",
                        "occurred_at": (START + dt.timedelta(minutes=n)).isoformat().replace("+00:00", "Z"),
                        "data": {"duration": n % 600},
                        "participants": [{"kind": "phone", "value": f"+1415555{n % 500:04d}", "role": "from"}],
                    })
                    for n in range(first, min(first + 1000, self.changes))
                ]
                ingest_batch(workspace=ws, connector=connector, device=device, items=items)
        self.results["load_s"] = round(time.perf_counter() - t0, 1)
        self.say(f"loaded {self.changes} events in {self.results['load_s']} s")
        with connection.cursor() as cur:
            cur.execute("ANALYZE streams_change")
        from streams.selectors.sync import sync_wait_servable

        # Another database's open transaction on the same server holds the boundary back.
        sync_wait_servable()

    def _get(self, client, token: str, since: str, limit: int) -> dict:
        response = client.get("/api/v1/sync", {"since": since, "limit": limit},
                              headers={"Authorization": f"Bearer {token}"})
        if response.status_code != 200:
            raise RuntimeError(f"sync answered {response.status_code}: {response.content[:200]!r}")
        cpu = time.process_time()
        page = orjson.loads(response.content)  # the device's parsing, as light as a device's would be
        self.parse_cpu_s += time.process_time() - cpu
        return page

    def _pull_all(self, token: str, since: str, limit: int):
        from django.test import Client

        client, pages, changes, ms = Client(), 0, 0, []
        while True:
            t = time.perf_counter()
            page = self._get(client, token, since, limit)
            ms.append((time.perf_counter() - t) * 1000)
            pages += 1
            changes += len(page["changes"])
            since = page["next"]
            if not page["more"]:
                return since, pages, changes, ms

    def _catch_up(self, token: str, since: str, label: str) -> dict:
        t0, cpu0, db0, parse0 = time.perf_counter(), time.process_time(), _backend_cpu_s(), self.parse_cpu_s
        next_token, pages, changes, ms = self._pull_all(token, since, self.page)
        seconds, cpu, db1 = time.perf_counter() - t0, time.process_time() - cpu0, _backend_cpu_s()
        # CPU seconds of this process (client and server Python) and of its PostgreSQL backend
        # (the test client's requests share the connection): on a shared machine the wall clock
        # also counts waiting for a core.
        figures = {"changes": changes, "pages": pages, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
                   "client_parse_cpu_s": round(self.parse_cpu_s - parse0, 2),
                   "db_cpu_s": round(db1 - db0, 2) if db0 is not None and db1 is not None else None,
                   "changes_per_s": round(changes / seconds), "page_ms": pct(ms), "_next": next_token}
        self.say(f"{label}: {changes} changes in {pages} pages, {seconds:.1f} s, {figures['changes_per_s']}/s "
                 f"(CPU: Python {cpu:.2f} s of which the client's parse {figures['client_parse_cpu_s']} s, "
                 f"PostgreSQL {figures['db_cpu_s']} s)")
        return figures

    def _poll(self, token: str, since: str) -> dict:
        from django.test import Client

        client = Client()
        for _ in range(20):  # warm up: connection, URL resolver, plans
            self._get(client, token, since, self.page)
        ms, cpu0 = [], time.process_time()
        for _ in range(self.samples):
            t = time.perf_counter()
            page = self._get(client, token, since, self.page)
            ms.append((time.perf_counter() - t) * 1000)
            assert not page["changes"]
        figures = {**pct(ms), "cpu_ms_mean": round((time.process_time() - cpu0) * 1000 / self.samples, 3)}
        self.say(f"up-to-date poll: p50 {figures['p50']} ms, p95 {figures['p95']} ms")
        return figures

    def _poll_server(self, token: str, since: str) -> dict:
        """The same poll as the server runs it: Django's WSGI handler called as gunicorn calls it
        (middleware, URL, token, rate limit, selector, JSON), without the test client's own
        bookkeeping (it connects and disconnects signal receivers around every request)."""
        from django.core.handlers.wsgi import WSGIHandler

        app, query = WSGIHandler(), f"since={since}&limit={self.page}"

        def poll() -> bytes:
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/v1/sync", "QUERY_STRING": query,
                       "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
                       "REMOTE_ADDR": "127.0.0.1", "HTTP_AUTHORIZATION": f"Bearer {token}",
                       "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr}
            status: list[str] = []
            body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
            if not status[0].startswith("200"):
                raise RuntimeError(f"sync answered {status[0]}: {body[:200]!r}")
            return body

        for _ in range(20):
            poll()
        ms, cpu0 = [], time.process_time()
        with heap_frozen():  # as gunicorn's entry point freezes a server's (mesh_site.heap)
            for _ in range(self.samples):
                t = time.perf_counter()
                body = poll()
                ms.append((time.perf_counter() - t) * 1000)
                assert not orjson.loads(body)["changes"]
        figures = {**pct(ms), "cpu_ms_mean": round((time.process_time() - cpu0) * 1000 / self.samples, 3)}
        self.say(f"up-to-date poll, server time: p50 {figures['p50']} ms, p95 {figures['p95']} ms")
        return figures

    def _poll_selector(self, device, since: str) -> dict:
        """The same poll as ``sync_page`` alone: the server's work without the HTTP stack."""
        from streams.models import Device
        from streams.selectors.sync import sync_page

        device = Device.objects.select_related("workspace").get(pk=device.pk)
        for _ in range(20):
            sync_page(device=device, since=since, limit=self.page)
        ms = []
        for _ in range(self.samples):
            t = time.perf_counter()
            sync_page(device=device, since=since, limit=self.page)
            ms.append((time.perf_counter() - t) * 1000)
        return pct(ms)

    def _drop(self, ws) -> None:
        from streams.models import ChangeHorizon

        ChangeHorizon.objects.filter(workspace_id=ws.pk).delete()
        drop_workspace(ws)  # its change log too


def _backend_cpu_s() -> float | None:
    """CPU seconds of this connection's PostgreSQL backend so far, where the server is local
    (``/proc``); None elsewhere."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
