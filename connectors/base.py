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
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mesh.connectors"

CHANNELS = ("email", "sms", "twitter", "device")
DIRECTIONS = ("in", "out", "none")
VISIBILITIES = ("private", "public")
ROLES = ("from", "to", "cc", "bcc", "author", "mention", "subject", "sender", "reply_to")


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
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status = status or ("needs_attention" if permanent else "error")
        self.retry_at = retry_at


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
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise BadItem when the draft breaks the contract (connector bugs surface here)."""
        if self.channel not in CHANNELS and not self.channel.isidentifier():
            raise BadItem(f"unknown channel {self.channel!r}")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise BadItem(f"unknown direction {self.direction!r}")
        if self.visibility not in VISIBILITIES:
            raise BadItem(f"unknown visibility {self.visibility!r}")
        if not self.dedup_key or len(self.dedup_key) > 255:
            raise BadItem("dedup_key must be 1 to 255 characters")
        if not isinstance(self.occurred_at, dt.datetime) or self.occurred_at.tzinfo is None:
            raise BadItem("occurred_at must be an aware datetime")
        for p in self.participants:
            if p.role not in ROLES:
                raise BadItem(f"unknown participant role {p.role!r}")

    def as_dict(self) -> dict:
        """The whole draft as plain data: what conformance tests compare."""
        data = dataclasses.asdict(self)
        data["occurred_at"] = self.occurred_at.astimezone(dt.UTC).isoformat()
        return data


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
            return cls.Config(**raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from exc

    def fetch(self, cursor: dict | None, *, since: dt.datetime | None = None) -> Iterator[Batch]:
        """Yield batches after ``cursor``; ``since`` asks for a backfill from that date."""
        raise NotImplementedError

    def normalize(self, raw: RawItem) -> ActivityDraft:
        raise NotImplementedError

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
