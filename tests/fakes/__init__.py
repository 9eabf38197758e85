"""Stand-ins for the world outside Mesh, shared by the test modules (which never import one
another): each fakes one seam and nothing inside Mesh.

- ``twilio``: Twilio's REST API as a ``requests`` adapter at ``connectors.http.session``, and
  webhook requests signed the way Twilio signs them.
- ``dovecot``: a real, throw-away Dovecot IMAP server on loopback.
- ``browser``: headless Chromium (Debian's package) launched through Playwright.

Builders of Mesh's own data (workspaces, devices, events, activities) are in tests/factories.py.
"""
