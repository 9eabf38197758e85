"""Export activities as Activity Streams 2.0 JSON lines (one activity per line), oldest first.

  mesh_export [--contact ID] [--device ID] [--source ID]

Without filters: every activity of the workspace. This is also the user's way to take their
data out; it streams in chunks, so memory stays flat whatever the size."""

from __future__ import annotations

import json
import sys
from collections import defaultdict

from django.core.management.base import CommandError
from django.db.models import F, Prefetch
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan

from streams.cli import MeshCommand
from streams.export import activity_as2
from streams.models import Contact, Device, Participant, Source, TimelineEntry
from streams.selectors import workspace_activities

CHUNK = 1000


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--contact", type=int)
        parser.add_argument("--device", type=int)
        parser.add_argument("--source", type=int)

    def handle(self, *args, **options):
        workspace = self.workspace(options)
        qs = workspace_activities(workspace=workspace)  # erased: feeds' tombstones only
        for flag, model in (("contact", Contact), ("device", Device), ("source", Source)):
            if options[flag] is not None and not model.objects.filter(workspace=workspace, pk=options[flag]).exists():
                raise CommandError(f"no {flag} {options[flag]} in workspace {workspace.slug}")
        if options["contact"] is not None:
            qs = qs.filter(
                pk__in=TimelineEntry.objects.filter(kind="c", owner_id=options["contact"]).values("activity_id")
            )
        if options["device"] is not None:
            qs = qs.filter(device_id=options["device"])
        if options["source"] is not None:
            qs = qs.filter(source_id=options["source"])
        qs = (
            qs.select_related("workspace")
            .defer("raw", "html")
            .prefetch_related(Prefetch("participants", queryset=Participant.objects.select_related("identity").order_by("pk")))
            .order_by("occurred_at", "pk")
        )
        out = self.stdout._out
        last = None
        try:
            while True:
                page = qs
                if last is not None:
                    page = qs.filter(TupleGreaterThan(Tuple(F("occurred_at"), F("pk")), last))
                chunk = list(page[:CHUNK])
                if not chunk:
                    break
                contacts: dict[int, list[int]] = defaultdict(list)
                for activity_id, owner_id in TimelineEntry.objects.filter(
                    kind="c", activity_id__in=[a.pk for a in chunk]
                ).values_list("activity_id", "owner_id"):
                    contacts[activity_id].append(owner_id)
                for activity in chunk:
                    line = activity_as2(activity, contact_ids=contacts.get(activity.pk, []))
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")
                last = (chunk[-1].occurred_at, chunk[-1].pk)
            out.flush()
        except BrokenPipeError:  # `mesh_export | head` is fine
            sys.stderr.close()
