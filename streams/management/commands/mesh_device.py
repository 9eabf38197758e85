"""Manage devices.

  mesh_device add NAME [--kind phone]   prints {"id", "token"}; the token is shown only here
  mesh_device list
  mesh_device revoke ID
  mesh_device rotate ID                 prints a new token; the old one stops working
  mesh_device places ID public|private  whether its places reach the public lifestream, coarsened
                                        (default private)
  mesh_device topic ID [TOPIC]          the MQTT base topic it publishes under (mesh_mqtt), e.g.
                                        owntracks/ana/phone or mesh/devices/ana-phone; none clears
  mesh_device scope ID own|devices|contacts   what its token may read through the sync API
                                        (add takes --scope too; default own)
"""

from __future__ import annotations

from django.core.management.base import CommandError

from streams.cli import MeshCommand
from streams.devices import TopicTaken, device_set_mqtt_topic
from streams.models import Device
from streams.places import device_places_public_set
from streams.selectors import NO_PENDING, device_presence, inbound_pending
from streams.selectors.sync import SCOPES
from streams.services import device_create, device_revoke, device_rotate_token
from streams.sync import device_sync_scope_set


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        sub = self.subcommands(parser)
        add = sub.add_parser("add")
        add.add_argument("name")
        add.add_argument("--kind", default="")
        add.add_argument("--scope", choices=SCOPES, default="own", help="what its token may sync (default own)")
        sub.add_parser("list")
        places = sub.add_parser("places")
        places.add_argument("id", type=int)
        places.add_argument("visibility", choices=("public", "private"))
        topic = sub.add_parser("topic")
        topic.add_argument("id", type=int)
        topic.add_argument("topic", nargs="?", default="")
        scope = sub.add_parser("scope")
        scope.add_argument("id", type=int)
        scope.add_argument("scope", choices=SCOPES)
        for name in ("revoke", "rotate"):
            p = sub.add_parser(name)
            p.add_argument("id", type=int)

    def handle(self, *args, **options):
        workspace = self.workspace(options)
        action = options["action"]
        if action == "add":
            device, token = device_create(workspace=workspace, name=options["name"], kind=options["kind"])
            device_sync_scope_set(device=device, scope=options["scope"])
            self.emit(options, {"id": device.pk, "token": token},
                      f"device {device.pk} added.\ntoken (shown only now): {token}")
            return
        if action == "list":
            pending = inbound_pending(workspace=workspace)
            rows = [
                # last_seen_at, presence, battery, place: the one rule the device pages show.
                {"id": d.pk, "name": d.name, "kind": d.kind, "revoked": d.is_revoked,
                 "activity_count": d.activity_count, "pending": pending.get(f"device:{d.pk}", NO_PENDING),
                 **device_presence(device=d).as_json(), "mqtt_topic": d.mqtt_topic, "high_seq": d.seq_high}
                for d in Device.objects.filter(workspace=workspace).order_by("pk")
            ]
            self.emit(options, rows)
            return
        device = Device.objects.filter(workspace=workspace, pk=options["id"]).first()
        if device is None:
            raise CommandError(f"no device {options['id']} in workspace {workspace.slug}")
        if action == "places":
            device_places_public_set(device=device, public=options["visibility"] == "public")
            self.emit(options, {"id": device.pk, "places_public": device.places_public},
                      f"device {device.pk}: places {options['visibility']}")
            return
        if action == "topic":
            try:
                device_set_mqtt_topic(device=device, topic=options["topic"])
            except (TopicTaken, ValueError) as exc:
                raise CommandError(str(exc)) from None
            self.emit(options, {"id": device.pk, "mqtt_topic": device.mqtt_topic},
                      f"device {device.pk} publishes under {device.mqtt_topic or '(no topic)'}")
            return
        if action == "scope":
            device_sync_scope_set(device=device, scope=options["scope"])
            self.emit(options, {"id": device.pk, "scope": device.sync_scope},
                      f"device {device.pk} syncs scope {device.sync_scope}")
        elif action == "revoke":
            device_revoke(device=device)
            self.emit(options, {"id": device.pk, "revoked": True}, f"device {device.pk} revoked")
        else:
            token = device_rotate_token(device=device)
            self.emit(options, {"id": device.pk, "token": token}, f"new token (shown only now): {token}")
