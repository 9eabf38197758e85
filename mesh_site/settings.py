"""Mesh settings, read from the environment.

With an empty environment Mesh runs on an embedded default: SQLite in ./var/, Celery eager, DEBUG
on. Production sets DATABASE_URL (PostgreSQL), REDIS_URL, SECRET_KEY, MESH_ENCRYPTION_KEYS and
DEBUG=0; half-configured integrations fail loudly at start-up rather than at 3 a.m.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    """Read NAME, or the contents of the file named by NAME_FILE (Docker/K8s secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name, "")
    if value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = env(name, "")
    return int(value) if value.strip() else default


VAR_DIR = Path(env("MESH_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", default=not env("SECRET_KEY"))
SECRET_KEY = env("SECRET_KEY") or "mesh-insecure-development-key-do-not-use-in-production"
if not DEBUG and SECRET_KEY.startswith("mesh-insecure"):
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = [h.strip() for h in env("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "mesh_site.apps.MeshAdminConfig",  # django.contrib.admin, for superusers only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "streams",
]

# The benchmark's peer (django-activity-stream) is installed only in the process that runs it.
if env_bool("MESH_BENCH_PEER"):
    INSTALLED_APPS.append("actstream")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "streams.timezones.TimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "streams.middleware.ServiceUnavailableMiddleware",
]

ROOT_URLCONF = "mesh_site.urls"
WSGI_APPLICATION = "mesh_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "streams.context_processors.workspaces",
                "streams.timezones.time_zone",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# DATABASE_URL=postgres://user@host:5432/name in production; a SQLite file otherwise.
DATABASE_URL = env("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'mesh.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # WAL + a busy timeout: the demo server and an import may write at the same time.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and Celery -----------------------------------------------------------------------
# No REDIS_URL: the embedded default. Tasks run eagerly in-process, locks are taken in the
# database. With REDIS_URL: Redis is the broker and holds the per-source sync locks. Redis keeps
# nothing that must survive: raw webhook bodies and cursors live in the database.
REDIS_URL = env("REDIS_URL")
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL or env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = env("MESH_CELERY_QUEUE", "mesh")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULE = {
    "dispatch-due-sources": {"task": "streams.tasks.dispatch_due_sources", "schedule": 60.0},
    "search-index": {"task": "streams.tasks.search_index", "schedule": 60.0},
    "rank-refresh": {"task": "streams.tasks.rank_refresh", "schedule": 60.0},
    "sync-prune": {"task": "streams.tasks.sync_prune", "schedule": 3600.0},
    "merge-suggestions": {"task": "streams.tasks.merge_suggestions_refresh", "schedule": 86400.0},
}
CELERY_TIMEZONE = "UTC"

# Rendered fragments (activities, heat strips) are cached: in Redis when there is one, so that
# every worker process shares them; in process memory otherwise.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": env("MESH_CACHE_PREFIX", f"mesh:{DATABASES['default'].get('NAME', '')}"),
                          "TIMEOUT": 3600}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                          "OPTIONS": {"MAX_ENTRIES": 20000}}}

# --- Mesh -----------------------------------------------------------------------------------
# Phone numbers without a country code are read in this region unless a workspace sets its own.
MESH_DEFAULT_REGION = env("MESH_DEFAULT_REGION", "US").upper()
# Fernet keys (comma list, newest first) that encrypt connector secrets at rest. Any string
# works: non-Fernet strings are stretched with SHA-256. The development default derives from
# SECRET_KEY so the demo needs no configuration; production must set it.
MESH_ENCRYPTION_KEYS = [k.strip() for k in env("MESH_ENCRYPTION_KEYS", "").split(",") if k.strip()]
if not MESH_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured("MESH_ENCRYPTION_KEYS must be set when DEBUG is off.")
    MESH_ENCRYPTION_KEYS = [SECRET_KEY]
# Public base URL (scheme://host) for links in feeds and webhooks behind a proxy or tunnel.
MESH_PUBLIC_URL = env("MESH_PUBLIC_URL").rstrip("/")
# A source is unhealthy when its last success is older than max(this, 3 × its interval).
MESH_STALE_AFTER_SECONDS = env_int("MESH_STALE_AFTER_SECONDS", 6 * 3600)
# Largest request body the device ingest API accepts, in bytes.
MESH_INGEST_MAX_BYTES = env_int("MESH_INGEST_MAX_BYTES", 1_000_000)
MESH_INGEST_MAX_EVENTS = env_int("MESH_INGEST_MAX_EVENTS", 1000)
# Items a connector hands to ingest at a time: big enough to amortize a commit, small enough
# to keep memory flat.
MESH_BATCH_SIZE = env_int("MESH_BATCH_SIZE", 500)
MESH_PAGE_SIZE = 50
# How often an open timeline page asks for newer items, in milliseconds.
MESH_LIVE_POLL_MS = env_int("MESH_LIVE_POLL_MS", 10_000)
# Pushed items (webhooks, the device API) are stored at once and ingested by a task queued for
# this many milliseconds later, so that a burst is ingested in a few large batches (0: at once).
# Ingest analyzes the hot tables itself when they changed by 10 % since their last analyze
# (streams/dbstats.py): needed where autovacuum is off or behind during a big first import.
MESH_INGEST_ANALYZE = env_bool("MESH_INGEST_ANALYZE", True)
MESH_INBOUND_COALESCE_S = env_int("MESH_INBOUND_COALESCE_MS", 250) / 1000
# Workers re-send the ingest of pushed items still pending after this long (their task was lost
# with a worker or a Redis wipe), and look for such items this often (streams.tasks).
MESH_INBOUND_SWEEP_SECONDS = env_int("MESH_INBOUND_SWEEP_SECONDS", 60)
# Feeds: cache rendered feeds in Redis (when REDIS_URL is set), and poll with one prepared
# statement when connections persist (DB_CONN_MAX_AGE > 0). Unset: automatic. Turn prepared
# statements off behind a transaction-pooling PgBouncer.
MESH_FEED_CACHE = env_bool("MESH_FEED_CACHE", True)
_prepared = env("MESH_FEED_PREPARED", "")
MESH_FEED_PREPARED = None if _prepared == "" else env_bool("MESH_FEED_PREPARED")

