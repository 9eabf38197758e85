"""HTML from sources, made safe: the one allow-list, used where HTML enters Mesh (the email
connector's import), where a page shows it (the message iframe) and where feeds carry it.

Three passes, each narrower than the last, all through nh3 (ammonia) with the lists below:

- ``sanitize_import``: what is stored. Remote images go (tracking pixels); inline ``cid:``
  images the caller vouches for stay; inline CSS that cannot load a URL or move content stays.
- ``sanitize_page``: what the iframe shows, cleaned again on the way out (defence in depth: a
  connector, ours or a third party's, that stored something unsafe still cannot put script on
  the page). Fewer style properties, no ``position``; remote images only when the user asked.
- ``sanitize_feed``: what a feed reader gets. No images at all and no inline style: a reader
  renders it in its own page.

This module sits beside ``connectors.base`` rather than in ``streams`` because connectors use
it and may not import the core.
"""

from __future__ import annotations

from collections.abc import Callable

import nh3

MAX_HTML = 1_000_000

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "cite", "code", "col", "colgroup", "dd",
    "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol",
    "p", "pre", "q", "s", "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
ATTRIBUTES = {
    "*": {"title", "align", "dir", "lang", "style"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "valign", "width"},
    "th": {"colspan", "rowspan", "valign", "width"},
    "table": {"width", "cellpadding", "cellspacing", "border"},
    "font": {"color", "face", "size"},
    "col": {"span", "width"},
    "ol": {"start", "type"},
}
# Inline CSS properties shown on the page (nothing that can load a URL or move content over it).
PAGE_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "text-align", "text-decoration", "line-height", "white-space", "vertical-align", "width", "max-width",
    "height", "margin", "margin-top", "margin-bottom", "margin-left", "margin-right", "padding",
    "padding-top", "padding-bottom", "padding-left", "padding-right", "border", "border-top",
    "border-bottom", "border-left", "border-right", "border-collapse", "border-color", "border-radius",
    "border-spacing", "border-style", "border-width", "direction",
}  # fmt: skip
# Kept at import: a little more than the page shows, so that a narrower page policy later can
# still choose from what was stored.
IMPORT_STYLE_PROPERTIES = PAGE_STYLE_PROPERTIES | {
    "text-transform", "letter-spacing", "min-width", "max-height", "display",
}  # fmt: skip
# Inline style values dropped whole: each can load a URL or run code in some engine.
UNSAFE_STYLE_WORDS = ("url(", "expression", "javascript", "@import", "behavior")
# Feeds: the nh3 defaults without images (remote images in mail are tracking pixels).
FEED_TAGS = set(nh3.ALLOWED_TAGS) - {"img", "map", "area"}
DROPPED_WITH_CONTENT = {"script", "style", "head", "title", "noscript", "template"}
LINK_REL = "noopener noreferrer nofollow"


def _attribute_filter(image_src: Callable[[str], bool], unsafe_style: tuple[str, ...]):
    def keep(tag: str, attr: str, value: str):
        if tag == "img" and attr == "src":
            return value if image_src(value) else None
        if attr == "style" and any(bad in value.lower() for bad in unsafe_style):
            return None
        return value

    return keep


def sanitize_import(html: str, *, image_src: Callable[[str], bool]) -> str:
    """Stored HTML: ``image_src(src)`` says which ``<img src>`` to keep (the email connector
    keeps the ``cid:`` images of its own attachments)."""
    return nh3.clean(
        html, tags=TAGS, attributes=ATTRIBUTES, attribute_filter=_attribute_filter(image_src, UNSAFE_STYLE_WORDS),
        clean_content_tags=DROPPED_WITH_CONTENT, url_schemes={"http", "https", "mailto", "tel", "cid"},
        filter_style_properties=IMPORT_STYLE_PROPERTIES, link_rel=LINK_REL,
    )


def _remote(value: str) -> bool:
    return value.strip().lower().startswith(("https://", "http://"))


def _no_image(value: str) -> bool:
    return False


def sanitize_page(html: str, *, remote_images: bool = False) -> str:
    """HTML for the message iframe; remote images only when the user asked for them."""
    return nh3.clean(
        html[:MAX_HTML], tags=TAGS, attributes=ATTRIBUTES,
        attribute_filter=_attribute_filter(_remote if remote_images else _no_image, (*UNSAFE_STYLE_WORDS, "position")),
        clean_content_tags=DROPPED_WITH_CONTENT, url_schemes={"http", "https", "mailto", "tel"},
        filter_style_properties=PAGE_STYLE_PROPERTIES, link_rel=LINK_REL,
    )


def sanitize_feed(html: str) -> str:
    """HTML for a feed entry's content."""
    return nh3.clean(
        html, tags=FEED_TAGS, clean_content_tags={"script", "style"}, url_schemes={"http", "https", "mailto"},
        link_rel=LINK_REL,
    )
