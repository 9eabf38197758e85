"""The device API, mounted by the site at ``/api/v1/devices/`` (``DeviceConnector.url_mount``)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("events", views.device_events, name="device-events"),
    path("me/status", views.device_status, name="device-status"),
]
