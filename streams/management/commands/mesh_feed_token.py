"""Feed tokens: follow one relationship in a feed reader or another tool, without a login.

  mesh_feed_token create CONTACT [--tier metadata|subject|full] [--label TEXT]
  mesh_feed_token create --device ID [--tier ...] [--label TEXT]
  mesh_feed_token rotate CONTACT|--device ID [--tier ...] [--label TEXT]   revoke the live tokens, issue one
  mesh_feed_token revoke CONTACT|--device ID                prints {"revoked": n}

create and rotate print {"token", "urls": {"rss", "atom", "json", "as2"}}; the token is shown
only here. URLs are absolute: MESH_PUBLIC_URL when set, else http://127.0.0.1:8000. A token of
a merged contact follows the surviving contact; revoking a contact's tokens also revokes those
of the contacts merged into it. The default tier is metadata (who, when, channel).
"""

from __future__ import annotations

from django.core.management.base import CommandError

from streams.cli import MeshCommand
from streams.feed_tokens import (
    FeedTokenError,
    feed_token_create,
    feed_token_revoke,
    feed_token_rotate,
    feed_urls,
    public_base_url,
)
from streams.models import Device, FeedToken


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        sub = self.subcommands(parser)
        for name in ("create", "rotate", "revoke"):
            p = sub.add_parser(name)
            p.add_argument("contact", nargs="?", help="contact id (omit with --device)")
            p.add_argument("--device", type=int, help="a device's feed instead of a contact's")
            if name != "revoke":
                p.add_argument("--tier", choices=FeedToken.Tier.values,
                               default=FeedToken.Tier.METADATA if name == "create" else None,
                               help="what the feed shows (create: metadata; rotate: the replaced token's)")
                p.add_argument("--label", default="" if name == "create" else None,
                               help="what the token is for (rotate: the replaced token's)")

    def handle(self, *args, **options):
        workspace = self.workspace(options)
        contact = device = None
        if options.get("device") is not None:
            if options.get("contact"):
                raise CommandError("give a CONTACT or --device, not both")
            device = Device.objects.filter(workspace=workspace, pk=options["device"]).first()
            if device is None:
                raise CommandError(f"no device {options['device']} in workspace {workspace.slug}")
        elif options.get("contact"):
            contact = self.contact(workspace, options["contact"])
        else:
            raise CommandError("give a CONTACT id or --device ID")
        action = options["action"]
        try:
            if action == "revoke":
                n = feed_token_revoke(workspace=workspace, contact=contact, device=device)
                self.emit(options, {"revoked": n}, f"{n} token(s) revoked")
                return
            if action == "create":
                _row, token = feed_token_create(workspace=workspace, contact=contact, device=device,
                                                tier=options["tier"], label=options["label"])
            else:
                _row, token = feed_token_rotate(workspace=workspace, contact=contact, device=device,
                                                tier=options["tier"], label=options["label"])
        except FeedTokenError as exc:
            raise CommandError(str(exc)) from None
        urls = feed_urls(token, base=public_base_url())
        human = f"feed token (shown only now): {token}\n" + "\n".join(f"  {k}: {v}" for k, v in urls.items())
        self.emit(options, {"token": token, "urls": urls}, human)
