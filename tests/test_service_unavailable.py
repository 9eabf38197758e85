"""While the database or Redis is unreachable (restarting, failing over) requests get 503 with
Retry-After, which webhook providers and the device app retry, never a 500."""

from __future__ import annotations

import pytest
from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError


@pytest.mark.django_db
@pytest.mark.parametrize("error", [OperationalError("server closed the connection unexpectedly"),
                                   InterfaceError("connection already closed"),
                                   RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")])
def test_database_or_redis_unavailable_answers_503_with_retry_after(member_client, device, monkeypatch, error):
    def unavailable(**kwargs):
        raise error

    monkeypatch.setattr("streams.selectors.inbound_pending", unavailable)
    response = member_client.get("/devices/")
    assert (response.status_code, response["Retry-After"]) == (503, "30")


@pytest.mark.django_db
def test_other_errors_are_not_hidden_as_503(member_client, device, monkeypatch):
    def broken(**kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr("streams.selectors.inbound_pending", broken)
    with pytest.raises(ValueError, match="a bug"):
        member_client.get("/devices/")
