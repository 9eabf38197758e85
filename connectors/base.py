"""The connector contract: what a source hands to Mesh and how it fails.

A connector is a class with a stable ``key``, a typed ``Config``, ``fetch(cursor)`` yielding
`Batch`es of `RawItem`s with the cursor to resume after each batch, and a pure
``normalize(raw) -> ActivityDraft`` that raises `BadItem` for an item it cannot use.
Mesh stores, de-duplicates, resolves identities and builds timelines; the connector does none
of that.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar

import orjson

from .config import config_values
from .text import MAX_JSON_DEPTH, clean_json, clean_text, json_deeper_than, needs_cleaning

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mesh.connectors"

CHANNELS = ("email", "sms", "twitter", "device")
DIRECTIONS = ("in", "out", "none")
VISIBILITIES = ("private", "public")
ROLES = ("from", "to", "cc", "bcc", "author", "mention", "subject", "sender", "reply_to")

# How far ahead of Mesh's clock an item may be dated, for every connector and the device API:
# clocks drift and zones get mislabelled by hours, but an item dated next week (or in 5138,
# from milliseconds read as seconds) is a bad timestamp, and it would sit on top of every
# timeline until then.
MAX_CLOCK_SKEW = dt.timedelta(days=1)
# An ``extra`` larger than this, serialized, is not metadata: it is a payload in the wrong place.
MAX_EXTRA_BYTES = 256 * 1024
# Column widths of the activity table that a draft fills as it is (the others are truncated or
# have no limit).
MAX_CHANNEL = 16
MAX_VERB = 32
TEXT_FIELDS = ("channel", "verb", "dedup_key", "subject", "text", "html", "url", "thread_key")


class ConnectorError(Exception):
    """A failure talking to the source.

    ``permanent=True`` (bad credentials, a revoked grant) marks the Source as needing attention
    and stops retrying; a transient one (network, 5xx, 429) is retried with backoff, at
    ``retry_at`` when the source said when.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        status: str | None = None,
        retry_at: dt.datetime | None = None,
        code: int | str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status = status or ("needs_attention" if permanent else "error")
        self.retry_at = retry_at
        self.code = code  # the source's own error code (Twilio's 21610), when it gave one


class BadItem(Exception):
    """An item that cannot be normalized. It becomes an ImportFailure; the batch goes on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ConfigError(ValueError):
    """A Source's config or secrets are missing or malformed."""


@dataclass(frozen=True, slots=True)
class RawItem:
    """One item as the source gave it.

    ``payload`` must be JSON-able: it is stored with the activity so that a parser change can
    be re-applied later without contacting the source (``mesh_reprocess``).
    """

    external_id: str
    payload: Any
    received_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    items: list[RawItem]
    cursor: dict | None
    # A connector that notices it is missing data (a hole in a UID range, a page that failed)
    # says so here; the Source shows as unhealthy until a later batch reports gap=None.
    gap: str | None = None


@dataclass(slots=True)
class ParticipantDraft:
    role: str  # from/to/cc/bcc/author/mention
    kind: str  # email/phone/x/... (identity kind)
    value: str  # the address as seen; Mesh normalizes it
    display: str = ""
    avatar: str = ""  # a profile picture's https URL, where the source has one (X)


