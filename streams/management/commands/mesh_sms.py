"""Text a contact through Twilio: ``mesh_sms send --contact N --body TEXT [--source ID] [--to NUMBER]``.

The message is sent with the status callback URL set (``MESH_PUBLIC_URL`` +
``/hooks/twilio/<source>/status``) and recorded on the contact's timeline at once, in state
``queued``; delivery updates arrive by callback. Errors are said plainly (invalid number,
21610 recipient unsubscribed, 20003 authentication failed) and exit non-zero.

``--json`` prints ``{"activity", "sid", "to", "from", "state", "status_callback"}``."""

from __future__ import annotations

from django.core.management.base import CommandError

from streams.cli import MeshCommand
from streams.messaging import MessageSendError, message_send, message_source_for


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        sub = self.subcommands(parser)
        send = sub.add_parser("send", help="send a text to a contact")
        send.add_argument("--contact", required=True, help="contact id")
        send.add_argument("--body", required=True, help="the text (up to 1600 characters)")
        send.add_argument("--source", type=int, help="the Twilio SMS source to send from (needed when there are several)")
        send.add_argument("--to", help="the number to text (default: the contact's phone number)")
        send.add_argument("--from", dest="from_number", help="which of the source's numbers to send from")

    def handle(self, *args, **options):
        workspace = self.workspace(options)
        contact = self.contact(workspace, options["contact"])
        try:
            source = message_source_for(workspace=workspace, source_id=options.get("source"))
            activity = message_send(workspace=workspace, contact=contact, body=options["body"], source=source,
                                    to=options.get("to"), sender=options.get("from_number"))
        except MessageSendError as exc:
            raise CommandError(str(exc)) from None
        delivery = (activity.extra or {}).get("delivery") or {}
        to = next((p.identity.value for p in activity.participants.select_related("identity") if p.role == "to"), options.get("to"))
        data = {
            "activity": activity.pk, "sid": activity.external_id, "to": to,
            "from": (activity.extra or {}).get("number"), "state": delivery.get("state"),
            "status_callback": (activity.extra or {}).get("status_callback"),
        }
        self.emit(options, data, f"sent {data['sid']} to {to} ({data['state']})")
