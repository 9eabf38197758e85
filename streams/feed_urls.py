"""Outbound feeds: /feeds/<token>.rss|.atom|.json|.as2 and /@<workspace>/feed.rss|.atom|.json|.as2.

The token pattern takes any path segment, so that a malformed token gets the same 404 as an
unknown or revoked one (the resolver refuses it before any lookup)."""

from __future__ import annotations

from django.urls import path, re_path

from .feeds import views as feeds
from .views import feed_tokens, ranking

urlpatterns = [
    re_path(r"^feeds/(?P<token>[^/.]+)\.(?P<fmt>rss|atom|json|as2)$", feeds.token_feed, name="feed-token"),
    re_path(r"^@(?P<workspace>[-a-zA-Z0-9_]+)/feed\.(?P<fmt>rss|atom|json|as2)$", feeds.lifestream_feed,
            name="lifestream-feed"),
    path("contacts/<int:contact_id>/feed-tokens/", feed_tokens.contact_feed_tokens, name="contact-feed-tokens"),
    # The going-cold list's feed (streams/cold_feed.py): one token per workspace list, not a timeline.
    re_path(r"^feeds/cold/(?P<token>[^/.]+)\.(?P<fmt>rss|json)$", ranking.cold_feed, name="cold-feed"),
]
