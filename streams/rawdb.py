"""A psycopg cursor with server-side parameter binding, for the ingest hot path.

Django's PostgreSQL backend binds parameters on the client (``ClientCursor``): it quotes every
value into the SQL text in Python, which for the arrays ingest sends (a thousand ids, keys and
rows per batch) costs more than PostgreSQL's work on them. A plain ``psycopg.Cursor`` on the
same connection sends them as parameters. Same connection, same transaction: Django's
``atomic`` blocks cover what it executes.

Two more things psycopg does in Python, element by element, and that showed in ingest
profiles (about 15 % of an SMS backup import): dumping lists as arrays, and ``json.dumps``
for jsonb. On this cursor, ``TextArray``/``IntArray`` are sent as one array literal built
with ``str.join``, and jsonb is encoded with orjson (falling back to the standard library
for what orjson refuses: lone surrogates, integers beyond 64 bits).
"""

from __future__ import annotations

import contextlib
import json
import weakref

import orjson
import psycopg
from django.conf import settings
from django.db import connection
from psycopg.adapt import Dumper
from psycopg.types.json import set_json_dumps


class TextArray(list):
    """A list of str sent as one ``text[]`` parameter (no None elements)."""


class IntArray(list):
    """A list of int sent as one ``bigint[]`` parameter (no None elements)."""


class _TextArrayDumper(Dumper):
    oid = psycopg.postgres.types["text"].array_oid

    def dump(self, obj):
        if not obj:
            return b"{}"
        # NUL cannot occur in PostgreSQL text, so it can stand for the separator while the
        # whole string is escaped at once.
        body = "\x00".join(obj).replace("\\", "\\\\").replace('"', '\\"').replace("\x00", '","')
        return ('{"' + body + '"}').encode()


class _IntArrayDumper(Dumper):
    oid = psycopg.postgres.types["int8"].array_oid

    def dump(self, obj):
        return ("{" + ",".join(map(str, obj)) + "}").encode()


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def json_dumps(obj) -> bytes | str:
    try:
        return orjson.dumps(obj, option=_ORJSON_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(obj)


def lock_in_id_order(cur, table: str, ids) -> None:
    """Row locks on ``ids`` of ``table``, taken in id order (``FOR NO KEY UPDATE``, which does not
    conflict with foreign-key checks' key-share locks): concurrent batches that update the same
    summaries or identities then cannot deadlock."""
    cur.execute(f"SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", [ids])


@contextlib.contextmanager
def raw_cursor():
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cur:
        cur.adapters.register_dumper(TextArray, _TextArrayDumper)
        cur.adapters.register_dumper(IntArray, _IntArrayDumper)
        set_json_dumps(json_dumps, context=cur)
        yield cur


def prepared_fetch(name: str, sql: str, params: list) -> list[tuple] | None:
    """Run ``sql`` (``$1``-style parameters) as a named server-side prepared statement on
    PostgreSQL and return its rows; None where that does not pay (callers use the ORM then).

    Why: the two queries a feed poll runs take ~0.2 ms to execute but ~0.5 ms each to plan,
    and Django's client-side binding never reuses a plan. PREPARE once per connection, EXECUTE
    after. That pays only on persistent connections, so it is on when CONN_MAX_AGE is not 0
    (``MESH_FEED_PREPARED`` forces it on or off; off behind a transaction-pooling PgBouncer,
    which does not keep prepared statements). It pays only once PostgreSQL settles on the
    statement's generic plan (after five executions): a parameter in a range condition it
    cannot estimate without the value (``erased_at >= $n``) makes the generic plan look costly,
    and then every execution is planned again (``pg_prepared_statements.custom_plans`` grows)."""
    if connection.vendor != "postgresql":
        return None
    enabled = getattr(settings, "MESH_FEED_PREPARED", None)
    if enabled is None:
        enabled = bool(connection.settings_dict.get("CONN_MAX_AGE"))
    if not enabled:
        return None
    connection.ensure_connection()
    raw = connection.connection
    known = getattr(connection, "_mesh_prepared", None)
    if known is None or known[0]() is not raw:  # a new connection: nothing prepared on it yet
        known = connection._mesh_prepared = (weakref.ref(raw), set())
    with connection.cursor() as cur:
        if name not in known[1]:
            cur.execute(f"PREPARE {name} AS {sql}")
            known[1].add(name)
        placeholders = ", ".join(["%s"] * len(params))
        cur.execute(f"EXECUTE {name}({placeholders})", params)
        return cur.fetchall()
