from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from connectors.base import registry
from streams.throttle import login_throttle

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", login_throttle(auth_views.LoginView.as_view()), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Each installed connector's webhooks (and the device API), where it says: /hooks/<key>/ by
    # default. A connector installed later is mounted at the next start, like its code is loaded.
    *(path(cls.mount(), include(cls.urls)) for cls in registry.connectors.values() if cls.urls),
    path("", include("streams.feed_urls")),
    path("", include("streams.urls")),
]