@dataclass(slots=True)
class ActivityDraft:
    channel: str
    verb: str
    occurred_at: dt.datetime
    dedup_key: str
    direction: str | None = None  # None: inferred from the participants (self → out)
    subject: str = ""
    text: str = ""
    html: str = ""
    url: str = ""
    thread_key: str = ""
    participants: list[ParticipantDraft] = field(default_factory=list)
    device: str | None = None  # Mesh device id, for device events
    visibility: str = "private"
    attachments: list[dict] = field(default_factory=list)
    automated: bool = False
    # Anything else the source says, as JSON (stored and shown as it is). Keys Mesh itself reads:
    #   all:    "thread" (groups the item into a thread when thread_key is empty);
    #   device: "type" (the event type shown as its title), "lat"/"lon" (a map link), and the
    #           device's state kept from its newest events: "battery", "charging", "accuracy",
    #           "place", "presence", "network" (streams.ingest.STATE_KEYS);
    #   email:  "snippet" (the line under the subject), "remote_images_blocked",
    #           "tracking_pixels" (counts shown as a warning);
    #   sms:    "delivery" ({"state", "error_code", "updated_at"}: written by delivery updates
    #           (streams.delivery), kept on reprocess).
    # Mesh adds "invalid_participants" (participants it could not normalize).
    extra: dict = field(default_factory=dict)

    def validate(self, *, now: dt.datetime | None = None) -> None:
        """Raise BadItem when the draft breaks the contract (connector bugs and hostile input
        surface here, as a failure of this item alone).

        Times: an item dated more than ``MAX_CLOCK_SKEW`` after ``now`` (the time of ingest)
        is refused, whatever the connector. A connector that knows when the item really
        arrived uses that instead of an absurd source date before it gets here (the email
        normalizer takes the server's arrival time over a Date header from 2100, and says so
        in ``extra["date_source"]``); with nothing better, the item fails here with its date
        in the reason. Old times are not refused here: they harm no timeline but their own,
        and the sources that cannot predate a year (device events, mail) refuse them where
        they are parsed.

        Ingest validates only drafts not stored yet; a duplicate needs its key alone
        (``clean_key``).
        """
        for name in TEXT_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise BadItem(f"{name} must be a string, not {type(getattr(self, name)).__name__}")
        if self.channel not in CHANNELS and not (self.channel.isidentifier() and len(self.channel) <= MAX_CHANNEL):
            raise BadItem(f"unknown channel {self.channel[:40]!r}")
        if not self.verb or len(self.verb) > MAX_VERB:
            raise BadItem(f"verb must be 1 to {MAX_VERB} characters")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise BadItem(f"unknown direction {str(self.direction)[:40]!r}")
        if self.visibility not in VISIBILITIES:
            raise BadItem(f"unknown visibility {str(self.visibility)[:40]!r}")
        if not self.dedup_key or len(self.dedup_key) > 255:
            raise BadItem("dedup_key must be 1 to 255 characters")
        self._validate_time(now or dt.datetime.now(dt.UTC))
        if not isinstance(self.participants, list):
            raise BadItem("participants must be a list")
        for p in self.participants:
            if not isinstance(p, ParticipantDraft):
                raise BadItem(f"participants must be ParticipantDrafts, not {type(p).__name__}")
            if p.role not in ROLES:
                raise BadItem(f"unknown participant role {str(p.role)[:40]!r}")
            if not (isinstance(p.kind, str) and isinstance(p.value, str) and isinstance(p.display, str)):
                raise BadItem("participant kind, value and display must be strings")
        if self.device is not None and not isinstance(self.device, str | int):
            raise BadItem(f"device must be a device id, not {type(self.device).__name__}")
        if not isinstance(self.attachments, list) or (
            self.attachments and not all(isinstance(a, dict) for a in self.attachments)
        ):
            raise BadItem("attachments must be a list of objects")
        if not isinstance(self.extra, dict):
            raise BadItem(f"extra must be an object, not {type(self.extra).__name__}")
        self.check_bounds()

    def check_bounds(self) -> None:
        """Raise BadItem when ``extra`` or ``attachments`` nest too deep or are too large."""
        _check_json_bounds("extra", self.extra)
        _check_json_bounds("attachments", self.attachments)

    def clean_key(self) -> None:
        """Check and clean the dedup key alone (see ``validate``, ``clean``): what a duplicate
        needs before it is recognized as one."""
        if not isinstance(self.dedup_key, str) or not self.dedup_key or len(self.dedup_key) > 255:
            raise BadItem("dedup_key must be 1 to 255 characters")
        if needs_cleaning(self.dedup_key):
            self.dedup_key = clean_text(self.dedup_key)
        if not self.dedup_key:
            raise BadItem("dedup_key is empty once control characters are removed")

    def _validate_time(self, now: dt.datetime) -> None:
        when = self.occurred_at
        if not isinstance(when, dt.datetime) or when.tzinfo is None or when.utcoffset() is None:
            raise BadItem("occurred_at must be an aware datetime")
        if when.year in (dt.MINYEAR, dt.MAXYEAR):  # year 1 at +05:00 is no instant in UTC
            try:
                when.astimezone(dt.UTC)
            except OverflowError:
                raise BadItem(f"occurred_at {when.isoformat()} is out of range") from None
        if when > now + MAX_CLOCK_SKEW:
            raise BadItem(f"occurred_at {when.isoformat()} is more than {_skew_words()} in the future")

    def clean(self) -> None:
        """Make every string of the draft storable, in place: NUL and other control characters
        removed, lone surrogates replaced (``connectors.text``). PostgreSQL refuses NUL in
        text and jsonb and no encoder takes a lone surrogate, so one such character would
        otherwise abort the whole batch, again on every re-run. Ingest calls it right after
        ``validate``; a clean draft costs one scan over all its strings at once and one
        orjson encoding each of ``extra`` and ``attachments``."""
        strings = [self.channel, self.verb, self.dedup_key, self.subject, self.text, self.html, self.url,
                   self.thread_key]
        for p in self.participants:
            strings += (p.role, p.kind, p.value, p.display)
        if isinstance(self.device, str):
            strings.append(self.device)
        if needs_cleaning("".join(strings)):  # one search for the whole draft: the usual answer is no
            for name in TEXT_FIELDS:
                setattr(self, name, clean_text(getattr(self, name)))
            for p in self.participants:
                p.role, p.kind, p.value, p.display = map(clean_text, (p.role, p.kind, p.value, p.display))
            if isinstance(self.device, str):
                self.device = clean_text(self.device)
        if self.attachments:
            self.attachments = clean_json(self.attachments)
        if self.extra:
            self.extra = clean_json(self.extra)
        if not self.dedup_key:
            raise BadItem("dedup_key is empty once control characters are removed")

    def as_dict(self) -> dict:
        """The whole draft as plain data: what conformance tests compare."""
        data = dataclasses.asdict(self)
        data["occurred_at"] = self.occurred_at.astimezone(dt.UTC).isoformat()
        return data


