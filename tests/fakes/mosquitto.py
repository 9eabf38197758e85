"""MQTT for the tests: the machine's Mosquitto (127.0.0.1:1883, which ``.ci/run`` starts), a
throw-away Mosquitto of the test's own for the tests that restart the broker (``Broker``, shared
with the device benchmark in bench/mosquitto.py), and a QoS 1 publisher as a device would run it."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as paho

from bench.mosquitto import Broker as Broker
from bench.mosquitto import answers as answers
from bench.mosquitto import forget_session as forget_session

LOCAL = ("127.0.0.1", 1883)


def client_id(prefix: str = "mesh-test") -> str:
    """A fresh client id: a test's session must not meet another run's on the shared broker."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


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
