"""Server-rendered pages, one module per job: ``contacts``, ``devices``, ``sources``, ``search``
and the public ``lifestream``; ``common`` holds what several share.

Every page is scoped to the workspaces the user belongs to: anything else is a 404, never a
403 (no hint that it exists). The lifestream is the one public page, and it shows only items
marked public. Views read through selectors, write through services, and leave display values
to ``streams.presenters``; templates auto-escape everything that came from a source. Nothing
marks user content as safe, except the heat strip's SVG, which is built with ``format_html``
from numbers and dates. Email HTML is never put into a page: it is served as its own document
(sanitized again, with its own strict CSP) into a sandboxed iframe.
"""
