"""List, merge and unmerge contacts.

  mesh_contacts list [--search Q] [--limit N] [--sort recent|strength]
  mesh_contacts cold [--limit N]   contacts past their keep-in-touch cadence, most urgent first
  mesh_contacts cadence ID --every 14d [--at-most 42d] | --clear     a contact's own cadence
  mesh_contacts cadence --tier strong|steady|weak|faint --every 14d [--at-most 42d] | --clear
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
from django.utils import timezone

from streams.cli import USAGE_ERROR, MeshCommand, contact_json, human_table
from streams.contacts import contact_merge_preview, contact_unmerge_preview
from streams.linking import (
    merge_suggestion_accept,
    merge_suggestion_reject,
    merge_suggestions_refresh,
)
from streams.ranking import (
    TIER_NAMES,
    RankError,
    contact_cadence_set,
    parse_days,
    strengths_current,
    tier_cadence_set,
)
from streams.selectors import contacts_list
from streams.selectors.linking import merge_suggestion_get, merge_suggestions_open
from streams.selectors.ranking import (
    contact_cadence,
    contact_strength,
    contacts_by_strength,
    going_cold,
    tier_cadences,
)
from streams.services import ServiceError, contact_merge, contact_unmerge


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        sub = self.subcommands(parser)
        ls = sub.add_parser("list")
        ls.add_argument("--search", default="")
        ls.add_argument("--limit", type=int, default=0, help="at most N contacts (0: all)")
        ls.add_argument("--sort", choices=["recent", "strength"], default="recent",
                        help="most recently active first (default), or strongest relationship first")
        cold = sub.add_parser("cold")
        cold.add_argument("--limit", type=int, default=0, help="at most N contacts (0: all)")
        cadence = sub.add_parser("cadence")
        cadence.add_argument("contact", nargs="?", help="the contact (or --tier)")
        cadence.add_argument("--tier", choices=TIER_NAMES, help="set the workspace's default for a tier instead")
        cadence.add_argument("--every", help="ideal interval: 14, 14d, 2w, 3m")
        cadence.add_argument("--at-most", dest="at_most", help="longest interval (default: 3 × --every)")
        cadence.add_argument("--clear", action="store_true",
                             help="remove the contact's own cadence (its tier's applies), or a tier's reminders")
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
        if action in ("cold", "cadence"):
            self.keep_in_touch(workspace, options)
            return
        if action == "list":
            strengths_current(workspace=workspace)
            if options["sort"] == "strength":
                qs = contacts_by_strength(workspace=workspace, search=options["search"])
            else:
                qs = contacts_list(workspace=workspace, search=options["search"]).select_related("strength")
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

    def keep_in_touch(self, workspace, options) -> None:
        if options["action"] == "cold":
            strengths_current(workspace=workspace)
            rows = [e.as_json() for e in going_cold(workspace=workspace, now=timezone.now(),
                                                    limit=options["limit"] or None)]
            self.emit(options, rows, human_table(
                rows, ["id", "name", "strength", "tier", "state", "last_touch_at", "due_at"], empty="nobody is going cold"))
            return
        if (options["contact"] is None) == (options["tier"] is None):
            raise CommandError("name a contact ID or --tier", returncode=USAGE_ERROR)
        try:
            every = None if options["clear"] or not options["every"] else parse_days(options["every"])
            most = parse_days(options["at_most"]) if options["at_most"] and every else None
            if options["tier"]:
                if every or options["clear"]:
                    tier_cadence_set(workspace=workspace, tier=options["tier"], every_days=every, at_most_days=most)
                pair = tier_cadences(workspace=workspace)[options["tier"]]
                self.emit(options, {"tier": options["tier"], "every_days": pair[0] if pair else None,
                                    "at_most_days": pair[1] if pair else None})
                return
            contact = self.contact(workspace, options["contact"]).root()
            if every or options["clear"]:
                contact_cadence_set(workspace=workspace, contact=contact, every_days=every, at_most_days=most)
            strengths_current(workspace=workspace)
            strength = contact_strength(contact=contact)
            cadence = contact_cadence(contact=contact, tier=strength.tier if strength else None)
        except RankError as exc:
            raise CommandError(str(exc)) from None
        self.emit(options, {"id": contact.pk, "every_days": cadence.every_days if cadence else None,
                            "at_most_days": cadence.at_most_days if cadence else None,
                            "own": cadence.own if cadence else False})

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
