"""Rate limits: failed log-ins (per username and per address, then a lock), the device API
(requests per token, failed token attempts per address) and feed polls (requests per token).

Counters live in Django's cache: Redis in production, so that every gunicorn worker counts
together; process memory on the embedded default, which is one process. A counter is a cache
key per clock-aligned window (``…:<window number>``): one ``incr`` a request (a group of
requests for the large limits, ``_HOLD_SHARE``), and a key that
outlives its window is never read again, so a counter can never be stuck. Names, tokens and
addresses are hashed into the keys, never stored as such.

Why not django-axes: it covers log-ins only (the device API and feeds need the same counters
anyway), sends no ``Retry-After``, and insists on a request in every ``authenticate()`` call;
see docs/design.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.core.cache.backends.redis import RedisCacheClient
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse

from .conf import conf

log = logging.getLogger(__name__)


def _fail_open(default):
    """While the cache (Redis) is down, limit nothing rather than answer 500: pushed events and
    webhooks are stored in PostgreSQL and must keep coming in; a Redis outage is short."""

    def decorate(function):
        @wraps(function)
        def wrapped(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except Exception as exc:  # the cache backend's connection errors have no common base
                log.warning("rate limit not applied, the cache is unavailable: %s", exc)
                return default

        return wrapped

    return decorate


# Request limits (feed polls, the device API: thousands a minute per token) are counted in
# groups of 1/200 of the limit per process: a poll pays Redis's round trip once in 60 instead
# of every time, and a limit can be overrun by at most 0.5 % per process. Small limits (log-ins)
# stay exact.
_HOLD_SHARE = 200
_HELD_KEYS = 4096
_held: dict[str, list[int]] = {}  # counter key → [events held back, shared total last read]


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` events per ``seconds``-long window for one subject (``count`` <= 0: no
    limit). ``setting`` names the count's setting in ``streams.conf`` and ``per`` the window's (or is the window in
    seconds): read on each use, so that a changed setting applies at once."""

    scope: str
    setting: str
    per: int | str

    @property
    def count(self) -> int:
        return getattr(conf, self.setting)

    @property
    def seconds(self) -> int:
        return max(1, getattr(conf, self.per) if isinstance(self.per, str) else self.per)

    def key(self, subject: str, window: int) -> str:
        """The cache key of a window's counter (window -1: the lock of a log-in limit)."""
        digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"mesh:throttle:{self.scope}:{digest}:{window}"

    def _window(self, now: float) -> tuple[int, int]:
        """The current window's number and the whole seconds until it ends (at least 1)."""
        window = int(now // self.seconds)
        return window, max(1, math.ceil((window + 1) * self.seconds - now))

    def _count(self, subject: str, *, hold: bool = False) -> tuple[int, int]:
        """Count one event: the events so far in this window, and the seconds left in it. With
        ``hold``, a large limit's events are added to the shared counter in groups
        (``_HOLD_SHARE``): the total is then exact to within one group per process."""
        window, left = self._window(time.time())
        key = self.key(subject, window)
        group = self.count // _HOLD_SHARE if hold else 1
        if group <= 1:
            return self._add(key, 1, left), left
        held = _held.get(key)
        if held is None:
            if len(_held) >= _HELD_KEYS:
                _held.clear()  # mostly windows gone by; at worst a group uncounted per key
            held = _held[key] = [0, 0]
        held[0] += 1
        if held[0] < group:
            return held[1] + held[0], left
        held[1], held[0] = self._add(key, held[0], left), 0
        return held[1], left

    @staticmethod
    def _add(key: str, n: int, left: int) -> int:
        """Add ``n`` to the window's shared counter; its new value."""
        redis = _redis_client()
        if redis is not None:
            # One round trip: Django's incr() costs two (EXISTS, then INCR) and a miss a third.
            pipe = redis.pipeline(transaction=False)
            pipe.incrby(cache.make_and_validate_key(key), n)
            pipe.expire(cache.make_and_validate_key(key), left + 1)
            return pipe.execute()[0]
        try:
            return cache.incr(key, n)
        except ValueError:  # the window's first event
            if cache.add(key, n, timeout=left + 1):
                return n
            return cache.incr(key, n)

    @_fail_open(0)
    def hit(self, subject: str) -> int:
        """Count one event; the seconds to wait if that went over the limit, else 0."""
        if self.count <= 0:
            return 0
        used, left = self._count(subject, hold=True)
        return left if used > self.count else 0

    @_fail_open(False)
    def reached(self, subject: str) -> bool:
        """Count one event; whether that made ``count`` in this window."""
        return self.count > 0 and self._count(subject)[0] >= self.count

    @_fail_open(0)
    def exceeded(self, subject: str) -> int:
        """The seconds to wait if the limit is already reached (counts nothing), else 0."""
        if self.count <= 0:
            return 0
        window, left = self._window(time.time())
        return left if (cache.get(self.key(subject, window)) or 0) >= self.count else 0

    @_fail_open(None)
    def forget(self, subject: str) -> None:
        cache.delete(self.key(subject, self._window(time.time())[0]))


def _redis_client():
    """The Redis client behind Django's cache, or None when the cache is not Redis. The counters
    it writes are plain integers, which Django's Redis cache reads back as such."""
    backend = getattr(cache, "_cache", None)
    return backend.get_client(write=True) if isinstance(backend, RedisCacheClient) else None


def client_ip(request: HttpRequest | None) -> str:
    """The client's address: ``REMOTE_ADDR``, or, behind ``MESH_TRUSTED_PROXIES`` proxies that
    each append to ``X-Forwarded-For``, the address the outermost one saw (entries before it
    are the client's to write, so they prove nothing)."""
    if request is None:
        return ""
    proxies = conf.TRUSTED_PROXIES
    if proxies > 0:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.META.get("REMOTE_ADDR", "")


def too_many_requests(retry_after: int, message: str, *, as_json: bool) -> HttpResponse:
    text = f"{message}; try again in {retry_after} s"
    if as_json:
        response = JsonResponse({"error": text, "retry_after": retry_after}, status=429)
    else:
        response = HttpResponse(text + "\n", status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(retry_after)
    return response


# --- log-in -------------------------------------------------------------------------------------
# N failures in a window lock the username (or the address) for MESH_LOGIN_LOCKOUT_SECONDS from
# then: the right password is refused too while locked, which is what stops guessing.

LOGIN_FAILURES_PER_USER = Limit("login-user", "LOGIN_FAILURES_PER_USER", "LOGIN_LOCKOUT_SECONDS")
LOGIN_FAILURES_PER_IP = Limit("login-ip", "LOGIN_FAILURES_PER_IP", "LOGIN_LOCKOUT_SECONDS")


def _login_subjects(request: HttpRequest | None, username: str | None) -> list[tuple[Limit, str]]:
    subjects = [(LOGIN_FAILURES_PER_USER, (username or "").strip().lower())]
    ip = client_ip(request)
    if ip:
        subjects.append((LOGIN_FAILURES_PER_IP, ip))
    return [(limit, subject) for limit, subject in subjects if subject]


def _lock_key(limit: Limit, subject: str) -> str:
    return limit.key(subject, -1)


@_fail_open(0)
def login_locked_for(request: HttpRequest | None, username: str | None) -> int:
    """Seconds until this username and this address may log in again (0: now)."""
    now = time.time()
    keys = [_lock_key(limit, subject) for limit, subject in _login_subjects(request, username)]
    return max((math.ceil(until - now) for until in cache.get_many(keys).values() if until > now), default=0)


@receiver(user_login_failed, dispatch_uid="mesh-login-throttle-failed")
@_fail_open(None)
def _count_failed_login(sender, credentials, request=None, **kwargs) -> None:
    username = credentials.get("username")
    if login_locked_for(request, username):
        return  # refused while locked: the lock runs from its start, not from the last try
    lockout = conf.LOGIN_LOCKOUT_SECONDS
    for limit, subject in _login_subjects(request, username):
        if limit.reached(subject):
            cache.add(_lock_key(limit, subject), time.time() + lockout, timeout=lockout)
            limit.forget(subject)  # after the lock, a fresh count


@receiver(user_logged_in, dispatch_uid="mesh-login-throttle-succeeded")
def _forget_failed_logins(sender, request, user, **kwargs) -> None:
    """A user who mistyped a few times and then got in starts again from zero (the address does
    not: one account's success says nothing about guesses at others)."""
    LOGIN_FAILURES_PER_USER.forget(user.get_username().strip().lower())


class ThrottledModelBackend(ModelBackend):
    """Django's ``ModelBackend`` that refuses every log-in, right password or not, while the
    username or the address is locked: every log-in form (Mesh's, the admin's) goes through it."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is not None and login_locked_for(request, username):
            raise PermissionDenied  # authenticate() stops here and reports a failed log-in
        return super().authenticate(request, username=username, password=password, **kwargs)


def login_throttle(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answer a refused log-in with 429, ``Retry-After`` and, on the log-in page, the wait in
    words instead of "wrong password" (the template reads ``locked_for``)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if request.method != "POST" or response.status_code != 200:
            return response
        wait = login_locked_for(request, request.POST.get("username", ""))
        if wait:
            response.status_code = 429
            response["Retry-After"] = str(wait)
            if getattr(response, "context_data", None) is not None:
                response.context_data["locked_for"] = max(1, math.ceil(wait / 60))
        return response

    return wrapped


# --- the device API and feeds -------------------------------------------------------------------

DEVICE_API_REQUESTS = Limit("device-token", "DEVICE_API_RATE_PER_MINUTE", 60)
DEVICE_API_BAD_TOKENS = Limit("device-bad-token-ip", "DEVICE_API_RATE_BAD_TOKENS_PER_MINUTE", 60)
FEED_REQUESTS = Limit("feed-token", "FEED_RATE_PER_MINUTE", 60)


def device_token(request: HttpRequest) -> str:
    """The device token a request presents: ``Authorization: Bearer <token>``, or the password
    of HTTP Basic credentials (how the OwnTracks app sends it); "" when there is none."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2].strip()


def device_api_throttle(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Requests per device token, and failed token attempts per address (an address that keeps
    presenting bad tokens is refused before any lookup)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        ip = client_ip(request)
        if _recently_refused(ip):
            wait = DEVICE_API_BAD_TOKENS.exceeded(ip)
            if wait:
                _note_refused(ip)
                return too_many_requests(wait, "too many failed token attempts from this address", as_json=True)
        token = device_token(request)
        if token:
            wait = DEVICE_API_REQUESTS.hit(token)
            if wait:
                return too_many_requests(wait, "too many requests for this device token", as_json=True)
        response = view(request, *args, **kwargs)
        if response.status_code == 401:
            _note_refused(ip)
            DEVICE_API_BAD_TOKENS.hit(ip)
        return response

    return wrapped


# Addresses this process answered 401 (or 429 for bad tokens) lately. Only these have their
# bad-token counter read before the lookup: a device's every request would otherwise pay a
# Redis round trip for a counter that is zero. An address refused by other processes only
# gets one more lookup here, whose 401 puts it on this list.
_refused_addresses: dict[str, float] = {}
_REFUSED_ADDRESSES_MAX = 4096


def _note_refused(ip: str) -> None:
    if len(_refused_addresses) >= _REFUSED_ADDRESSES_MAX and ip not in _refused_addresses:
        _refused_addresses.clear()  # mostly addresses long quiet; at worst one lookup more each
    _refused_addresses[ip] = time.time()


def _recently_refused(ip: str) -> bool:
    seen = _refused_addresses.get(ip)
    if seen is None:
        return False
    if time.time() - seen < 2 * DEVICE_API_BAD_TOKENS.seconds:
        return True
    del _refused_addresses[ip]
    return False


def feed_throttle(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Polls per feed token (the ``token`` URL argument)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, token: str, **kwargs) -> HttpResponse:
        wait = FEED_REQUESTS.hit(token)
        if wait:
            return too_many_requests(wait, "too many requests for this feed", as_json=False)
        return view(request, *args, token=token, **kwargs)

    return wrapped
