from __future__ import annotations

import logging

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from connectors.base import registry
from streams.throttle import login_throttle
from streams.urls import sync_urlpatterns

log = logging.getLogger(__name__)


def connector_urls() -> list:
    """Each installed connector's webhooks (and the device API), where it says: /hooks/<key>/ by
    default. A connector installed later is mounted at the next start, like its code is loaded;
    one whose URLconf cannot be imported is left out, logged, as the registry leaves out a
    connector that cannot be loaded: a broken plug-in must not take the site down."""
    mounted = []
    for key, cls in sorted(registry.connectors.items()):
        if not cls.urls:
            continue
        try:
            mounted.append(path(cls.mount(), include(cls.urls)))
        except Exception:
            log.exception("cannot mount the URLs %s of connector %s", cls.urls, key)
    return mounted


urlpatterns = [
    path("", include(sync_urlpatterns)),
    path("admin/", admin.site.urls),
    path("accounts/login/", login_throttle(auth_views.LoginView.as_view()), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    *connector_urls(),
    path("", include("streams.feed_urls")),
    path("", include("streams.urls")),
]
