"""Answer 503 with Retry-After while the database or Redis is unreachable (restarting, failing
over), instead of a 500: webhook providers and the device app retry a 503 later, and nothing
they sent is lost because nothing was acknowledged."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from kombu.exceptions import OperationalError as BrokerUnavailable
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30
UNAVAILABLE = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeout, BrokerUnavailable)


class ServiceUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, UNAVAILABLE):
            return None
        log.warning("%s %s: a service is unavailable: %r", request.method, request.path, exception)
        response = HttpResponse(
            "A service Mesh needs is unavailable for a moment; try again later.\n",
            status=503, content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
