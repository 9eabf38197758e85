"""A psycopg cursor with server-side parameter binding, for the ingest hot path.

Django's PostgreSQL backend binds parameters on the client (``ClientCursor``): it quotes every
value into the SQL text in Python, which for the arrays ingest sends (a thousand ids, keys and
rows per batch) costs more than PostgreSQL's work on them. A plain ``psycopg.Cursor`` on the
same connection sends them as parameters. Same connection, same transaction: Django's
``atomic`` blocks cover what it executes.
"""

from __future__ import annotations

import contextlib

import psycopg
from django.db import connection


@contextlib.contextmanager
def raw_cursor():
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cur:
        yield cur
