"""The "show message" document: an email's HTML, sanitized again on the way out, as a
stand-alone page for a sandboxed iframe.

Defence in depth: the email connector sanitizes HTML when it imports it, and the page cleans it
once more (``connectors.html.sanitize_page``), so a connector (ours or a third party's) that
stored something unsafe still cannot put script on the page. The page that serves the document
adds its own strict Content-Security-Policy (no script at all, a ``sandbox`` directive, images
only from ``data:`` unless the user asked for remote ones) and the iframe is sandboxed too.

Remote images are blocked by default (they are tracking pixels). The stored HTML has them
removed; when the user asks for them, the connector that stored the item renders its original
HTML from the raw item kept for reprocessing (``Connector.render_original``), and that is
sanitized keeping ``http(s)`` image sources.
"""

from __future__ import annotations

from django.utils.html import escape

from connectors.base import registry
from connectors.html import sanitize_page

STYLE = (
    "body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2328;margin:12px;"
    "overflow-wrap:anywhere}img{max-width:100%;height:auto}table{max-width:100%}pre{white-space:pre-wrap}"
    "blockquote{border-left:3px solid #d0d7de;margin:0 0 0 4px;padding-left:10px;color:#57606a}"
)


def original_html(*, connector: str, raw) -> str:
    """The item's original HTML as its connector renders it, "" when it has none (or the
    connector is no longer installed)."""
    cls = registry.connectors.get(connector)
    return cls.render_original(raw) if cls is not None and raw is not None else ""


def message_document(
    *, subject: str, html: str, text: str, connector: str = "", raw=None, remote_images: bool = False
) -> str:
    """A complete HTML document for the iframe."""
    body = ""
    if remote_images:
        source = original_html(connector=connector, raw=raw)
        if source:
            body = sanitize_page(source, remote_images=True)
    if not body and html.strip():
        body = sanitize_page(html)
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
