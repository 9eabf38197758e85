"""The OwnTracks HTTP endpoint, mounted by the site at ``/api/v1/owntracks``
(``OwnTracksConnector.url_mount``)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.owntracks_http, name="owntracks-http"),
]
