"""The shared HTTP error mapping (connectors.http.HttpErrors) and timestamp parser
(connectors.times.parse_time) that every connector uses."""

from __future__ import annotations

import datetime as dt

import pytest

from connectors.http import HttpErrors
from connectors.times import NoOffset, parse_time
from connectors.twitter.connector import XErrors

ERRORS = HttpErrors()


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_permanent_and_say_auth_failed(status):
    error = ERRORS.error(status, "bad token")
    assert (error.permanent, error.status) == (True, "auth_failed")


@pytest.mark.parametrize(("status", "permanent"), [(500, False), (503, False), (408, False), (409, False), (400, True), (404, True)])
def test_server_errors_are_retried_and_a_wrong_request_is_not(status, permanent):
    assert ERRORS.error(status, "x").permanent is permanent


def test_a_success_is_no_error():
    assert ERRORS.error(204) is None


def test_rate_limit_retries_at_the_epoch_the_provider_names():
    error = ERRORS.error(429, headers={"x-rate-limit-reset": "1900000000"})
    assert (error.permanent, error.retry_at) == (False, dt.datetime.fromtimestamp(1_900_000_000, dt.UTC))


def test_rate_limit_retries_after_the_delay_or_the_http_date_of_retry_after():
    before = dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=119) < ERRORS.error(429, headers={"Retry-After": "120"}).retry_at - before <= dt.timedelta(seconds=121)
    dated = ERRORS.error(429, headers={"Retry-After": "Wed, 21 Oct 2065 07:28:00 GMT"})
    assert dated.retry_at == dt.datetime(2065, 10, 21, 7, 28, tzinfo=dt.UTC)


def test_rate_limit_without_a_usable_header_retries_after_the_providers_default():
    before = dt.datetime.now(dt.UTC)
    retry_at = XErrors().error(429, headers={"x-rate-limit-reset": "soon"}, where="/2/tweets").retry_at
    assert dt.timedelta(minutes=14) < retry_at - before <= dt.timedelta(minutes=15, seconds=1)


def test_a_provider_words_its_errors_but_keeps_the_rules():
    error = XErrors().error(401, "Unauthorized", where="/2/users/me")
    assert error.status == "auth_failed" and error.message.startswith("X refused the token (HTTP 401 on /2/users/me")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-05-01T12:00:00Z", dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)),
        ("2026-05-01T14:00:00.250+02:00", dt.datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)),
        (1_777_636_800, dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)),
        (1_777_636_800_000, dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)),  # milliseconds
    ],
)
def test_rfc3339_text_and_epoch_seconds_or_milliseconds_read_as_utc(value, expected):
    assert parse_time(value) == expected


def test_text_without_an_offset_is_refused_unless_utc_is_assumed():
    with pytest.raises(NoOffset):
        parse_time("2026-05-01T12:00:00")
    assert parse_time("2026-05-01T12:00:00", assume_utc=True) == dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)


@pytest.mark.parametrize("value", [True, "yesterday", 1e30, None])
def test_what_is_not_a_time_is_a_value_error(value):
    with pytest.raises(ValueError):
        parse_time(value)


def test_epoch_numbers_are_refused_where_only_text_is_a_time():
    with pytest.raises(ValueError, match="RFC 3339 string"):
        parse_time(1_777_636_800, epoch=False)
