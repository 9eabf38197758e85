"""MQTT in: subscribe on the broker (MESH_MQTT_URL) to every connector's topics — OwnTracks'
owntracks/+/+ (and /event, /lwt), the device API's mesh/devices/+/events — and store each
message for the device whose topic it is (mesh_device topic ID TOPIC), as the HTTP doors do.

QoS 1 on a persistent session (client id MESH_MQTT_CLIENT_ID): what arrives while it is away
waits in the broker, and a message is acknowledged only once stored, so a crash or a broker
restart loses nothing, and what the broker sends again is stored once. Run exactly one per
client id, next to the Celery workers (a systemd unit or a supervisor program); it reconnects
by itself. Stops on SIGTERM/SIGINT after the batch in hand.

  --max-seconds N   stop after N seconds (0: never); --json then prints the counts
"""

from __future__ import annotations

import signal

from django.core.management.base import CommandError

from streams.cli import MeshCommand
from streams.mqtt import BrokerConfig, MqttIngest


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--max-seconds", type=float, default=0, help="stop after this long (0: never)")
        parser.add_argument("--batch", type=int, default=1000, help="messages stored per transaction at most")

    def handle(self, *args, **options):
        try:
            broker = BrokerConfig.from_settings()
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        ingest = MqttIngest(broker, batch=options["batch"])
        if not ingest.topics:
            raise CommandError("no installed connector reads MQTT (Connector.mqtt_topics)")
        previous = {sig: signal.signal(sig, lambda *_: ingest.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.stderr.write(f"mesh_mqtt: {broker.host}:{broker.port} as {broker.client_id!r}, topics "
                          + ", ".join(sorted(ingest.topics)))
        ingest.start()
        if ingest.subscribed.wait(30):
            self.stderr.write("mesh_mqtt: subscribed")
        else:  # it keeps trying in the background
            self.stderr.write("mesh_mqtt: no answer from the broker yet; retrying")
        try:
            counts = ingest.run(max_seconds=options["max_seconds"] or None)
        finally:
            ingest.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.emit(options, counts.as_dict())
