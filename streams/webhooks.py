"""What a connector's webhook view needs from Mesh before it stores anything: the Source the
URL names (``webhook_source``), its secrets to check the signature with (``source_secrets``)
and the source's own identities marked as the owner's (``source_mark_self``); and the
request's body, bounded (``request_body``). Both run on every request, so both remember per process what they
have done. Connectors reach these through ``streams.services``."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest

from .crypto import SecretsError, secrets_decrypt
from .identity import identity_mark_self
from .models import Source

# The source with its workspace, per process, reused while the row's connector, name, config
# and encrypted secrets are unchanged: checked with one plain statement per request (building
# the ORM query cost more CPU than the rest of the Twilio webhook; measured in
# bench/sms_bench.py). CAST rather than ``::text``: the same statement runs on PostgreSQL and
# SQLite.
_sources: dict[int, tuple[tuple, Source]] = {}
_SOURCE_ROW = (
    "SELECT connector, name, CAST(config AS TEXT), secrets_encrypted, workspace_id "
    f"FROM {Source._meta.db_table} WHERE id = %s"
)
MAX_CACHED_SOURCES = 1000


def webhook_source(*, source_id: int, connector: str) -> Source | None:
    """The Source ``source_id`` with its workspace, or None when there is none of ``connector``
    (the id in a webhook URL is not a secret: a wrong one is answered 404 by the view)."""
    with connection.cursor() as cur:
        cur.execute(_SOURCE_ROW, [source_id])
        row = cur.fetchone()
    if row is None or row[0] != connector:
        return None
    cached = _sources.get(source_id)
    if cached is not None and cached[0] == row:
        return cached[1]
    source = Source.objects.select_related("workspace").filter(pk=source_id, connector=connector).first()
    if source is not None:
        if len(_sources) > MAX_CACHED_SOURCES:
            _sources.clear()
        _sources[source_id] = (row, source)
    return source


_marked: set[tuple] = set()


def source_mark_self(*, source: Source, identities: list[tuple[str, str, str]]) -> None:
    """Mark ``identities`` (the connector's ``self_identities()``: a line's own numbers) as the
    owner's, so that they are the "me" side of every message and never become contacts. Cheap
    to call per request: it remembers, per process, the sources and identities it has done."""
    key = (source.pk, source.created_at, tuple(identities))
    if key in _marked:
        return
    for kind, value, display in identities:
        identity_mark_self(workspace=source.workspace, kind=kind, value=value,
                           display=display or f"{source.name} {value}")
    _marked.add(key)


def source_secrets(*, source: Source) -> dict:
    """The source's decrypted secrets, {} when they cannot be read (a webhook then refuses the
    request as unsigned). Memoized per ciphertext (``secrets_decrypt``), so this costs no
    decryption per request, and a rotated secret (new ciphertext) takes effect at once."""
    try:
        return secrets_decrypt(source.secrets_encrypted)
    except SecretsError:
        return {}


def request_body(request: HttpRequest) -> bytes | None:
    """The request's body, or None when it is larger than ``MESH_INGEST_MAX_BYTES`` (by its
    Content-Length, unread, or as read: the header may be absent or lie)."""
    limit = settings.MESH_INGEST_MAX_BYTES
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    body = b"" if declared > limit else request.read(limit + 1)
    return None if declared > limit or len(body) > limit else body
