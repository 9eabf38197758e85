"""Config values coerced once, from the types of a connector's ``Config`` dataclass fields.

``mesh_source add --config port=993`` and the web form hand every value over as text; a
source's stored config may hold them as JSON numbers and booleans. ``Connector.parse_config``
turns each into its field's type here, so a connector's ``Config`` only validates.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


class _Unconvertible(ValueError):
    pass


def config_values(config_class: type, raw: dict) -> dict:
    """``raw`` with each value of a known field converted to the field's type (int, float, bool,
    ``tuple[str, ...]`` from a comma list; ``X | None`` keeps None). Raises ValueError naming
    the field for a value that does not convert."""
    hints = _field_types(config_class)
    values = {}
    for name, value in raw.items():
        try:
            values[name] = _coerce(hints.get(name), value)
        except (_Unconvertible, ValueError, TypeError):
            raise ValueError(f"{name}: {value!r} is not {_type_words(hints.get(name))}") from None
    return values


@functools.cache
def _field_types(config_class: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_class)
    return {f.name: hints.get(f.name) for f in dataclasses.fields(config_class)}


def _coerce(kind, value):
    if kind is None or value is None:
        return value
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value == "" and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _coerce(options[0], value) if len(options) == 1 else value
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
        raise _Unconvertible
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise _Unconvertible
        return int(value)
    if kind is float:
        return float(value)
    if kind is str:
        return value if isinstance(value, str) else str(value)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        return tuple(str(i).strip() for i in items if str(i).strip())
    return value


def _type_words(kind) -> str:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if typing.get_origin(kind) is tuple:
        return "a comma list"
    return {bool: "true or false", int: "a whole number", float: "a number"}.get(kind, "valid")


@dataclasses.dataclass(frozen=True)
class DeviceFileConfig:
    """The config of a connector that reads one device's events from a file (device JSON
    lines, OwnTracks recordings): the device, the file, and how many lines make a batch."""

    device: int | None = None
    path: str = ""
    batch_size: int = 500

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError("batch_size must be positive")
