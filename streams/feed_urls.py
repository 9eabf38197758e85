"""Outbound feeds: /feeds/<token>.rss|.atom|.json|.as2 and /@<workspace>/feed.rss|.atom|.json."""

from __future__ import annotations

urlpatterns: list = []
