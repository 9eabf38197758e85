"""Icons, avatars and identities for the pages: inline SVG icons with a text alternative (no
emoji, which show as empty boxes where no emoji font is installed, and no icon font to load),
initials avatars, and identities as people read them (streams.people)."""

from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from ..people import avatar_colour, avatar_image, initials, shown_identity

register = template.Library()

# 24×24 outlines drawn with the text colour. Our own constants: nothing from a source goes in.
ICON_PATHS = {
    "email": '<rect x="3" y="5" width="18" height="14" rx="2"/><path d="m3 7 9 6 9-6"/>',
    "sms": '<path d="M21 12a8 8 0 0 1-11.6 7.2L4 21l1.8-5.2A8 8 0 1 1 21 12z"/>',
    "twitter": '<path d="M5 4l14 16M19 4 5 20"/>',
    "device": '<rect x="7" y="2" width="10" height="20" rx="2"/><path d="M11 18h2"/>',
    "call": '<path d="M5 4h4l2 5-2.5 1.5a11 11 0 0 0 5 5L15 13l5 2v4a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2z"/>',
    "missed": '<path d="M5 4h4l2 5-2.5 1.5a11 11 0 0 0 5 5L15 13l5 2v4a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2z"/>'
              '<path d="m16 3 5 5m0-5-5 5"/>',
    "battery": '<rect x="2" y="7" width="17" height="10" rx="2"/><path d="M22 11v2M6 10v4"/>',
    "location": '<path d="M12 21s-7-6.4-7-12a7 7 0 0 1 14 0c0 5.6-7 12-7 12z"/><circle cx="12" cy="9" r="2.5"/>',
    "meeting": '<rect x="3" y="5" width="18" height="16" rx="2"/><path d="M3 10h18M8 3v4M16 3v4"/>',
    "event": '<circle cx="12" cy="12" r="4"/>',
    "attachment": '<path d="m21 11.5-8.5 8.5a5 5 0 0 1-7-7L14 4.5a3.5 3.5 0 0 1 5 5L10.5 18a2 2 0 0 1-3-3L15 7.5"/>',
    "in": '<path d="M17 7 7 17M7 9v8h8"/>',
    "out": '<path d="M7 17 17 7M9 7h8v8"/>',
    "warning": '<path d="M12 3 2 20h20z"/><path d="M12 10v4m0 3v.5"/>',
}
ICON_FOR_KIND = {"email": "email", "phone": "call", "x": "twitter"}


@register.simple_tag
def icon(name: str, label: str = "") -> SafeString:
    """An inline SVG icon; with ``label`` it is an image named ``label`` (``<title>`` and
    aria-label), without one it is decoration that assistive technology skips."""
    paths = ICON_PATHS.get(name, ICON_PATHS["event"])
    if label:
        return format_html(
            '<svg class="icon icon-{}" viewBox="0 0 24 24" role="img" aria-label="{}"><title>{}</title>{}</svg>',
            name, label, label, mark_safe(paths),  # paths: constants above
        )
    return format_html('<svg class="icon icon-{}" viewBox="0 0 24 24" aria-hidden="true" focusable="false">{}</svg>',
                       name, mark_safe(paths))


@register.simple_tag
def avatar(contact_id, name, identities=None) -> SafeString:
    """The contact's X profile picture when one of ``identities`` has one, else initials in the
    contact's colour (decorative: the name is always written beside it). The picture loads
    lazily, sends no Referer (X learns no Mesh URL), and sits on the colour while it loads;
    one that fails shows the initials (mesh.css, ``data-initials``)."""
    url, letters = avatar_image(identities), initials(str(name or ""))
    if url:
        return format_html('<img class="avatar av-{}" src="{}" alt="Profile picture of {}" data-initials="{}" '
                           'width="48" height="48" loading="lazy" decoding="async" referrerpolicy="no-referrer">',
                           avatar_colour(contact_id), url, str(name or ""), letters)
    return format_html('<span class="avatar av-{}" aria-hidden="true">{}</span>', avatar_colour(contact_id), letters)


@register.simple_tag
def identity(ident, region: str = "") -> SafeString:
    """An identity as people read it, with its kind as an icon named for screen readers and
    the stored form (``phone:+1415…``) as a tooltip."""
    shown = shown_identity(ident, region)
    return format_html('<span class="ident ident-{}" title="{}">{}<bdi>{}</bdi></span>',
                       shown.kind, shown.stored, icon(ICON_FOR_KIND.get(shown.kind, "event"), shown.kind_label),
                       shown.text)
