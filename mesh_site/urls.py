from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from connectors.device.views import device_events
from streams.throttle import login_throttle

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", login_throttle(auth_views.LoginView.as_view()), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/devices/events", device_events, name="device-events"),
    path("hooks/twilio/", include("connectors.twilio_sms.urls")),
    path("", include("streams.feed_urls")),
    path("", include("streams.urls")),
]
