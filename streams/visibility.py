"""What a reader may see, said once: an erased activity keeps its row and its timeline rows
(feeds show it as a tombstone for a while, so that mirrors delete their copy); nothing shows it.
Every read (``streams.selectors``) and every summary count (``streams.timelines``) says so
through these."""

from __future__ import annotations

from django.db.models import Q


def visible_q(prefix: str = "") -> Q:
    """The activity behind ``prefix`` (``"activity__"`` from a timeline row) is shown."""
    return Q(**{f"{prefix}erased_at": None})


def erased_q(prefix: str = "") -> Q:
    """The complement of ``visible_q``: what feeds show as tombstones."""
    return Q(**{f"{prefix}erased_at__isnull": False})


def visible_sql(alias: str) -> str:
    """``visible_q`` for a raw statement, over the activity table aliased ``alias``."""
    return f"{alias}.erased_at IS NULL"


def erased_sql(alias: str) -> str:
    """``erased_q`` for a raw statement (it matches the partial index on erased activities)."""
    return f"{alias}.erased_at IS NOT NULL"
