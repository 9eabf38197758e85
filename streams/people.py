"""People as pages show them: an identity as people read it (``@handle`` for X, a phone number
formatted for the reader's region, the plain address for email) and a contact's initials
avatar in a stable colour. One presenter for every page (contact page and list, participants,
search, merge pages), so an identity never reads two ways.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import phonenumbers

from .conf import conf

KIND_LABELS = {"email": "Email", "phone": "Phone", "x": "X"}

# White text on each of these has a contrast ratio of at least 4.5:1 (WCAG AA), checked by
# tests/test_people_display.py; ``av-<n>`` in mesh.css holds the same colours.
# Profile pictures are shown from here only: the CSP's img-src names this origin and no other
# (mesh_site/settings.py), so a page never asks a host a source chose (docs/design.md).
AVATAR_ORIGIN = "https://pbs.twimg.com/"
AVATAR_COLOURS = ("#1f5f99", "#7a3e9d", "#a3322f", "#2e6b30", "#8a4b08", "#0f6a6a", "#4f559a", "#9c2d6b")


@dataclass(frozen=True, slots=True)
class ShownIdentity:
    kind: str
    kind_label: str  # "Phone", "Email", "X": what the icon's text alternative says
    text: str  # as people read it
    stored: str  # kind:value, for a tooltip and copy-paste into a command


@functools.lru_cache(maxsize=65536)
def phone_text(value: str, region: str) -> str:
    """A stored number (E.164) in the national format when it belongs to ``region``, the
    international one otherwise; short codes and sender names as stored."""
    if not value.startswith("+"):
        return value
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return value
    if not phonenumbers.is_possible_number(number):
        return value
    home = phonenumbers.region_code_for_number(number) == region.upper()
    style = phonenumbers.PhoneNumberFormat.NATIONAL if home else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    return phonenumbers.format_number(number, style)


def identity_text(kind: str, value: str, display: str = "", region: str = "") -> str:
    """How people read an identity: ``@handle`` for X (its value is a numeric account id, the
    handle its display), a formatted phone number, an email address as stored."""
    if kind == "x":
        if display.startswith("@"):
            return display
        return f"X account {value}"
    if kind == "phone":
        return phone_text(value, region or conf.DEFAULT_REGION)
    return value


def shown_identity(identity, region: str = "") -> ShownIdentity:
    """``identity``: anything with ``kind``, ``value`` and ``display`` (an Identity row, a
    selectors.Person)."""
    kind, value, display = identity.kind, identity.value, identity.display or ""
    return ShownIdentity(kind=kind, kind_label=KIND_LABELS.get(kind, kind.capitalize()),
                         text=identity_text(kind, value, display, region), stored=f"{kind}:{value}")


def initials(name: str) -> str:
    """Up to two letters from the first and last words of a name ("Chloé Martin" → "CM");
    "#" for a name without letters (a bare phone number)."""
    words = [w for w in name.replace("@", " ").replace(".", " ").split() if any(ch.isalpha() for ch in w)]
    if not words:
        return "#"
    first = next(ch for ch in words[0] if ch.isalpha())
    if len(words) == 1:
        return first.upper()
    last = next(ch for ch in words[-1] if ch.isalpha())
    return (first + last).upper()


def avatar_image(identities) -> str:
    """The first profile picture among a contact's identities that pages may show (https, from
    AVATAR_ORIGIN), or "" for the initials."""
    for ident in identities or ():
        url = getattr(ident, "avatar_url", "") or ""
        if url.startswith(AVATAR_ORIGIN) and not any(ch.isspace() or ch in "\"'<>\\" for ch in url):
            return url
    return ""


def avatar_colour(contact_id: int | None) -> int:
    """A colour index that stays the contact's for good (a hash of its id, not its name,
    which changes)."""
    if contact_id is None:
        return 0
    return zlib.crc32(str(contact_id).encode()) % len(AVATAR_COLOURS)
