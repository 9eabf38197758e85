"""Rate limits (streams/throttle.py): failed log-ins lock a username and an address, with a
clear message and ``Retry-After``, and the right password works again after the lock; the
device API per token and per address presenting bad tokens; feed polls per token. The clock is
the throttle's own, moved by the tests, so windows never straddle by chance."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache

from streams import throttle
from tests.factories import make_event

LOGIN = "/accounts/login/"
DEVICE_API = "/api/v1/devices/events"
RIGHT = "correct horse battery"


class Clock:
    def __init__(self):
        self.now = 1_800_000_010.0  # 10 s into a minute (and into a 15-minute window)

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    cache.clear()
    throttle._held.clear()
    throttle._refused_addresses.clear()
    clock = Clock()
    monkeypatch.setattr(throttle, "time", clock)
    yield clock
    cache.clear()


@pytest.fixture
def login_limits(settings):
    settings.MESH_LOGIN_FAILURES_PER_USER = 5
    settings.MESH_LOGIN_FAILURES_PER_IP = 30
    settings.MESH_LOGIN_LOCKOUT_SECONDS = 900


def log_in(client, username, password, ip="198.51.100.7", path=LOGIN):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)


def logged_in_as(client) -> str | None:
    from django.contrib.auth import get_user

    user = get_user(client)
    return user.get_username() if user.is_authenticated else None


def test_failed_logins_lock_the_username_even_for_the_right_password(client, member, login_limits, clock):
    for _ in range(4):
        assert log_in(client, "alice", "wrong").status_code == 200
    fifth = log_in(client, "alice", "wrong")
    assert fifth.status_code == 429
    assert int(fifth["Retry-After"]) == 900
    assert "Too many failed log-ins for this username or from your address. Try again in 15 minutes." in (
        fifth.content.decode())

    clock.advance(600)
    refused = log_in(client, "alice", RIGHT, ip="203.0.113.9")  # another address changes nothing
    assert refused.status_code == 429 and int(refused["Retry-After"]) == 300
    assert "Try again in 5 minutes." in refused.content.decode()
    assert "Please enter a correct username" not in refused.content.decode()
    assert logged_in_as(client) is None


def test_after_the_lock_the_right_password_works_again(client, member, login_limits, clock):
    for _ in range(5):
        log_in(client, "alice", "wrong")
    assert log_in(client, "alice", RIGHT).status_code == 429
    clock.advance(901)
    response = log_in(client, "alice", RIGHT)
    assert response.status_code == 302 and response["Location"] == "/contacts/"
    assert logged_in_as(client) == "alice"


def test_tries_during_the_lock_do_not_extend_it(client, member, login_limits, clock):
    for _ in range(5):
        log_in(client, "alice", "wrong")
    for _ in range(10):
        clock.advance(60)
        assert log_in(client, "alice", "wrong").status_code == 429
    clock.advance(301)
    assert log_in(client, "alice", RIGHT).status_code == 302


def test_a_successful_login_starts_the_count_again(client, member, login_limits):
    for _ in range(4):
        log_in(client, "alice", "wrong")
    assert log_in(client, "alice", RIGHT).status_code == 302
    client.post("/accounts/logout/")
    for _ in range(4):
        assert log_in(client, "alice", "wrong").status_code == 200
    assert log_in(client, "alice", RIGHT).status_code == 302


def test_failed_logins_from_one_address_lock_that_address_for_every_username(
    client, member, teammate, settings, login_limits
):
    settings.MESH_LOGIN_FAILURES_PER_IP = 3
    for name in ("carol", "dave", "erin"):
        log_in(client, name, "guess", ip="192.0.2.50")
    refused = log_in(client, "bob", RIGHT, ip="192.0.2.50")
    assert refused.status_code == 429 and int(refused["Retry-After"]) == 900
    assert logged_in_as(client) is None
    assert log_in(client, "bob", RIGHT, ip="192.0.2.51").status_code == 302


def test_the_address_behind_trusted_proxies_is_the_one_the_outermost_proxy_saw(rf, settings):
    request = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.7")
    settings.MESH_TRUSTED_PROXIES = 0
    assert throttle.client_ip(request) == "10.0.0.2"
    settings.MESH_TRUSTED_PROXIES = 1
    assert throttle.client_ip(request) == "198.51.100.7"  # not the client-written 6.6.6.6


def test_the_admin_login_is_locked_too(client, login_limits, django_user_model):
    django_user_model.objects.create_superuser("root", password=RIGHT)
    for _ in range(5):
        log_in(client, "root", "wrong", path="/admin/login/")
    refused = log_in(client, "root", RIGHT, path="/admin/login/")
    assert refused.status_code == 429 and int(refused["Retry-After"]) == 900
    assert "Too many failed log-ins" in refused.content.decode()
    assert logged_in_as(client) is None


def post_events(client, token, event_id, ip="198.51.100.7"):
    return client.post(DEVICE_API, data=json.dumps({"events": [make_event(event_id)]}),
                       content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR=ip)


def test_device_api_limits_requests_per_token(client, workspace, device_token, settings, clock):
    from streams.services import device_create

    settings.MESH_DEVICE_API_RATE_PER_MINUTE = 3
    _, other_token = device_create(workspace=workspace, name="Tablet", kind="tablet")
    for i in range(3):
        assert post_events(client, device_token, f"e{i}").status_code == 202
    refused = post_events(client, device_token, "e3")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "50"
    assert refused.json() == {"error": "too many requests for this device token; try again in 50 s",
                              "retry_after": 50}
    assert post_events(client, other_token, "t0").status_code == 202
    clock.advance(50)
    assert post_events(client, device_token, "e3").status_code == 202


def test_device_api_refuses_an_address_that_keeps_presenting_bad_tokens(client, device_token, settings, clock):
    settings.MESH_DEVICE_API_RATE_BAD_TOKENS_PER_MINUTE = 3
    for i in range(3):
        assert post_events(client, f"mesh_dev_guess{i}", "e", ip="192.0.2.66").status_code == 401
    refused = post_events(client, device_token, "e1", ip="192.0.2.66")
    assert refused.status_code == 429 and refused["Retry-After"] == "50"
    assert refused.json()["error"].startswith("too many failed token attempts from this address")
    assert post_events(client, device_token, "e1", ip="192.0.2.67").status_code == 202
    clock.advance(50)
    assert post_events(client, device_token, "e2", ip="192.0.2.66").status_code == 202


def test_a_device_with_a_good_token_pays_no_bad_token_read_and_other_processes_refusals_count(
        client, device_token, settings, clock, monkeypatch):
    settings.MESH_DEVICE_API_RATE_BAD_TOKENS_PER_MINUTE = 3
    reads = []
    real = throttle.Limit.exceeded
    monkeypatch.setattr(throttle.Limit, "exceeded", lambda self, subject: reads.append(subject) or real(self, subject))
    assert post_events(client, device_token, "e1", ip="192.0.2.70").status_code == 202
    assert reads == []  # no 401 from this address here lately: its counter is not read
    for _ in range(3):  # refusals counted by other processes (the shared counter)
        throttle.DEVICE_API_BAD_TOKENS.hit("192.0.2.70")
    assert post_events(client, "mesh_dev_guess", "e", ip="192.0.2.70").status_code == 401
    refused = post_events(client, device_token, "e2", ip="192.0.2.70")
    assert refused.status_code == 429 and reads == ["192.0.2.70"]


def test_feed_polls_are_limited_per_token(client, workspace, device, settings, clock):
    from streams.feed_tokens import feed_token_create

    settings.MESH_FEED_RATE_PER_MINUTE = 2
    _, token = feed_token_create(workspace=workspace, device=device)
    _, other = feed_token_create(workspace=workspace, device=device)
    assert client.get(f"/feeds/{token}.rss").status_code == 200
    assert client.get(f"/feeds/{token}.atom").status_code == 200
    refused = client.get(f"/feeds/{token}.json")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "50" and refused["Content-Type"] == "text/plain; charset=utf-8"
    assert refused.content.decode() == "too many requests for this feed; try again in 50 s\n"
    assert client.get(f"/feeds/{other}.rss").status_code == 200
    clock.advance(50)
    assert client.get(f"/feeds/{token}.rss").status_code == 200



class RedisDown:
    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

        return fail


def test_with_the_cache_down_nothing_is_limited_and_nothing_fails(client, member, device_token, settings,
                                                                   monkeypatch):
    settings.MESH_DEVICE_API_RATE_PER_MINUTE = 1
    monkeypatch.setattr(throttle, "cache", RedisDown())
    for i in range(3):
        assert post_events(client, device_token, f"e{i}").status_code == 202
    assert log_in(client, "alice", "wrong").status_code == 200
    assert log_in(client, "alice", RIGHT).status_code == 302


def test_on_redis_a_window_counts_in_one_round_trip_and_the_cache_reads_the_count_back(monkeypatch, settings, clock):
    """Production's path: the counter is a raw INCR with an expiry (one pipelined round trip),
    and Django's Redis cache still reads it as the integer it is."""
    import os

    from django.core.cache.backends.redis import RedisCache

    redis_cache = RedisCache(os.environ["REDIS_URL"], {"KEY_PREFIX": f"mesh-test-throttle-{os.getpid()}"})
    monkeypatch.setattr(throttle, "cache", redis_cache)
    settings.MESH_FEED_RATE_PER_MINUTE = 3
    subject = f"feed-token-{clock.now}"
    window, left = throttle.FEED_REQUESTS._window(clock.time())
    key = redis_cache.make_and_validate_key(throttle.FEED_REQUESTS.key(subject, window))
    client = throttle._redis_client()
    try:
        assert [throttle.FEED_REQUESTS.hit(subject) for _ in range(4)] == [0, 0, 0, left]
        assert redis_cache.get(throttle.FEED_REQUESTS.key(subject, window)) == 4
        assert 0 < client.ttl(key) <= left + 1
    finally:
        client.delete(key)