DATA_UPLOAD_MAX_MEMORY_SIZE = max(MESH_INGEST_MAX_BYTES, 2_621_440)

# --- Rate limits (streams/throttle.py; counted in the cache, so in Redis when there is one) ---
# This many failed log-ins for one username, or from one address, within a window lock it for
# MESH_LOGIN_LOCKOUT_SECONDS (the right password is refused too until then).
MESH_LOGIN_FAILURES_PER_USER = env_int("MESH_LOGIN_FAILURES_PER_USER", 5)
MESH_LOGIN_FAILURES_PER_IP = env_int("MESH_LOGIN_FAILURES_PER_IP", 30)
MESH_LOGIN_LOCKOUT_SECONDS = env_int("MESH_LOGIN_LOCKOUT_SECONDS", 900)
# Requests per device token per minute: 100/s, at up to MESH_INGEST_MAX_EVENTS events each,
# an order of magnitude above the 16-client device benchmark. And failed token attempts per
# address per minute, after which that address is refused before any lookup.
MESH_DEVICE_API_RATE_PER_MINUTE = env_int("MESH_DEVICE_API_RATE_PER_MINUTE", 6000)
MESH_DEVICE_API_RATE_BAD_TOKENS_PER_MINUTE = env_int("MESH_DEVICE_API_RATE_BAD_TOKENS_PER_MINUTE", 300)
# A device not heard from for this long is offline (its MQTT last will says so sooner).
MESH_DEVICE_OFFLINE_AFTER_SECONDS = env_int("MESH_DEVICE_OFFLINE_AFTER_SECONDS", 900)
# The broker mesh_mqtt subscribes on (mqtt://, or mqtts:// for TLS; user:password@ allowed),
# its credentials, and the fixed client id its persistent session is kept under.
MESH_MQTT_URL = env("MESH_MQTT_URL", "mqtt://127.0.0.1:1883")
MESH_MQTT_USERNAME = env("MESH_MQTT_USERNAME")
MESH_MQTT_PASSWORD = env("MESH_MQTT_PASSWORD")
MESH_MQTT_CLIENT_ID = env("MESH_MQTT_CLIENT_ID", "mesh")
# Requests per feed token per minute: a reader polls every few minutes, so this only stops a
# runaway client; it stays above the feed benchmark's ~5,500 timed requests on one token.
MESH_FEED_RATE_PER_MINUTE = env_int("MESH_FEED_RATE_PER_MINUTE", 12000)
# Proxies in front of gunicorn that append the client's address to X-Forwarded-For (0: the
# limits per address use REMOTE_ADDR).
MESH_TRUSTED_PROXIES = env_int("MESH_TRUSTED_PROXIES", 0)
# Days the sync change log keeps (issue 16): older rows are pruned hourly by the beat, and a
# device whose token is older than that downloads a snapshot again (410 reset_required).
MESH_SYNC_HORIZON_DAYS = env_int("MESH_SYNC_HORIZON_DAYS", 90)
# Decimal places a public place keeps on the lifestream and its feeds (2: about 1 km; 0 to 5).
# Only devices whose places are public (Device.places_public) put places there at all.
MESH_LIFESTREAM_PLACE_PRECISION = env_int("MESH_LIFESTREAM_PLACE_PRECISION", 2)

# --- Auth, i18n, static ---------------------------------------------------------------------
# ModelBackend with the log-in lock in front (streams/throttle.py).
AUTHENTICATION_BACKENDS = ["streams.throttle.ThrottledModelBackend"]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/contacts/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(VAR_DIR / "static")))
# With DEBUG off, gunicorn serves static files itself, through WhiteNoise, from STATIC_ROOT,
# which `manage.py collectstatic` fills with hashed, compressed copies cached for ever (a page
# naming a file that collectstatic did not see is an error, not a page without its script).
# With DEBUG on (the demo's runserver, the tests) they are served as they are, from the apps.
if not DEBUG:
    # Right after SecurityMiddleware, before anything that reads a session or the database.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage" if DEBUG
                    else "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# A strict CSP: nothing but our own origin; no inline script at all.
from django.utils.csp import CSP  # noqa: E402

SECURE_CSP = {
    "default-src": [CSP.SELF],
    # X profile pictures (streams.people.AVATAR_ORIGIN), and no other remote image.
    "img-src": [CSP.SELF, "data:", "https://pbs.twimg.com"],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "script-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    if not SECURE_HSTS_PRELOAD:
        # Preloading is a one-way commitment for the whole domain: the operator's call
        # (SECURE_HSTS_PRELOAD=1), not a default; so its deploy warning is silenced here.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "WARNING")},
}
