"""What every Mesh management command shares: ``--workspace`` (default: an auto-created
``default`` workspace), ``--json`` (one JSON document on stdout and nothing else there), and
progress on stderr (a live line with counts and rate when stderr is a terminal)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from .models import Contact, Workspace
from .services import workspace_get_or_create


class MeshCommand(BaseCommand):
    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        self.add_common(parser, defaults=True)
        return parser

    @staticmethod
    def add_common(parser, *, defaults: bool = False) -> None:
        """--workspace and --json, on the command and on each of its sub-commands (so that
        ``mesh_contacts list --json`` works too). Sub-parsers use SUPPRESS so they never
        overwrite a value given before the sub-command."""
        parser.add_argument("--workspace", default="default" if defaults else argparse.SUPPRESS, metavar="SLUG",
                            help="workspace slug (default: 'default', created if missing)")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            default=False if defaults else argparse.SUPPRESS,
                            help="print one JSON document on stdout and nothing else there")

    def subcommands(self, parser):
        """Like parser.add_subparsers, but every sub-command also takes --workspace/--json."""
        sub = parser.add_subparsers(dest="action", required=True)
        original = sub.add_parser

        def add_parser(name, **kwargs):
            p = original(name, **kwargs)
            self.add_common(p)
            return p

        sub.add_parser = add_parser
        return sub

    def workspace(self, options) -> Workspace:
        slug = options["workspace"]
        if slug == "default":
            return workspace_get_or_create(slug="default", name="Default")
        ws = Workspace.objects.filter(slug=slug).first()
        if ws is None:
            ws = workspace_get_or_create(slug=slug)
        return ws

    def emit(self, options, data, human: str | None = None) -> None:
        if options.get("as_json"):
            self.stdout.write(json.dumps(data, default=str, ensure_ascii=False))
        else:
            self.stdout.write(human if human is not None else json.dumps(data, indent=2, default=str, ensure_ascii=False))

    def note(self, message: str) -> None:
        """Human-facing progress and notes: always stderr, so stdout stays machine-readable."""
        self.stderr.write(message)

    def contact(self, workspace: Workspace, value) -> Contact:
        try:
            return Contact.objects.get(workspace=workspace, pk=int(value))
        except (ValueError, Contact.DoesNotExist):
            raise CommandError(f"no contact {value} in workspace {workspace.slug}") from None


class Progress:
    """A one-line progress display on stderr when it is a terminal; silent otherwise."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last = 0.0

    def __call__(self, result) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        rate = result.fetched / max(now - self.start, 1e-6)
        width = 24
        filled = int((result.new + result.duplicate + result.failed) / max(result.fetched, 1) * width)
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {result.fetched} fetched, {result.new} new, "
            f"{result.duplicate} duplicate, {result.failed} failed, {rate:,.0f}/s "
        )
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def parse_pairs(pairs: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise CommandError(f"{flag} takes key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out


def contact_json(contact: Contact) -> dict:
    return {
        "id": contact.pk,
        "name": contact.name,
        "identities": [f"{i.kind}:{i.value}" for i in sorted(contact.identities.all(), key=lambda i: (i.kind, i.value))],
        "counts": contact.channel_counts or {},
        "last_activity_at": contact.last_activity_at.isoformat() if contact.last_activity_at else None,
        "merged_into": contact.merged_into_id,
    }
