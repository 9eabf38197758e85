"""The "show message" document: an email's HTML, sanitized again on the way out, as a
stand-alone page for a sandboxed iframe.

Defence in depth: the email connector sanitizes HTML when it imports it, and this module
cleans it once more with its own allow-list, so a connector (ours or a third party's) that
stored something unsafe still cannot put script on the page. The page that serves the document
adds its own strict Content-Security-Policy (no script at all, a ``sandbox`` directive, images
only from ``data:`` unless the user asked for remote ones) and the iframe is sandboxed too.

Remote images are blocked by default (they are tracking pixels). The stored HTML has them
removed; when the user asks for them, the original HTML part is read back from the raw
message kept for reprocessing and sanitized keeping ``http(s)`` image sources.
"""

from __future__ import annotations

import base64
import email
import email.policy
import zlib

import nh3
from django.utils.html import escape

# The tags and attributes are the ones the email normalizer kept at import (one policy for
# both); on the way out the style properties are narrower still.
from connectors.email_common.body import ALLOWED_ATTRIBUTES, ALLOWED_TAGS

STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "text-align", "text-decoration", "line-height", "white-space", "vertical-align", "width", "max-width",
    "height", "margin", "margin-top", "margin-bottom", "margin-left", "margin-right", "padding",
    "padding-top", "padding-bottom", "padding-left", "padding-right", "border", "border-top",
    "border-bottom", "border-left", "border-right", "border-collapse", "border-color", "border-radius",
    "border-spacing", "border-style", "border-width", "direction",
}  # fmt: skip
MAX_HTML = 1_000_000
STYLE = (
    "body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2328;margin:12px;"
    "overflow-wrap:anywhere}img{max-width:100%;height:auto}table{max-width:100%}pre{white-space:pre-wrap}"
    "blockquote{border-left:3px solid #d0d7de;margin:0 0 0 4px;padding-left:10px;color:#57606a}"
)


def _keep(remote_images: bool):
    def keep(tag: str, attr: str, value: str):
        if tag == "img" and attr == "src":
            low = value.strip().lower()
            if remote_images and low.startswith(("https://", "http://")):
                return value
            return None
        if attr == "style":
            low = value.lower()
            if any(bad in low for bad in ("url(", "expression", "javascript", "@import", "behavior", "position")):
                return None
        return value

    return keep


def sanitize(html: str, *, remote_images: bool = False) -> str:
    return nh3.clean(
        html[:MAX_HTML], tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, attribute_filter=_keep(remote_images),
        clean_content_tags={"script", "style", "head", "title", "noscript", "template"},
        url_schemes={"http", "https", "mailto", "tel"}, filter_style_properties=STYLE_PROPERTIES,
        link_rel="noopener noreferrer nofollow",
    )


def original_html(raw) -> str:
    """The HTML part of the raw message kept on the activity (``rfc822_zb64`` or
    ``rfc822_b64``), or "" when there is none or it cannot be read."""
    if not isinstance(raw, dict):
        return ""
    try:
        if "rfc822_zb64" in raw:
            data = zlib.decompress(base64.b64decode(raw["rfc822_zb64"]))
        elif "rfc822_b64" in raw:
            data = base64.b64decode(raw["rfc822_b64"])
        else:
            return ""
        msg = email.message_from_bytes(data, policy=email.policy.default)
        part = msg.get_body(preferencelist=("html",))
        if part is None:
            return ""
        return str(part.get_content())[:MAX_HTML]
    except Exception:  # a raw message we cannot read is "no original": the stored HTML is shown
        return ""


def message_document(*, subject: str, html: str, text: str, raw=None, remote_images: bool = False) -> str:
    """A complete HTML document for the iframe."""
    body = ""
    if remote_images:
        source = original_html(raw)
        if source:
            body = sanitize(source, remote_images=True)
    if not body and html.strip():
        body = sanitize(html)
    if not body:
        body = f"<pre>{escape(text)}</pre>"
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer"><base target="_blank">'
        f"<title>{escape(subject)}</title><style>{STYLE}</style></head><body>{body}</body></html>"
    )


def message_csp(*, remote_images: bool) -> str:
    images = "data: https: http:" if remote_images else "data:"
    return (
        f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; font-src 'none'; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; "
        "sandbox allow-popups allow-popups-to-escape-sandbox"
    )
