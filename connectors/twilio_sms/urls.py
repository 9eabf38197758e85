"""Twilio webhooks: /hooks/twilio/<source>/sms and /hooks/twilio/<source>/status."""

from __future__ import annotations

urlpatterns: list = []
