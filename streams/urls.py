from __future__ import annotations

from django.urls import path
from django.views.generic import RedirectView

from . import views

urlpatterns = [
    path("", RedirectView.as_view(url="/contacts/", permanent=False)),
    path("contacts/", views.contact_list, name="contact-list"),
    path("contacts/<int:contact_id>/", views.contact_detail, name="contact-detail"),
    path("devices/", views.device_list, name="device-list"),
    path("devices/<int:device_id>/", views.device_detail, name="device-detail"),
    path("sources/", views.source_list, name="source-list"),
]
