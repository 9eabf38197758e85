"""Create and list workspaces.

  mesh_workspace add SLUG [--name N] [--region CC]   prints {"slug", "name", "region", "created_at"}
  mesh_workspace list                                prints [{"slug", "name", "region", "created_at",
                                                     "sources", "contacts"}]

``--region`` is the ISO country code used to read phone numbers written without +CC (blank:
MESH_DEFAULT_REGION). Every other command refuses a workspace that does not exist."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db.models import Count, Q

from streams.cli import MeshCommand
from streams.models import Workspace
from streams.services import ServiceError, workspace_create


def workspace_json(workspace: Workspace) -> dict:
    return {
        "slug": workspace.slug, "name": workspace.name, "region": workspace.region,
        "created_at": workspace.created_at,
    }


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        sub = self.subcommands(parser)
        add = sub.add_parser("add", help="create a workspace")
        add.add_argument("slug")
        add.add_argument("--name", default="")
        add.add_argument("--region", default="", metavar="CC", help="ISO country code for phone numbers")
        sub.add_parser("list", help="every workspace, with its number of sources and contacts")

    def handle(self, *args, **options):
        if options["action"] == "add":
            try:
                workspace = workspace_create(slug=options["slug"], name=options["name"], region=options["region"])
            except ServiceError as exc:
                raise CommandError(str(exc)) from None
            self.emit(options, workspace_json(workspace), f"workspace {workspace.slug} added: {workspace.name}")
            return
        rows = []
        workspaces = Workspace.objects.annotate(
            n_sources=Count("sources", distinct=True),
            n_contacts=Count("contacts", distinct=True,
                             filter=Q(contacts__merged_into=None, contacts__is_self=False)),
        ).order_by("slug")
        for ws in workspaces:
            rows.append({**workspace_json(ws), "sources": ws.n_sources, "contacts": ws.n_contacts})
        self.emit(options, rows, None if rows else "no workspaces")
