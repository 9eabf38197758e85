"""A polled service that is always up (the ``ticker`` connector): a source to sync, edit, break and
remove without any network. The ``ticker`` fixture (tests/conftest.py) registers it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from connectors.base import ActivityDraft, Batch, Connector, ParticipantDraft, RawItem, registry


@dataclass(frozen=True)
class TickerConfig:
    count: int = 3

    def __post_init__(self):
        object.__setattr__(self, "count", int(self.count))
        if self.count < 0:
            raise ValueError("count must be 0 or more")


class TickerConnector(Connector):
    """A polled service that is always up: it has ``count`` posts."""

    key = "ticker"
    channel = "note"
    Config = TickerConfig
    pollable = True
    required_secrets = ("api_key",)

    def fetch(self, cursor, *, since=None):
        yield Batch([RawItem(f"t{i}", {"i": i}) for i in range(self.config.count)], {"done": True})

    def normalize(self, raw):
        return ActivityDraft(
            channel="note", verb="post", occurred_at=dt.datetime(2026, 5, 1, 10, raw.payload["i"], tzinfo=dt.UTC),
            dedup_key=f"ticker:{raw.external_id}", text=f"post {raw.payload['i']}",
            participants=[ParticipantDraft("from", "email", "ana@example.com", "Ana")],
        )


def install_ticker(monkeypatch) -> type[TickerConnector]:
    """Register the connector for the test's duration, as a third party's package would."""
    monkeypatch.setitem(registry.connectors, "ticker", TickerConnector)
    return TickerConnector


def ticker_source(workspace, name="Ticker", **config):
    from streams.services import source_create

    return source_create(workspace=workspace, connector="ticker", name=name, config=config,
                         secrets={"api_key": "k-123"})
