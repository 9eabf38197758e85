"""MQTT for the tests: the machine's Mosquitto (127.0.0.1:1883, which ``.ci/run`` starts), a
throw-away Mosquitto of the test's own (a temporary directory, a free port, persistence on)
for the tests that restart the broker, and a QoS 1 publisher as a device would run it."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MOSQUITTO = "/usr/sbin/mosquitto"
LOCAL = ("127.0.0.1", 1883)


def answers(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def client_id(prefix: str = "mesh-test") -> str:
    """A fresh client id: a test's session must not meet another run's on the shared broker."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def forget_session(host: str, port: int, cid: str) -> None:
    """End the persistent session kept under ``cid`` (clean start, expiry 0), so that the shared
    broker stops queueing messages for a test that has finished."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    try:
        client.connect(host, port, clean_start=True, properties=props)
        client.loop_start()
        time.sleep(0.2)
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass


class Broker:
    """A Mosquitto of the test's own, with persistence, so that a restart keeps sessions and
    queued messages as the machine's does (Debian's config: ``persistence true``)."""

    def __init__(self, tmp: Path):
        self.dir = tmp
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.conf = tmp / "mosquitto.conf"
        # As whoever runs the tests (as root it would switch to "mosquitto", who cannot write here).
        user = pwd.getpwuid(os.getuid()).pw_name
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser {user}\npersistence true\n"
            f"persistence_location {tmp}/\nmax_queued_messages 0\nlog_dest file {tmp}/mosquitto.log\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not answers("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto did not start: {(self.dir / 'mosquitto.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, as ``systemctl restart`` sends: Mosquitto saves its state before it exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)

    def restart(self) -> None:
        self.stop()
        self.start()


class Publisher:
    """A device's QoS 1 publisher on a persistent session: what the broker has not acknowledged
    is sent again after a reconnect, as MQTT promises (a message published while the
    connection is down waits in the client's queue)."""

    def __init__(self, host: str, port: int, *, inflight: int = 100):
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id("mesh-test-pub"),
                                  protocol=paho.MQTTv311, clean_session=False)
        self.client.max_inflight_messages_set(inflight)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=1)
        self.client.on_connect = lambda *_: self.connected.set()
        self.client.on_publish = self._acknowledged
        self.host, self.port = host, port
        self.connected = threading.Event()
        self.published = 0
        self.acknowledged = 0
        self._lock = threading.Lock()

    def _acknowledged(self, *_) -> None:
        with self._lock:
            self.acknowledged += 1

    def __enter__(self) -> Publisher:
        self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(15), f"no MQTT broker answers on {self.host}:{self.port}"
        return self

    def __exit__(self, *exc) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)
        self.published += 1

    def wait_acknowledged(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.acknowledged < self.published:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.published - self.acknowledged} message(s) not acknowledged by the broker")
            time.sleep(0.05)
