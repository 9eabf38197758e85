"""Keep a local SQLite replica of what a device token may see, by pulling the sync API.

  mesh_sync_client --url http://127.0.0.1:8000 --token mesh_dev_… --db phone.sqlite3 [--limit N]

Resumable: the replica stores the server's ``next`` token with each page it applies, so a run
picks up where the last one stopped; a 410 (token past the horizon, scope changed) empties the
replica and downloads a snapshot. Prints ``{"pages", "changes", "resets", "objects", "next"}``."""

from __future__ import annotations

from django.core.management.base import CommandError

from streams.cli import MeshCommand
from streams.sync_client import Replica, SyncClientError, replica_pull


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True, help="Mesh's base URL (or the /api/v1/sync URL)")
        parser.add_argument("--token", required=True, help="a device token (mesh_device add)")
        parser.add_argument("--db", required=True, help="the replica's SQLite file (created if missing)")
        parser.add_argument("--limit", type=int, default=1000, help="changes per page (1 to 1000)")

    def handle(self, *args, **options):
        if not 1 <= options["limit"] <= 1000:
            raise CommandError("--limit must be from 1 to 1000")
        replica = Replica(options["db"])
        try:
            result = replica_pull(replica=replica, url=options["url"], token=options["token"],
                                  limit=options["limit"])
            counts = replica.counts()
        except SyncClientError as exc:
            raise CommandError(str(exc)) from None
        finally:
            replica.close()
        self.emit(options, {"pages": result.pages, "changes": result.changes, "resets": result.resets,
                            "objects": counts, "next": result.next})
