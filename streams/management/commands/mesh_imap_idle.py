"""Push for IMAP: ``mesh_imap_idle SOURCE_ID`` keeps an IMAP IDLE connection (RFC 2177) on the
source's INBOX and triggers ``sync_source`` whenever mail arrives.

The connection is renewed every 29 minutes, as RFC 2177 advises (servers may drop an idle
client after 30); connection failures are retried with backoff, and bad credentials stop the
command with the server's words (the source is marked the same way a sync marks it). Run one per
source next to the Celery workers (a systemd unit or a supervisor program).

  --once           exit after the first trigger (scripts and tests)
  --max-seconds N  stop after N seconds in total
"""

from __future__ import annotations

import time

from django.core.management.base import CommandError

from connectors.base import ConnectorError
from streams.cli import MeshCommand
from streams.models import Source
from streams.services import source_connector
from streams.tasks import sync_source

RENEW_SECONDS = 29 * 60


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("source", type=int)
        parser.add_argument("--folder", default="INBOX")
        parser.add_argument("--once", action="store_true", help="exit after the first sync it triggers")
        parser.add_argument("--max-seconds", type=float, default=0, help="stop after this long (0: never)")

    def handle(self, *args, **options):
        workspace = self.workspace(options)
        source = Source.objects.filter(workspace=workspace, pk=options["source"]).first()
        if source is None or source.connector != "imap":
            raise CommandError(f"no imap source {options['source']} in workspace {workspace.slug}")
        connector = source_connector(source=source)
        started = time.monotonic()
        limit = options["max_seconds"] or None
        triggered = 0
        failures = 0
        # Mail that arrived while nobody was listening: anything past the stored cursor (a
        # source never synced is synced first).
        if not self._known_uidnext(source, options["folder"]):
            sync_source.delay(source.pk, trigger="idle")
            source.refresh_from_db()
        known_uidnext = self._known_uidnext(source, options["folder"])
        while limit is None or time.monotonic() - started < limit:
            remaining = RENEW_SECONDS if limit is None else max(0.1, min(RENEW_SECONDS, limit - (time.monotonic() - started)))
            try:
                arrived, uidnext = connector.idle(folder=options["folder"], max_seconds=remaining,
                                                  known_uidnext=known_uidnext)
                known_uidnext = uidnext  # the next wait reports anything past this
                failures = 0
            except ConnectorError as exc:
                if exc.permanent:
                    Source.objects.filter(pk=source.pk).update(status=exc.status, last_error=exc.message[:5000])
                    raise CommandError(exc.message) from None
                failures += 1
                delay = min(300, 2 ** failures)
                self.note(f"IDLE connection failed ({exc.message}); retrying in {delay}s")
                time.sleep(delay)
                continue
            if arrived:
                triggered += 1
                self.note("new mail: syncing")
                sync_source.delay(source.pk, trigger="idle")
                if options["once"]:
                    break
        self.emit(options, {"source": source.pk, "triggered": triggered}, f"triggered {triggered} sync(s)")

    @staticmethod
    def _known_uidnext(source, folder: str) -> int | None:
        state = ((source.cursor or {}).get("folders") or {}).get(folder) or {}
        return int(state["last_uid"]) + 1 if state.get("last_uid") else None
