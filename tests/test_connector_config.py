"""Connector config values are coerced once, from the Config dataclass's field types: what
``mesh_source add --config key=value`` gives is text."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from connectors.base import ConfigError, Connector
from connectors.imap.connector import ImapConnector


@dataclass(frozen=True)
class PlainConfig:
    retries: int = 3
    verbose: bool = False
    ratio: float = 0.5
    tags: tuple[str, ...] = field(default_factory=tuple)
    limit: int | None = None
    name: str = ""


class PlainConnector(Connector):
    """A third-party connector whose Config only declares types: it coerces nothing itself."""

    key = "plain_config"
    Config = PlainConfig


def test_text_values_become_the_types_the_config_fields_declare():
    config = PlainConnector.parse_config(
        {"retries": "5", "verbose": "yes", "ratio": "0.25", "tags": "a, b,,c", "limit": "7", "name": 42}
    )
    assert config == PlainConfig(retries=5, verbose=True, ratio=0.25, tags=("a", "b", "c"), limit=7, name="42")


@pytest.mark.parametrize(("text", "value"), [("off", False), ("0", False), ("false", False), ("on", True), ("1", True)])
def test_boolean_words_from_the_command_line(text, value):
    assert PlainConnector.parse_config({"verbose": text}).verbose is value


def test_json_values_already_typed_are_kept_and_an_empty_optional_is_none():
    config = PlainConnector.parse_config({"retries": 2, "verbose": True, "tags": ["x", "y"], "limit": ""})
    assert (config.retries, config.verbose, config.tags, config.limit) == (2, True, ("x", "y"), None)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"retries": "three"}, "retries: 'three' is not a whole number"),
        ({"retries": "2.5"}, "retries: '2.5' is not a whole number"),
        ({"verbose": "maybe"}, "verbose: 'maybe' is not true or false"),
        ({"ratio": "half"}, "ratio: 'half' is not a number"),
    ],
)
def test_a_value_that_does_not_convert_is_a_config_error_naming_the_field(raw, message):
    with pytest.raises(ConfigError, match=message):
        PlainConnector.parse_config(raw)


def test_imap_config_from_the_command_line_is_typed():
    config = ImapConnector.parse_config({
        "host": "imap.example.org", "username": "ana", "port": "1993", "folders": "INBOX, Sent",
        "reconcile": "off", "batch_size": "50",
    })
    assert (config.port, config.folders, config.reconcile, config.batch_size) == (1993, ("INBOX", "Sent"), False, 50)
