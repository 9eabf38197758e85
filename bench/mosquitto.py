"""A throw-away Mosquitto (its own directory and free port, persistence on, no limit on what
it queues for a client) and the small MQTT chores around it, for the device benchmark and the
tests. It lives in ``bench`` because ``bench`` is an installed package (pyproject) and
``tests`` is not: the tests may import from here, the benchmark may not import from tests."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MOSQUITTO = "/usr/sbin/mosquitto"


def answers(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def forget_session(host: str, port: int, cid: str) -> None:
    """End the persistent session kept under ``cid`` (clean start, expiry 0), so that a shared
    broker stops queueing messages for a client that has finished."""
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
    """Mosquitto in ``directory`` (a temporary one, removed afterwards, if not given), with
    persistence, so that a restart keeps sessions and queued messages as Debian's config does,
    and unbounded queues (a machine's broker keeps 1,000 messages per client by default and
    drops the rest, so a publisher faster than any subscriber loses messages there).
    ``with Broker() as url`` starts it and answers its ``mqtt://`` URL."""

    def __init__(self, directory: Path | None = None):
        self.own_dir = directory is None
        self.dir = Path(tempfile.mkdtemp(prefix="mesh-mqtt-")) if directory is None else directory
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.conf = self.dir / "mosquitto.conf"
        # As whoever runs it (as root it would switch to "mosquitto", who cannot write here).
        user = pwd.getpwuid(os.getuid()).pw_name
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser {user}\npersistence true\n"
            f"persistence_location {self.dir}/\nmax_queued_messages 0\nmax_inflight_messages 0\n"
            f"log_dest file {self.dir}/mosquitto.log\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
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

    def __enter__(self) -> str:
        self.start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
