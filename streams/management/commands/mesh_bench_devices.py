"""How fast device events are accepted: over HTTP (gunicorn, concurrent clients posting batches)
and over MQTT (mesh_mqtt, QoS 1), on PostgreSQL with Redis, in a throw-away workspace.

  mesh_bench_devices [--clients 16] [--batches 20] [--batch-size 100] [--workers 4]
                     [--messages 20000] [--mqtt-url URL] [--skip-http] [--skip-mqtt] [--keep] [--json]

Progress goes to stderr; --json prints one document. Code: bench/device_bench.py."""

from __future__ import annotations

import json
import os
import sys

from django.conf import settings
from django.core.management.base import CommandError

from bench.device_bench import DeviceBench
from streams.cli import MeshCommand


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=int, default=16, help="concurrent clients, each a device of its own")
        parser.add_argument("--batches", type=int, default=20, help="HTTP requests per client")
        parser.add_argument("--batch-size", type=int, default=100, help="events per HTTP request")
        parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
        parser.add_argument("--messages", type=int, default=20000, help="MQTT messages in all (one event each)")
        parser.add_argument("--skip-http", action="store_true")
        parser.add_argument("--skip-mqtt", action="store_true")
        parser.add_argument("--mqtt-url", default="", help="a broker to use (default: a throw-away Mosquitto)")
        parser.add_argument("--keep", action="store_true", help="keep the devbench workspace afterwards")

    def handle(self, *args, **options):
        bench = DeviceBench(
            clients=options["clients"], batches=options["batches"], batch_size=options["batch_size"],
            workers=options["workers"], messages=options["messages"], http=not options["skip_http"],
            mqtt=not options["skip_mqtt"], mqtt_url=options["mqtt_url"], keep=options["keep"], log=self.stderr.write,
        )
        try:
            results = bench.run()
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                              "database": settings.DATABASES["default"]["ENGINE"]}
        self.emit(options, results, json.dumps(results, indent=2, default=str))
