"""Relationship strength: bring it up to date, rebuild it, and the going-cold feed's tokens.

  mesh_rank                       drain the queue ingest leaves and score every contact as of today
  mesh_rank --rebuild             recompute every conversation-day and score from the timelines
                                  (the same result the incremental path keeps)
  mesh_rank --feed-token create   a token for the going-cold feed (RSS and JSON Feed URLs; shown once)
  mesh_rank --feed-token revoke   revoke the workspace's going-cold feed tokens

The score and what counts: README "Relationship strength and keep in touch", streams/ranking.py.
"""

from __future__ import annotations

import time

from streams.cli import MeshCommand
from streams.cold_feed import cold_feed_token_create, cold_feed_token_revoke, cold_feed_urls
from streams.models import ContactStrength, ConversationDay
from streams.ranking import strengths_current, workspace_rank_rebuild


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--rebuild", action="store_true", help="recompute everything from the timelines")
        parser.add_argument("--feed-token", choices=["create", "revoke"], dest="feed_token",
                            help="make or revoke the going-cold feed's token")

    def handle(self, *args, **options):
        workspace = self.workspace(options)
        if options["feed_token"] == "create":
            _row, token = cold_feed_token_create(workspace=workspace)
            self.emit(options, {"token": token, "urls": cold_feed_urls(token)})
            return
        if options["feed_token"] == "revoke":
            self.emit(options, {"revoked": cold_feed_token_revoke(workspace=workspace)})
            return
        start = time.monotonic()
        if options["rebuild"]:
            workspace_rank_rebuild(workspace=workspace)
        else:
            strengths_current(workspace=workspace)
        self.emit(options, {
            "workspace": workspace.slug, "rebuilt": options["rebuild"],
            "contacts_scored": ContactStrength.objects.filter(workspace=workspace).count(),
            "conversation_days": ConversationDay.objects.filter(contact__workspace=workspace).count(),
            "seconds": round(time.monotonic() - start, 3),
        })
