"""What every Mesh management command shares: ``--workspace`` (default: an auto-created
``default`` workspace), ``--json`` (one JSON document on stdout and nothing else there), and
progress on stderr (a live line with counts and rate when stderr is a terminal)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from .export import rfc3339
from .models import Contact, ContactStrength, Workspace
from .services import workspace_get_or_create

# Exit status of a command line that names something that is not there (an unknown workspace):
# 2, like argparse's own usage errors, so scripts can tell "wrong arguments" from "the work failed".
USAGE_ERROR = 2


def _json_default(value):
    if isinstance(value, dt.datetime):
        return rfc3339(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def json_dumps(data) -> str:
    return json.dumps(data, default=_json_default, ensure_ascii=False)


def human_value(value) -> str:
    """A value as a person reads it: no reprs, no JSON."""
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, dict):
        return ", ".join(f"{k}={human_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(human_value(v) for v in value)
    return " ".join(str(value).split())  # one line: newlines in errors would break the table


def human_table(rows: list[dict], columns: list[str] | None = None, *, empty: str = "nothing") -> str:
    """Rows as an aligned table with a header; nested values flattened by human_value."""
    if not rows:
        return empty
    columns = columns or [k for k, v in rows[0].items() if not isinstance(v, (dict, list)) or k in ("identities", "counts")]
    cells = [[human_value(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.replace("_", " ").ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def human_record(data: dict) -> str:
    """One object as aligned ``key  value`` lines; lists of objects become indented tables."""
    width = max((len(k) for k in data), default=0)
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            tables.append(f"\n{key.replace('_', ' ')}:\n" + "\n".join("  " + line for line in human_table(value).splitlines()))
        else:
            lines.append(f"{key.replace('_', ' ').ljust(width)}  {human_value(value)}")
    return "\n".join(lines) + "".join(tables)


def human(data) -> str:
    if isinstance(data, list):
        return human_table(data) if data and isinstance(data[0], dict) else human_value(data)
    if isinstance(data, dict):
        return human_record(data)
    return human_value(data)


class MeshCommand(BaseCommand):
    # Commands that set a workspace up (mesh_demo, mesh_workspace add) may create it; every other
    # command refuses an unknown slug rather than quietly working in an empty new workspace.
    creates_workspace = False

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
            if not self.creates_workspace:
                raise CommandError(
                    f"no workspace {slug!r} (create it with `mesh_workspace add {slug}`)", returncode=USAGE_ERROR
                )
            ws = workspace_get_or_create(slug=slug)
        return ws

    def emit(self, options, data, text: str | None = None) -> None:
        """``data`` as one JSON document with --json; otherwise ``text``, or ``data`` laid out
        for people by the one formatter every command shares."""
        if options.get("as_json"):
            self.stdout.write(json_dumps(data))
        else:
            self.stdout.write(text if text is not None else human(data))

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
    strength = _strength(contact)
    return {
        "id": contact.pk,
        "name": contact.name,
        "identities": [f"{i.kind}:{i.value}" for i in sorted(contact.identities.all(), key=lambda i: (i.kind, i.value))],
        "counts": contact.channel_counts or {},
        "last_activity_at": contact.last_activity_at,  # written by emit: RFC 3339 in JSON, readable otherwise
        "merged_into": contact.merged_into_id,
        # Relationship strength (streams.ranking), 0 with no last touch when nothing counts yet.
        "strength": strength.score if strength else 0,
        "last_touch_at": strength.last_touch_at if strength else None,
    }


def _strength(contact: Contact) -> ContactStrength | None:
    try:
        return contact.strength
    except ContactStrength.DoesNotExist:
        return None
