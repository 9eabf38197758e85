"""Twilio webhooks: /hooks/twilio/<source>/sms and /hooks/twilio/<source>/status."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("<int:source_id>/sms", views.sms_inbound, name="twilio-sms"),
    path("<int:source_id>/status", views.sms_status, name="twilio-status"),
]
