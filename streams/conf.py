"""Every ``MESH_*`` setting Mesh's core reads, with its default, in one place.

``conf.PUBLIC_URL`` reads ``settings.MESH_PUBLIC_URL``, or the default below when the site's
settings do not set it (a project that embeds Mesh with its own settings module). Read on each
access, not copied at import, so ``override_settings`` and the ``settings`` test fixture work.
The defaults agree with ``mesh_site/settings.py`` (a test checks it); the environment variables
that set them are documented there.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "DEFAULT_REGION": "US",
    "ENCRYPTION_KEYS": [],
    "PUBLIC_URL": "",
    "STALE_AFTER_SECONDS": 6 * 3600,
    "INGEST_MAX_BYTES": 1_000_000,
    "INGEST_MAX_EVENTS": 1000,
    "BATCH_SIZE": 500,
    "PAGE_SIZE": 50,
    "LIVE_POLL_MS": 10_000,
    "INGEST_ANALYZE": True,
    "INBOUND_COALESCE_S": 0.25,
    "INBOUND_SWEEP_SECONDS": 60,
    "FEED_CACHE": True,
    "FEED_PREPARED": None,  # None: on when connections persist (CONN_MAX_AGE), see rawdb.prepared_fetch
    "LOGIN_FAILURES_PER_USER": 5,
    "LOGIN_FAILURES_PER_IP": 30,
    "LOGIN_LOCKOUT_SECONDS": 900,
    "DEVICE_API_RATE_PER_MINUTE": 6000,
    "DEVICE_API_RATE_BAD_TOKENS_PER_MINUTE": 300,
    "DEVICE_OFFLINE_AFTER_SECONDS": 900,  # silence after which a device is offline
    "MQTT_URL": "mqtt://127.0.0.1:1883",  # mesh_mqtt's broker
    "MQTT_USERNAME": "",
    "MQTT_PASSWORD": "",
    "MQTT_CLIENT_ID": "mesh",  # fixed: the broker keeps the persistent session under it
    "FEED_RATE_PER_MINUTE": 12000,
    "TRUSTED_PROXIES": 0,
    "SYNC_HORIZON_DAYS": 90,  # sync change log rows older than this are pruned; older tokens get 410
    "LIFESTREAM_PLACE_PRECISION": 2,
}


class _Conf:
    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"no setting MESH_{name} (streams.conf.DEFAULTS lists them)")
        return getattr(settings, f"MESH_{name}", DEFAULTS[name])


conf = _Conf()
