"""The raw-statement plumbing: a psycopg cursor with server-side parameter binding, id lists,
binary COPY, ``update_from_unnest`` and prepared statements. Callers use them by name.

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
import functools
import json
import weakref
from collections.abc import Sequence

import orjson
import psycopg
from django.db import connection
from psycopg.adapt import Dumper
from psycopg.types.json import set_json_dumps

from .conf import conf


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


def json_text(obj) -> str:
    """``json_dumps`` as text (a jsonb value inside a ``text[]`` parameter)."""
    out = json_dumps(obj)
    return out.decode() if isinstance(out, bytes) else out


def lock_in_id_order(cur, table: str, ids) -> None:
    """Row locks on ``ids`` of ``table``, taken in id order (``FOR NO KEY UPDATE``, which does not
    conflict with foreign-key checks' key-share locks): concurrent batches that update the same
    summaries or identities then cannot deadlock."""
    cur.execute(f"SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", [ids])


def insert_returning_ids(table: str, *, fixed: Sequence[tuple[str, str, object]],
                        columns: Sequence[tuple[str, str, list[str]]], conflict: str) -> list[int]:
    """``INSERT … SELECT <fixed>, <arrays unnested> ON CONFLICT <conflict> DO NOTHING RETURNING
    id``, and the new rows' ids. ``fixed``: (column, SQL type, value), the same in every row;
    ``columns``: (column, SQL type, one value per row as text, cast by PostgreSQL). One short
    statement whatever the number of rows: a ``VALUES`` list quoted by Django's client-side
    binding cost more than the insert itself at a few hundred rows."""
    qn = connection.ops.quote_name
    names = [qn(c) for c, _, _ in fixed] + [qn(c) for c, _, _ in columns]
    values = [f"%s::{t}" for _, t, _ in fixed] + [f"x.c{i}::{t}" for i, (_, t, _) in enumerate(columns)]
    sql = (f"INSERT INTO {qn(table)} ({', '.join(names)}) SELECT {', '.join(values)} "
           f"FROM unnest({', '.join(['%s::text[]'] * len(columns))}) AS x({', '.join(f'c{i}' for i in range(len(columns)))}) "
           f"ON CONFLICT {conflict} DO NOTHING RETURNING id")
    with raw_cursor() as cur:
        cur.execute(sql, [v for _, _, v in fixed] + [TextArray(v) for _, _, v in columns])
        return [r[0] for r in cur.fetchall()]


def update_from_unnest(table: str, ids: Sequence[int], set_sql: str, columns: Sequence[tuple[str, str, list]]) -> None:
    """PostgreSQL: one ``UPDATE table AS t SET … FROM unnest(…) AS d(id, …)`` for many rows, the
    rows locked in id order first (see ``lock_in_id_order``). ``ids`` sorted ascending;
    ``columns`` are (name, SQL type, values in the order of ``ids``); ``set_sql`` reads ``t``
    (the row) and ``d`` (its new values). Django's ``bulk_update`` builds a CASE WHEN per row,
    which was a quarter of a large import's time; "t.id = ANY" makes index probes rather than a
    hash join over the whole table. Timestamps travel best as ISO text (``timestamptz``):
    psycopg dumps a list of datetimes element by element in Python."""
    ids = IntArray(ids)
    names = ", ".join(["id", *(name for name, _, _ in columns)])
    types = ", ".join(["%s::bigint[]", *(f"%s::{sql_type}[]" for _, sql_type, _ in columns)])
    with raw_cursor() as cur:
        lock_in_id_order(cur, table, ids)
        cur.execute(
            f"UPDATE {table} AS t SET {set_sql} FROM unnest({types}) AS d({names}) WHERE t.id = ANY(%s) AND t.id = d.id",
            [ids, *(values for _, _, values in columns), ids],
        )


def ids_in(ids: Sequence[int]) -> tuple[str, list]:
    """An ``IN`` predicate for a list of ids, with its parameters: ``= ANY(%s)`` on PostgreSQL (one
    parameter, one plan), a placeholder list elsewhere."""
    ids = [int(i) for i in ids]
    if connection.vendor == "postgresql":
        return "= ANY(%s::bigint[])", [ids]
    return "IN (" + ",".join(["%s"] * len(ids)) + ")", ids


_copy_meta: dict[str, tuple[str, list[int]]] = {}


def copy_with_new_ids(table: str, columns: Sequence[str], rows: Sequence[Sequence]) -> list[int]:
    """PostgreSQL: take one id per row from the table's sequence, then binary COPY the rows (values
    in ``columns`` order) straight into the table: one write per row, nothing quoted in Python.
    Returns the ids in row order. A unique violation propagates (the caller decides)."""
    qn = connection.ops.quote_name
    with raw_cursor() as cur:
        sequence, oids = _copy_types(cur, table, columns)
        cur.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", [sequence, len(rows)])
        ids = [r[0] for r in cur.fetchall()]
        with cur.copy(f"COPY {qn(table)} (id, {', '.join(qn(c) for c in columns)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(oids)
            for pk, row in zip(ids, rows, strict=True):
                copy.write_row([pk, *row])
    return ids


def _copy_types(cur, table: str, columns: Sequence[str]) -> tuple[str, list[int]]:
    """The id sequence and the type oids of ``id`` + ``columns`` of ``table`` (once per process)."""
    key = f"{table}:{','.join(columns)}"
    if key not in _copy_meta:
        cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        sequence = cur.fetchone()[0]
        cur.execute(
            "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped", [table],
        )
        oids = dict(cur.fetchall())
        _copy_meta[key] = (sequence, [int(oids[c]) for c in ["id", *columns]])
    return _copy_meta[key]


@contextlib.contextmanager
def raw_cursor():
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cur:
        cur.adapters.register_dumper(TextArray, _TextArrayDumper)
        cur.adapters.register_dumper(IntArray, _IntArrayDumper)
        set_json_dumps(json_dumps, context=cur)
        yield cur


def prepared_rows(name: str, sql: str, params: list, *, server_binding: bool = False) -> list[tuple]:
    """The rows of ``sql`` (``%s`` parameters): by `prepared_fetch` where that pays, else by a
    plain cursor (``server_binding``: `raw_cursor`'s, PostgreSQL only)."""
    rows = prepared_fetch(name, dollar_numbered(sql), params)
    if rows is None:
        with raw_cursor() if server_binding else connection.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
    return rows


def dollar_numbered(sql: str) -> str:
    """``%s`` placeholders numbered ``$1``, ``$2``… for a server-side prepared statement."""
    parts = sql.split("%s")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


@functools.cache
def _row_converters(model) -> list[tuple]:
    """Per concrete field of ``model``: its column expression and the ORM's converters for it
    (a JSON column arrives as text; SQLite's datetimes as strings)."""
    cols = [field.get_col(model._meta.db_table) for field in model._meta.concrete_fields]
    return [(col, connection.ops.get_db_converters(col) + col.get_db_converters(connection)) for col in cols]


def instance_from_row(model, values):
    """A model instance from a raw row of its concrete fields, converted as the ORM would."""
    converted = []
    for (col, converters), value in zip(_row_converters(model), values, strict=True):
        for convert in converters:
            value = convert(value, col, connection)
        converted.append(value)
    return model.from_db(connection.alias, [f.attname for f in model._meta.concrete_fields], converted)


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
    enabled = conf.FEED_PREPARED
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
