"""MQTT in: what ``mesh_mqtt`` runs. It subscribes on the broker (``MESH_MQTT_URL``) to every
installed connector's ``mqtt_topics`` (``connectors.base.Connector``), maps each message's base
topic to a device (``Device.mqtt_topic``) and stores what the connector makes of it through the
same path as the HTTP doors (``streams.services.devices_events_store``: raw first, seqs held,
ingest after commit).

Nothing lost, nothing doubled: QoS 1 on a persistent session (MQTT 5, clean start off, a
session expiry of ``SESSION_EXPIRY`` and the fixed client id ``MESH_MQTT_CLIENT_ID``), so the
broker keeps what arrives while Mesh is away, and manual acknowledgement: a message is
acknowledged only after the transaction that stores it commits. A crash, a lost connection or
a broker restart in between makes the broker deliver it again, and the raw store's unique
(device, external id) makes the second copy a no-op. Messages are stored in batches (up to
``batch`` messages, or what arrived within ``flush_ms``), one transaction each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import logging
import queue
import ssl
import threading
import time
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from django.utils import timezone
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from connectors.base import Connector, RawItem, registry
from connectors.text import clean_text

from .conf import conf
from .devices import DeviceBatch
from .models import Device
from .services import devices_events_store

log = logging.getLogger(__name__)

# How long the broker keeps Mesh's session (its subscriptions and the messages queued for it)
# while mesh_mqtt is not connected.
SESSION_EXPIRY = 7 * 24 * 3600
# Messages the broker may send before Mesh acknowledges any: a batch is at most this.
RECEIVE_MAXIMUM = 4000


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    received_at: dt.datetime
    connection: int  # which connection it came on: an acknowledgement is only valid on that one


@dataclasses.dataclass
class Counts:
    received: int = 0
    stored: int = 0
    duplicate: int = 0
    unmapped: int = 0
    batches: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def add(self, other: Counts) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class BrokerConfig:
    """``MESH_MQTT_URL`` (``mqtt://[user:password@]host[:port]``, ``mqtts://`` for TLS) and
    the credentials and client id settings beside it."""

    def __init__(self, url: str, *, username: str = "", password: str = "", client_id: str = "mesh"):
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"MESH_MQTT_URL must be mqtt://host[:port] or mqtts://host[:port], not {url!r}")
        self.host = parts.hostname
        self.tls = parts.scheme == "mqtts"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = unquote(parts.username or "") or username
        self.password = unquote(parts.password or "") or password
        self.client_id = client_id

    @classmethod
    def from_settings(cls) -> BrokerConfig:
        return cls(conf.MQTT_URL, username=conf.MQTT_USERNAME, password=conf.MQTT_PASSWORD,
                   client_id=conf.MQTT_CLIENT_ID)


def subscriptions() -> dict[str, type[Connector]]:
    """Every installed connector's topic filters, each with its connector."""
    found: dict[str, type[Connector]] = {}
    for cls in registry.connectors.values():
        for topic in cls.mqtt_topics:
            found.setdefault(topic, cls)
    return found


class MqttIngest:
    """One client: ``start()`` connects (and keeps reconnecting), ``run()`` stores what
    arrives until ``stop()``."""

    def __init__(self, broker: BrokerConfig, *, batch: int = 1000, flush_ms: int = 50):
        self.broker = broker
        self.batch = max(1, min(batch, RECEIVE_MAXIMUM))
        self.flush_s = flush_ms / 1000
        self.counts = Counts()
        self.topics = subscriptions()
        # Matching a topic against every filter cost a tenth of the CPU per message; a device
        # publishes on the same few topics again and again.
        self._connector_for = functools.lru_cache(maxsize=4096)(self._match_topic)
        self.subscribed = threading.Event()  # the broker acknowledged the subscriptions
        self._stop = threading.Event()
        self._inbox: queue.Queue[Message] = queue.Queue()
        self._connection = 0
        self._ack_lock = threading.Lock()
        self._warned: set[str] = set()
        self.client = self._client()

    # --- the network thread -----------------------------------------------------------------

    def _client(self) -> paho.Client:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.broker.client_id,
                             protocol=paho.MQTTv5, manual_ack=True)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password or None)
        if self.broker.tls:
            client.tls_set_context(ssl.create_default_context())
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s:%s refused the connection: %s", self.broker.host, self.broker.port, reason_code)
            return
        with self._ack_lock:
            self._connection += 1
        # Subscribed again on every connection: a broker that lost its state (no persistence)
        # lost the subscriptions too. Retained messages come again; they are duplicates.
        client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in self.topics])
        log.info("MQTT connected to %s:%s (session present: %s)", self.broker.host, self.broker.port,
                 flags.session_present)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [topic for topic, rc in zip(self.topics, reason_codes, strict=False) if rc.is_failure]
        if refused:  # an ACL, typically: say so rather than wait for messages that never come
            log.error("MQTT broker refused the subscription to %s", ", ".join(refused))
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("MQTT connection lost (%s): reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        self._inbox.put(Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain),
                                timezone.now(), self._connection))

    # --- the storing thread -----------------------------------------------------------------

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30, clean_start=False,
                                  properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Disconnect: what was not acknowledged stays in the broker's session for next time."""
        self._stop.set()
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    def run(self, *, max_seconds: float | None = None) -> Counts:
        deadline = time.monotonic() + max_seconds if max_seconds else None
        while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
            messages = self._take()
            if messages:
                self._store_until_done(messages)
        return self.counts

    def _take(self) -> list[Message]:
        try:
            first = self._inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        messages = [first]
        until = time.monotonic() + self.flush_s
        while len(messages) < self.batch:
            left = until - time.monotonic()
            try:
                messages.append(self._inbox.get(timeout=left) if left > 0 else self._inbox.get_nowait())
            except queue.Empty:
                break
        return messages

    def _store_until_done(self, messages: list[Message]) -> None:
        delay = 1.0
        while True:
            try:
                counts = self.store(messages)
                break
            except Exception:  # the database is away: keep them unacknowledged and try again
                log.exception("could not store %d MQTT message(s); retrying in %.0f s", len(messages), delay)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 30)
        self._ack(messages)
        self.counts.add(counts)

    def _ack(self, messages: list[Message]) -> None:
        with self._ack_lock:
            for m in messages:
                # After a reconnect the broker sends the message again (with a new id), and an old
                # id could name another message on the new connection.
                if m.qos and m.connection == self._connection:
                    self.client.ack(m.mid, m.qos)

    def store(self, messages: list[Message]) -> Counts:
        """Store a batch in one transaction (``devices_events_store``): per device, the items each
        connector makes of its messages, the device seen (not for retained messages: they may be
        old) and its last will."""
        counts = Counts(received=len(messages), batches=1)
        routed: dict[str, list[tuple[type[Connector], Message]]] = {}
        for m in messages:
            cls = self._connector_for(m.topic)
            base = cls.mqtt_device_topic(m.topic) if cls else None
            if base is None:
                self._unmapped(counts, m.topic, "matches no connector's topics")
                continue
            routed.setdefault(base, []).append((cls, m))
        devices = {d.mqtt_topic: d for d in Device.objects.select_related("workspace")
                   .filter(mqtt_topic__in=list(routed), revoked_at=None)}
        batches = []
        for base, device_messages in routed.items():
            if base in devices:
                batches.append(_device_batch(devices[base], device_messages, counts))
            else:
                self._unmapped(counts, base, "is no device's topic (mesh_device topic ID TOPIC), or its device is revoked")
        if batches:
            stored, already = devices_events_store(batches)
            counts.stored += stored
            counts.duplicate += already
        return counts

    def _match_topic(self, topic: str) -> type[Connector] | None:
        for pattern, cls in self.topics.items():
            if paho.topic_matches_sub(pattern, topic):
                return cls
        return None

    def _unmapped(self, counts: Counts, topic: str, why: str) -> None:
        counts.unmapped += 1
        if topic not in self._warned:  # once per topic: a chatty device must not flood the log
            self._warned.add(topic)
            log.warning("MQTT messages on %s are dropped: it %s", topic, why)


