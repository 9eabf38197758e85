"""The reference sync client: a local SQLite replica of what a device token may see, kept by
pulling ``GET /api/v1/sync`` (``mesh_sync_client`` runs it).

The replica is a plain sqlite3 file: ``objects(type, id, doc)`` holds each object's current
JSON document, ``meta`` the ``next`` token. A page and its ``next`` are written in one SQLite
transaction, so a client killed anywhere resumes from the last page it applied, and applying a
page twice changes nothing (each entry is the object's current state, or its tombstone). On
410 it empties the replica and starts again from the snapshot URL the server names.

HTTP goes through ``transport(url, headers) -> (status, body)``: urllib by default, the test
client in tests.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

SYNC_PATH = "/api/v1/sync"
MAX_RESETS = 3
Transport = Callable[[str, dict[str, str]], tuple[int, bytes]]


class SyncClientError(Exception):
    pass


def urllib_transport(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError as exc:
        raise SyncClientError(f"cannot reach {url}: {exc.reason}") from None


@dataclass
class PullResult:
    pages: int = 0
    changes: int = 0
    resets: int = 0
    next: str | None = None


class Replica:
    """The SQLite file: objects by (type, id) and the token to resume from."""

    def __init__(self, path: str):
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS objects (type TEXT NOT NULL, id INTEGER NOT NULL, "
                        "doc TEXT NOT NULL, PRIMARY KEY (type, id))")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def close(self) -> None:
        self.db.close()

    @property
    def next(self) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'next'").fetchone()
        return row[0] if row else None

    def apply(self, page: dict) -> None:
        """One page and its ``next``, all or nothing."""
        with self._transaction():
            for change in page["changes"]:
                key = (change["type"], change["id"])
                if change["deleted"]:
                    self.db.execute("DELETE FROM objects WHERE type = ? AND id = ?", key)
                else:
                    self.db.execute("INSERT OR REPLACE INTO objects (type, id, doc) VALUES (?, ?, ?)",
                                    (*key, json.dumps(change["object"], sort_keys=True)))
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next', ?)", (page["next"],))

    def reset(self, since: str) -> None:
        with self._transaction():
            self.db.execute("DELETE FROM objects")
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next', ?)", (since,))

    def state(self) -> dict[tuple[str, int], dict]:
        return {(t, i): json.loads(doc) for t, i, doc in self.db.execute("SELECT type, id, doc FROM objects")}

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT type, count(*) FROM objects GROUP BY type ORDER BY type"))

    def _transaction(self):
        db = self.db

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, exc, tb):
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()


def sync_url(base: str) -> str:
    """``--url`` as given: Mesh's base URL or the sync endpoint itself."""
    base = base.rstrip("/")
    return base if base.endswith(SYNC_PATH) else base + SYNC_PATH


def replica_pull(
    *, replica: Replica, url: str, token: str, limit: int = 1000, max_pages: int | None = None,
    transport: Transport | None = None,
) -> PullResult:
    """Pull pages until the server says there is no more (or ``max_pages``), applying each."""
    transport = transport or urllib_transport
    result = PullResult()
    endpoint = sync_url(url)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    while max_pages is None or result.pages < max_pages:
        since = replica.next or "0"
        query = urllib.parse.urlencode({"since": since, "limit": limit})
        status, body = transport(f"{endpoint}?{query}", headers)
        if status == 410:
            result.resets += 1
            if result.resets > MAX_RESETS:
                raise SyncClientError("the server keeps asking for a reset")
            snapshot = json.loads(body).get("snapshot") or f"{endpoint}?since=0"
            replica.reset(urllib.parse.parse_qs(urllib.parse.urlsplit(snapshot).query).get("since", ["0"])[0])
            continue
        if status != 200:
            raise SyncClientError(f"sync answered {status}: {body[:300].decode(errors='replace')}")
        page = json.loads(body)
        replica.apply(page)
        result.pages += 1
        result.changes += len(page["changes"])
        if not page["more"]:
            break
    result.next = replica.next
    return result
