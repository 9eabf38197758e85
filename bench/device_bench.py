"""Device events in: how fast Mesh accepts them (stored raw, seqs held) over HTTP and MQTT.
Driven by ``manage.py mesh_bench_devices``, on PostgreSQL with Redis (ingest is queued to a
Celery queue of the benchmark's own that no worker reads: this measures the door, not ingest).

- **HTTP**: ``gunicorn mesh_site.wsgi`` (sync workers, production settings) and ``--clients``
  threads, each a device with its own token, POSTing ``--batches`` batches of ``--batch-size``
  events (ids and seqs rising per device) as fast as the server answers. Events accepted per
  second over the whole load, request latencies, and a check: every event stored once, every
  device's ``high_seq`` equal to what it sent.
- **MQTT**: ``manage.py mesh_mqtt`` in its own process and one QoS 1 publisher sending
  ``--messages`` messages (one event each) for ``--clients`` devices on
  ``mesh/devices/<name>/events`` as fast as it can. Messages stored per second, from the first
  publish until the last one is a committed row, and the same check. The broker is a
  throw-away Mosquitto of the benchmark's own, with no limit on what it queues for a client
  (a machine's broker keeps 1,000 per client by default and drops the rest, so a publisher
  faster than any subscriber loses messages there), unless ``--mqtt-url`` names one.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
from django.db import close_old_connections

from .mosquitto import Broker, forget_session
from .run import drop_workspace, pct

ROOT = Path(__file__).resolve().parent.parent
WORKSPACE = "devbench"
QUEUE = "devbench"
# Production-like settings for gunicorn and mesh_mqtt (no DEBUG query log, persistent
# connections), and a Celery queue no worker reads.
SERVER_ENV = {
    "DEBUG": "0", "SECRET_KEY": "device-bench-secret-key-not-for-production", "MESH_ENCRYPTION_KEYS": "device-bench",
    "SECURE_SSL_REDIRECT": "0", "SESSION_COOKIE_SECURE": "0", "CSRF_COOKIE_SECURE": "0",
    "ALLOWED_HOSTS": "127.0.0.1,localhost", "DB_CONN_MAX_AGE": "60", "MESH_CELERY_QUEUE": QUEUE,
    "DJANGO_SETTINGS_MODULE": "mesh_site.settings",
}
OCCURRED = "2026-05-01T10:00:00Z"


def _event(device: int, n: int) -> dict:
    return {"id": f"e{n}", "seq": n, "type": "battery", "occurred_at": OCCURRED,
            "data": {"battery": n % 100, "charging": n % 2 == 0, "text": f"bench event {n} of device {device}"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children_cpu() -> float:
    """CPU seconds of the children that have ended (gunicorn's workers through their master)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out or ""


class DeviceBench:
    def __init__(self, *, clients: int = 16, batches: int = 20, batch_size: int = 100, workers: int = 4,
                 messages: int = 20000, http: bool = True, mqtt: bool = True, mqtt_url: str = "",
                 keep: bool = False, log: Callable[[str], None] = print):
        self.clients, self.batches, self.batch_size, self.workers = clients, batches, batch_size, workers
        self.messages, self.do_http, self.do_mqtt, self.keep = messages, http, mqtt, keep
        self.mqtt_url = mqtt_url
        self.log = log
        self.env = {**os.environ, **SERVER_ENV}

    def run(self) -> dict:
        from django.conf import settings

        if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
            raise RuntimeError("the device benchmark runs on PostgreSQL: set DATABASE_URL=postgres://…")
        if not os.environ.get("REDIS_URL"):
            raise RuntimeError("set REDIS_URL: without it every request would ingest in-process")
        results: dict = {}
        try:
            if self.do_http:
                results["http"] = self.http()
            if self.do_mqtt and self.mqtt_url:
                results["mqtt"] = self.mqtt(self.mqtt_url)
            elif self.do_mqtt:
                with Broker() as url:
                    results["mqtt"] = self.mqtt(url)
        finally:
            self._purge_queue()
            if not self.keep:
                self._drop()
        return results

    # --- setup ------------------------------------------------------------------------------

    def _drop(self) -> None:
        from streams.models import Workspace

        ws = Workspace.objects.filter(slug=WORKSPACE).first()
        if ws is not None:
            drop_workspace(ws)

    def _devices(self, label: str, *, topics: bool = False, extra: int = 0) -> list[tuple[int, str, str]]:
        """(id, token, topic) of ``clients`` (+ ``extra``) fresh devices in a fresh workspace."""
        from streams.devices import device_set_mqtt_topic
        from streams.services import device_create, workspace_get_or_create

        self._drop()
        workspace = workspace_get_or_create(slug=WORKSPACE, name="Device bench")
        run = uuid.uuid4().hex[:6]
        out = []
        for i in range(self.clients + extra):
            device, token = device_create(workspace=workspace, name=f"{label} {i}", kind="phone")
            topic = f"mesh/devices/bench-{run}-{i}" if topics else ""
            if topic:
                device_set_mqtt_topic(device=device, topic=topic)
            out.append((device.pk, token, topic))
        return out

    def _purge_queue(self) -> None:
        from mesh_site.celery import app

        try:
            with app.connection_for_write() as conn:
                conn.default_channel.queue_purge(QUEUE)
        except Exception as exc:  # a queue never declared: nothing to purge
            self.log(f"(queue {QUEUE} not purged: {exc})")

    def _check(self, devices: list[tuple[int, str, str]], per_device: int) -> dict:
        from streams.models import Device, InboundItem

        close_old_connections()
        ids = [d for d, _, _ in devices]
        stored = InboundItem.objects.filter(device_id__in=ids).count()
        distinct = InboundItem.objects.filter(device_id__in=ids).values("device_id", "external_id").distinct().count()
        highs = set(Device.objects.filter(pk__in=ids).values_list("seq_high", flat=True))
        return {"expected": per_device * len(ids), "stored": stored, "doubled": stored - distinct,
                "high_seq_all_equal_sent": highs == {per_device}}

    # --- HTTP -------------------------------------------------------------------------------

    def http(self) -> dict:
        *devices, warm = self._devices("HTTP bench", extra=1)
        close_old_connections()
        port = _free_port()
        cpu0 = _children_cpu()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "mesh_site.wsgi", "-w", str(self.workers), "-b", f"127.0.0.1:{port}",
             "--backlog", "2048", "--log-level", "warning"],
            cwd=ROOT, env=self.env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("gunicorn did not start") from None
                    time.sleep(0.1)
            # Warm-up: each worker imports and connects once (a device of its own, not counted).
            self._post_all(port, [warm[:2]], batches=self.workers * 2, first_seq=1)
            self.log(f"HTTP: {self.clients} clients × {self.batches} batches × {self.batch_size} events")
            result = self._post_all(port, [(d, t) for d, t, _ in devices], batches=self.batches, first_seq=1)
        finally:
            out = _stop(server)
        # All of gunicorn's CPU, warm-up and start included: the machine is shared, wall time is not Mesh's alone.
        result["server_cpu_seconds"] = round(_children_cpu() - cpu0, 2)
        if result["errors"]:
            self.log(out[-2000:])
        total = self.batches * self.batch_size
        result.update(self._check(devices, total))
        result["workers"] = self.workers
        return result

    def _post_all(self, port: int, devices: list[tuple[int, str]], *, batches: int, first_seq: int) -> dict:
        latencies: list[float] = []
        accepted = [0]
        errors: dict[str, int] = {}
        lock = threading.Lock()
        start = threading.Barrier(len(devices) + 1)

        def client(device: int, token: str) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            bodies = [json.dumps({"events": [_event(device, first_seq + b * self.batch_size + i)
                                             for i in range(self.batch_size)]}) for b in range(batches)]
            start.wait()
            for body in bodies:
                t = time.perf_counter()
                try:
                    conn.request("POST", "/api/v1/devices/events", body=body, headers=headers)
                    response = conn.getresponse()
                    answer = response.read()
                    status = response.status
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    status, answer = type(exc).__name__, b"{}"
                ms = (time.perf_counter() - t) * 1000
                with lock:
                    latencies.append(ms)
                    if status == 202:
                        accepted[0] += json.loads(answer)["accepted"]
                    else:
                        errors[str(status)] = errors.get(str(status), 0) + 1
            conn.close()

        threads = [threading.Thread(target=client, args=d) for d in devices]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        return {"clients": len(devices), "requests": len(latencies), "events_accepted": accepted[0],
                "seconds": round(elapsed, 2), "events_per_s": round(accepted[0] / elapsed, 1),
                "requests_per_s": round(len(latencies) / elapsed, 1), "latency_ms": pct(latencies),
                "errors": errors}

    # --- MQTT -------------------------------------------------------------------------------

    def mqtt(self, url: str) -> dict:
        from streams.models import InboundItem
        from streams.mqtt import BrokerConfig

        devices = self._devices("MQTT bench", topics=True)
        ids = [d for d, _, _ in devices]
        per_device = self.messages // self.clients
        total = per_device * self.clients
        broker = BrokerConfig(url)
        cid = f"mesh-bench-{uuid.uuid4().hex[:8]}"
        env = {**self.env, "MESH_MQTT_CLIENT_ID": cid, "MESH_MQTT_URL": url}
        close_old_connections()
        cpu0 = _children_cpu()
        ingest = subprocess.Popen([sys.executable, "manage.py", "mesh_mqtt", "--json"], cwd=ROOT, env=env,
                                  start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            started = []  # its session is new: what is published before it subscribed is lost
            while not any("subscribed" in line for line in started):
                line = ingest.stdout.readline()
                if not line:
                    raise RuntimeError(f"mesh_mqtt exited: {''.join(started)[-2000:]}")
                started.append(line)
            # Bodies built before the clock starts: the figure is Mesh's, not the publisher's.
            plan = [(devices[i % self.clients][2] + "/events",
                     json.dumps({"events": [_event(devices[i % self.clients][0], i // self.clients + 1)]}))
                    for i in range(total)]
            self.log(f"MQTT: {total} messages, QoS 1, {self.clients} devices, broker {broker.host}:{broker.port}")
            pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{cid}-pub", protocol=paho.MQTTv311)
            pub.max_inflight_messages_set(1000)
            pub.max_queued_messages_set(0)
            acknowledged = [0]
            pub.on_publish = lambda *_: acknowledged.__setitem__(0, acknowledged[0] + 1)
            pub.connect(broker.host, broker.port)
            pub.loop_start()
            t0 = time.perf_counter()
            for topic, body in plan:
                pub.publish(topic, body, qos=1)
            stored = 0
            deadline = time.monotonic() + max(120, total / 500)
            while stored < total and time.monotonic() < deadline:
                time.sleep(0.05)
                stored = InboundItem.objects.filter(device_id__in=ids).count()
            elapsed = time.perf_counter() - t0
            pub.disconnect()
            pub.loop_stop()
        finally:
            out = _stop(ingest)
            cpu = _children_cpu() - cpu0
            forget_session(broker.host, broker.port, cid)
        counts = {}
        for line in out.splitlines():
            if line.startswith("{"):
                counts = json.loads(line)
        result = {"messages": total, "devices": self.clients, "seconds": round(elapsed, 2),
                  "messages_per_s": round(stored / elapsed, 1), "broker_acknowledged": acknowledged[0],
                  "mesh_mqtt_cpu_seconds": round(cpu, 2),
                  "mesh_mqtt": counts}
        result.update(self._check(devices, per_device))
        return result