def test_a_large_limit_is_shared_in_groups_and_still_holds(monkeypatch, settings, clock):
    """A feed token's thousands of polls a minute: one Redis round trip per 1/200 of the limit
    and process, the events of other processes counted at each, and nothing over the limit
    once the shared total says so."""
    import os

    from django.core.cache.backends.redis import RedisCache

    redis_cache = RedisCache(os.environ["REDIS_URL"], {"KEY_PREFIX": f"mesh-test-throttle-{os.getpid()}"})
    monkeypatch.setattr(throttle, "cache", redis_cache)
    settings.MESH_FEED_RATE_PER_MINUTE = 1000  # groups of 5
    subject = f"feed-token-groups-{clock.now}"
    window, left = throttle.FEED_REQUESTS._window(clock.time())
    plain_key = throttle.FEED_REQUESTS.key(subject, window)
    client = throttle._redis_client()
    try:
        assert [throttle.FEED_REQUESTS.hit(subject) for _ in range(4)] == [0] * 4
        assert redis_cache.get(plain_key) is None  # held back in this process
        assert throttle.FEED_REQUESTS.hit(subject) == 0
        assert redis_cache.get(plain_key) == 5
        redis_cache.incr(plain_key, 990)  # the other workers' polls
        assert [throttle.FEED_REQUESTS.hit(subject) for _ in range(5)] == [0] * 5  # 995 .. 1,000
        assert redis_cache.get(plain_key) == 1000
        assert throttle.FEED_REQUESTS.hit(subject) == left
    finally:
        client.delete(redis_cache.make_and_validate_key(plain_key))
