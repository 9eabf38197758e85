"""What the test modules share besides data builders (tests/factories.py): stand-ins for the world
outside Mesh, each at one seam, and the ways the outside uses Mesh. Test modules import these;
they never import one another (tests/test_architecture.py checks it).

- ``twilio``: Twilio's REST API as a ``requests`` adapter at ``connectors.http.session``, and
  webhook requests signed as Twilio signs them.
- ``x_api``: a local X API v2 server; ``x_archive``: X archives built from the fixtures, imported
  with ``mesh_import``.
- ``dovecot``: a real, throw-away Dovecot IMAP server on loopback.
- ``mosquitto``: the machine's MQTT broker, a throw-away Mosquitto to restart, and a device's
  QoS 1 publisher.
- ``browser``: headless Chromium (Debian's package) launched through Playwright.
- ``a11y``: a page checked as an accessibility audit would (axe-core, sideways scrolling, the
  keyboard's path), and the demo data with a login for those tests.
- ``ticker``: a polled connector that needs no network, registered by the ``ticker`` fixture.
- ``cli``: management commands run in-process, with their exit status and output.
- ``readers``: a page's text and activities, a feed by its token in each format.
- ``subprocesses``: Mesh in other processes (worker, gunicorn) on the test database.
- ``sync_http``: the sync client's HTTP through Django's test client, and a replica pulled with it.
"""
