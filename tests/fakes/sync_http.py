"""A sync client's HTTP, through Django's test client (the ``transport`` seam of
``streams.sync_client``), and a replica pulled with it."""

from __future__ import annotations

import urllib.parse

from django.test import Client

from streams.selectors.sync import sync_wait_servable
from streams.sync_client import Replica, replica_pull


def django_client_transport(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    response = Client().get(parts.path, dict(urllib.parse.parse_qsl(parts.query)), headers=headers)
    return response.status_code, response.content


def pull(replica: Replica, token: str, *, limit: int = 1000, max_pages: int | None = None, settle: bool = True):
    """Pull with ``token``; with ``settle``, first wait until every committed change may be served
    (open transactions elsewhere on the shared PostgreSQL hold that back for a moment)."""
    if settle:
        assert sync_wait_servable(), "a transaction held the sync log's boundary back for two minutes"
    return replica_pull(replica=replica, url="http://testserver", token=token, limit=limit, max_pages=max_pages,
                        transport=django_client_transport)
