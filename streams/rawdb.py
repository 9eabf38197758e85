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

import orjson
import psycopg
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


@contextlib.contextmanager
def raw_cursor():
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cur:
        cur.adapters.register_dumper(TextArray, _TextArrayDumper)
        cur.adapters.register_dumper(IntArray, _IntArrayDumper)
        set_json_dumps(json_dumps, context=cur)
        yield cur