def _device_batch(device: Device, routed: list[tuple[type[Connector], Message]], counts: Counts) -> DeviceBatch:
    """What one device's messages of a batch store: the items by connector (an id sent twice
    within the batch counted a duplicate), the last time it was heard and its last will."""
    context = {"device_id": device.pk}  # what mqtt_message needs (connectors.base); ingest builds its own
    connectors: dict[str, Connector] = {}
    by_connector: dict[str, dict[str, RawItem]] = {}
    seen_at = will_at = None
    for cls, m in routed:
        if cls.key not in connectors:
            connectors[cls.key] = cls({}, {}, context=context)
        items = _items(connectors[cls.key], m)
        batch = by_connector.setdefault(cls.key, {})
        for item in items:
            if item.external_id in batch:
                counts.duplicate += 1
            batch.setdefault(item.external_id, item)
        if m.retain:
            continue  # a message kept by the broker says nothing about now
        if any(cls.mqtt_will(i) for i in items):
            will_at = max(will_at or m.received_at, m.received_at)
        else:
            seen_at = max(seen_at or m.received_at, m.received_at)
    return DeviceBatch(device, {key: list(items.values()) for key, items in by_connector.items()}, seen_at, will_at)


def _items(connector: Connector, m: Message) -> list[RawItem]:
    """What the connector makes of a message; a payload it cannot read becomes a skip record,
    keyed by its content, so that the same bad message twice is one failure."""
    try:
        result = connector.mqtt_message(m.topic, m.payload, m.received_at)
    except ValueError as exc:
        digest = hashlib.sha256(m.topic.encode() + b"\n" + m.payload).hexdigest()[:32]
        text = clean_text(m.payload[:2000].decode("utf-8", errors="replace"))
        return [RawItem(f"mqtt-invalid/{digest}", {"_error": f"MQTT message on {m.topic}: {exc}",
                                                   "_topic": m.topic, "_text": text}, m.received_at)]
    if result is None:
        return []
    return [result] if isinstance(result, RawItem) else list(result)
