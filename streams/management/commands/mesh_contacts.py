"""List, merge and unmerge contacts.

  mesh_contacts list [--search Q] [--limit N]
  mesh_contacts merge A B [--into A|B] [--dry-run]
                              merge B into A (or A into B with --into B); prints the resulting
                              contact, or with --dry-run what would move, overlap and be named
  mesh_contacts unmerge A [--dry-run]
                              split A from what it was merged with; prints the resulting contacts
  mesh_contacts suggestions [--refresh] [--limit N]
                              contacts that may be one person, with the reasons (streams.linking)
  mesh_contacts accept ID [--into C]    merge a suggested pair; prints the resulting contact
  mesh_contacts reject ID     remember that a suggested pair is two people
"""

from __future__ import annotations

from django.core.management.base import CommandError

from streams.cli import MeshCommand, contact_json, human_table
from streams.contacts import contact_merge_preview, contact_unmerge_preview
from streams.linking import merge_suggestion_accept, merge_suggestion_reject, merge_suggestions_refresh
from streams.selectors import contacts_list
from streams.selectors.linking import merge_suggestion_get, merge_suggestions_open
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
        merge.add_argument("--into", help="the contact that stays (A or B; default A)")
        merge.add_argument("--dry-run", action="store_true", help="show what the merge would do; change nothing")
        unmerge = sub.add_parser("unmerge")
        unmerge.add_argument("a")
        unmerge.add_argument("--dry-run", action="store_true", help="show what would split off; change nothing")
        suggestions = sub.add_parser("suggestions")
        suggestions.add_argument("--refresh", action="store_true", help="look at the evidence again first")
        suggestions.add_argument("--limit", type=int, default=0, help="at most N suggestions (0: all)")
        accept = sub.add_parser("accept")
        accept.add_argument("id")
        accept.add_argument("--into", help="the contact that stays (default: the one with more activity)")
        reject = sub.add_parser("reject")
        reject.add_argument("id")

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
            if action in LINKING_ACTIONS:
                getattr(self, action)(workspace, options)
            elif action == "merge":
                target, other = self.contact(workspace, options["a"]), self.contact(workspace, options["b"])
                if options["into"] is not None:
                    into = self.contact(workspace, options["into"])
                    if into.pk not in (target.pk, other.pk):
                        raise CommandError(f"--into {options['into']} is neither {target.pk} nor {other.pk}")
                    target, other = (into, other if into.pk == target.pk else target)
                if options["dry_run"]:
                    preview = contact_merge_preview(workspace=workspace, target=target, other=other)
                    self.emit(options, merge_preview_json(preview))
                    return
                result = contact_merge(workspace=workspace, target=target, other=other)
                self.emit(options, contact_json(result))
            elif options["dry_run"]:
                root, parts = contact_unmerge_preview(workspace=workspace, contact=self.contact(workspace, options["a"]))
                self.emit(options, {"dry_run": True, "stays": contact_json(root), "split_off": [
                    {"contact": contact_json(p.contact), "identities": [i.label for i in p.identities]} for p in parts
                ]})
            else:
                result = contact_unmerge(workspace=workspace, contact=self.contact(workspace, options["a"]))
                rows = [contact_json(c) for c in result]
                self.emit(options, rows, human_table(rows, ["id", "name", "identities", "counts", "last_activity_at"]))
        except ServiceError as exc:
            raise CommandError(str(exc)) from None

    def suggestions(self, workspace, options) -> None:
        if options["refresh"]:
            done = merge_suggestions_refresh(workspace=workspace)
            self.note(f"{done.suggested} suggestions ({done.new} new, {done.reopened} reopened, {done.closed} closed, "
                      f"{done.auto_merged} merged automatically)")
        rows = [suggestion_json(s) for s in merge_suggestions_open(workspace=workspace, limit=options["limit"] or None)]
        self.emit(options, rows, human_table(
            [{"id": r["id"], "score": r["score"], "contacts": [f"{c['id']} {c['name']}" for c in r["contacts"]],
              "reasons": [x["text"] for x in r["reasons"]]} for r in rows], empty="no suggestions"))

    def accept(self, workspace, options) -> None:
        suggestion = self.suggestion(workspace, options["id"])
        into = self.contact(workspace, options["into"]) if options["into"] is not None else None
        result = merge_suggestion_accept(workspace=workspace, suggestion=suggestion, into=into)
        self.emit(options, contact_json(result))

    def reject(self, workspace, options) -> None:
        suggestion = merge_suggestion_reject(workspace=workspace, suggestion=self.suggestion(workspace, options["id"]))
        self.emit(options, {"id": suggestion.pk, "state": suggestion.state})

    @staticmethod
    def suggestion(workspace, value):
        suggestion = merge_suggestion_get(workspace=workspace, pk=value)
        if suggestion is None:
            raise CommandError(f"no suggestion {value} in workspace {workspace.slug}")
        return suggestion


LINKING_ACTIONS = ("suggestions", "accept", "reject")


def suggestion_json(suggestion) -> dict:
    return {"id": suggestion.pk, "contacts": [contact_json(suggestion.contact_a), contact_json(suggestion.contact_b)],
            "score": suggestion.score, "reasons": suggestion.reasons}


def merge_preview_json(preview) -> dict:
    """What ``merge --dry-run`` prints: what moves, what overlaps, which name wins."""
    return {
        "dry_run": True,
        "survivor": contact_json(preview.target),
        "merged": contact_json(preview.other),
        "moves": {"identities": [i.label for i in preview.identities], "activities": preview.other_count,
                  "counts": preview.channel_counts, "contacts": [c.pk for c in preview.children]},
        "overlap": {"activities": preview.shared, "threads": preview.shared_threads},
        "name": {"name": preview.name, "from": preview.name_from, "source": preview.name_source},
        "activities_after": preview.total_after,
    }
