"""List, merge and unmerge contacts.

  mesh_contacts list [--search Q] [--limit N]
  mesh_contacts merge A B     merge B into A; prints the resulting contact
  mesh_contacts unmerge A     split A from what it was merged with; prints the resulting contacts
"""

from __future__ import annotations

from django.core.management.base import CommandError

from streams.cli import MeshCommand, contact_json, human_table
from streams.selectors import contacts_list
from streams.services import ServiceError, contact_merge, contact_unmerge


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        sub = self.subcommands(parser)
        ls = sub.add_parser("list")
        ls.add_argument("--search", default="")
        ls.add_argument("--limit", type=int, default=0, help="at most N contacts (0: all)")
        merge = sub.add_parser("merge")
        merge.add_argument("a")
        merge.add_argument("b")
        unmerge = sub.add_parser("unmerge")
        unmerge.add_argument("a")

    def handle(self, *args, **options):
        workspace = self.workspace(options)
        action = options["action"]
        if action == "list":
            qs = contacts_list(workspace=workspace, search=options["search"])
            if options["limit"]:
                qs = qs[: options["limit"]]
            rows = [contact_json(c) for c in qs]
            self.emit(options, rows, human_table(
                rows, ["id", "name", "identities", "counts", "last_activity_at"], empty="no contacts"
            ))
            return
        try:
            if action == "merge":
                result = contact_merge(
                    workspace=workspace, target=self.contact(workspace, options["a"]),
                    other=self.contact(workspace, options["b"]),
                )
                self.emit(options, contact_json(result))
            else:
                result = contact_unmerge(workspace=workspace, contact=self.contact(workspace, options["a"]))
                rows = [contact_json(c) for c in result]
                self.emit(options, rows, human_table(rows, ["id", "name", "identities", "counts", "last_activity_at"]))
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