def _skew_words() -> str:
    hours = int(MAX_CLOCK_SKEW.total_seconds() // 3600)
    return "1 day" if hours == 24 else f"{hours} hours"


def _check_json_bounds(name: str, value: dict | list) -> None:
    """Refuse JSON that would cost every page showing it: deeper than ``MAX_JSON_DEPTH`` or
    larger than ``MAX_EXTRA_BYTES`` serialized."""
    if not value:
        return
    try:
        encoded = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # a lone surrogate (cleaned later), an integer beyond 64 bits, a stray type
        encoded = None
    if json_deeper_than(value, MAX_JSON_DEPTH, encoded=encoded):
        raise BadItem(f"{name} is nested deeper than {MAX_JSON_DEPTH} levels")
    if encoded is None:
        try:
            encoded = json.dumps(value, default=repr).encode()
        except (TypeError, ValueError) as exc:
            raise BadItem(f"{name} is not JSON: {exc}") from None
    if len(encoded) > MAX_EXTRA_BYTES:
        raise BadItem(f"{name} is {len(encoded) // 1024} KB serialized, more than {MAX_EXTRA_BYTES // 1024} KB")


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment's content, as its connector reads it back (``Connector.attachment``).
    ``content_type`` is what the source declared: Mesh trusts it for nothing but the download."""

    filename: str
    content_type: str
    data: bytes


class Connector:
    """Base class for connectors. Subclass it and register it under ``mesh.connectors``."""

    key: ClassVar[str] = ""
    label: ClassVar[str] = ""
    channel: ClassVar[str] = ""
    # Frozen dataclass describing the Source's config; built from Source.config by from_config.
    Config: ClassVar[type | None] = None
    # Names of secrets the connector needs (shown by `mesh_source add --help` and checked).
    required_secrets: ClassVar[tuple[str, ...]] = ()
    # Whether `mesh_import CONNECTOR PATH` works for this connector (it reads config["path"]).
    importable: ClassVar[bool] = False
    # Whether the connector can be polled (dispatch_due_sources only schedules those).
    pollable: ClassVar[bool] = False
    # Webhooks: the dotted path of a URLconf module, which the site mounts at ``url_mount``
    # (default ``hooks/<key>/``). Its views check the request, find their Source with
    # ``streams.services.webhook_source`` and hand what they receive to
    # ``streams.services.inbound_store``; ingest runs after commit.
    urls: ClassVar[str | None] = None
    url_mount: ClassVar[str] = ""
    # Sending (see ``send``): the identity kind a message goes to, e.g. "phone".
    send_to_kind: ClassVar[str] = ""
    # The InboundItem scope its delivery reports are kept under, per source (default
    # ``<key>-status``; see ``streams.services.delivery_report_receive``).
    delivery_scope: ClassVar[str] = ""
    # MQTT (``mesh_mqtt``): the topic filters its messages come on. The levels up to a filter's
    # last ``+`` are a device's base topic, which ``Device.mqtt_topic`` maps to the device.
    mqtt_topics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: dict | None = None, secrets: dict | None = None, *, context: dict | None = None):
        self.raw_config = dict(config or {})
        self.secrets = dict(secrets or {})
        # Facts Mesh knows that a pure normalizer may need: the workspace's self identities,
        # its default phone region, the device id of an import.
        self.context = dict(context or {})
        self.config = self.parse_config(self.raw_config)
        missing = [s for s in self.required_secrets if not self.secrets.get(s)]
        if missing:
            raise ConfigError(f"missing secret(s): {', '.join(missing)}")

    @classmethod
    def parse_config(cls, raw: dict) -> Any:
        if cls.Config is None:
            return raw
        names = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = set(raw) - names
        if unknown:
            raise ConfigError(f"unknown config key(s) for {cls.key}: {', '.join(sorted(unknown))}")
        try:
            return cls.Config(**config_values(cls.Config, raw))
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from exc

    def fetch(self, cursor: dict | None, *, since: dt.datetime | None = None) -> Iterator[Batch]:
        """Yield batches after ``cursor``; ``since`` asks for a backfill from that date."""
        raise NotImplementedError

    def normalize(self, raw: RawItem) -> ActivityDraft:
        raise NotImplementedError

    @classmethod
    def mount(cls) -> str:
        """Where the site mounts ``urls``."""
        return cls.url_mount or f"hooks/{cls.key}/"

    @classmethod
    def can_send(cls) -> bool:
        return cls.send is not Connector.send

    @classmethod
    def recipient(cls, values: list[str]) -> str | None:
        """Which of a contact's identities of ``send_to_kind`` (most recently used first) to
        send to, or None when none will do."""
        return values[0] if values else None

    def send(self, *, to: str, body: str, sender: str | None = None) -> RawItem:
        """Send ``body`` to ``to`` (from ``sender``, one of the source's own addresses, else its
        first) and return the sent message as the RawItem to store, the same shape ``fetch``
        yields for it, so that ``normalize`` makes it the outbound activity and a later sync
        finds it a duplicate. Raises ConnectorError with a plain message; one whose ``status`` is
        "auth_failed" marks the Source, any other is the failure of this message alone.
        Optional: connectors that cannot send leave it (``can_send()`` is False)."""
        raise NotImplementedError

    @classmethod
    def render_original(cls, payload: Any) -> str:
        """The original HTML of a stored item (``Activity.raw``), remote images included, for
        the user who asks to see them; "" when there is none. Mesh sanitizes it before it
        shows it (``connectors.html``)."""
        return ""

    @classmethod
    def attachment(cls, payload: Any, index: int, *, secrets: dict | None = None) -> Attachment:
        """The content of attachment ``index`` (its place in the draft's ``attachments``, from 0)
        of a stored item (``Activity.raw``), read back from the item or, when the item holds only
        a link (an MMS's media), fetched from the source through ``connectors.http`` with its
        ``secrets`` (None when the source was removed). Raises IndexError for an attachment the
        item does not have, BadItem when the stored item cannot be read back, ConnectorError when
        the source fails. Optional: connectors that cannot leave it (``can_serve_attachments()``)."""
        raise NotImplementedError

    @classmethod
    def can_serve_attachments(cls) -> bool:
        return cls.attachment.__func__ is not Connector.attachment.__func__

    def mqtt_message(self, topic: str, payload: bytes,
                     received_at: dt.datetime | None = None) -> RawItem | list[RawItem] | None:
        """One MQTT message on one of ``mqtt_topics`` as the raw item(s) to store for the device
        its topic maps to, the same items the connector's HTTP door stores for it (so a resend
        through either door is a duplicate); None when there is nothing to store. The connector
        is built with that device in its context (``self.context["device_id"]``); a classmethod
        that needs no device serves too. Raises ValueError for a payload it cannot read:
        ``mesh_mqtt`` then stores a skip record ``{"_error": reason, "_topic", "_text"}``, which
        ``normalize`` refuses with ``BadItem(payload["_error"])``."""
        raise NotImplementedError

    @classmethod
    def mqtt_device_topic(cls, topic: str) -> str | None:
        """The device's base topic in ``topic``: its levels up to the last ``+`` of the filter
        of ``mqtt_topics`` it matches; None when it matches none."""
        levels = topic.split("/")
        for pattern in cls.mqtt_topics:
            parts = pattern.split("/")
            if len(parts) == len(levels) and all(p in ("+", level) for p, level in zip(parts, levels, strict=True)):
                plus = [i for i, p in enumerate(parts) if p == "+"]
                return "/".join(levels[: plus[-1] + 1]) if plus else topic
        return None

    @classmethod
    def mqtt_will(cls, item: RawItem) -> bool:
        """Whether ``item`` (from ``mqtt_message``) is the device's last will, the broker's word
        that it dropped off: ``mesh_mqtt`` marks the device offline from its arrival until it
        is heard from again. The default: never."""
        return False

    def self_identities(self) -> list[tuple[str, str, str]]:
        """The owner's own identities this source knows, as (kind, value, display): an account's
        user id, a mailbox's address, a phone line's number. A sync marks them as self before it
        stores any item, so what they send is "out" and they get no contact timeline. May read
        the source (raising ConnectorError like fetch); the default knows none."""
        return []


class Registry:
    """Connector classes by key, loaded from the ``mesh.connectors`` entry points."""

    def __init__(self) -> None:
        self._connectors: dict[str, type[Connector]] | None = None

    def _load(self) -> dict[str, type[Connector]]:
        found: dict[str, type[Connector]] = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in found:
                continue  # the first distribution on sys.path wins, like imports do
            try:
                cls = ep.load()
            except Exception:  # a broken plug-in must not take Mesh down
                log.exception("cannot load connector %s from %s", ep.name, ep.value)
                continue
            if not (isinstance(cls, type) and issubclass(cls, Connector)):
                log.error("entry point %s=%s is not a Connector subclass", ep.name, ep.value)
                continue
            if cls.key != ep.name:
                log.error("entry point %s names a connector whose key is %r", ep.name, cls.key)
                continue
            found[ep.name] = cls
        return found

    @property
    def connectors(self) -> dict[str, type[Connector]]:
        if self._connectors is None:
            self._connectors = self._load()
        return self._connectors

    def refresh(self) -> None:
        self._connectors = None

    def get(self, key: str) -> type[Connector]:
        try:
            return self.connectors[key]
        except KeyError:
            known = ", ".join(sorted(self.connectors)) or "none"
            raise KeyError(f"unknown connector {key!r} (installed: {known})") from None

    def keys(self) -> list[str]:
        return sorted(self.connectors)


registry = Registry()
