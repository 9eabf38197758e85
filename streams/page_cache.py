"""Whole pieces of the contact page from the fragment cache (``presenters.render_cached`` holds
the single activities): the timeline's blocks around them. Keys are made of everything the HTML
shows, so an entry is never stale; nothing is ever invalidated."""

from __future__ import annotations

import hashlib

from django.core.cache import cache
from django.template.loader import get_template
from django.utils import timezone, translation
from django.utils.safestring import SafeString, mark_safe

from .presenters import FRAGMENT_SECONDS, FRAGMENT_VERSION, Block


class TimelineItems:
    """``_timeline_items.html`` for a page's blocks. Rendering the blocks (headings per day,
    threads, folded runs) took as long as the rest of the page's templates, and fetching the
    50 activities' fragments half as long again. Pass ``ready`` to ``render_activities``: given
    the activities' fragment keys (each names all its fragment shows), it looks the whole piece
    up under a key of those and of what the blocks show (kind, day, subject, run summary and
    times, which activities, the empty page's wording); on a hit no fragment is fetched."""

    def __init__(self, blocks: list[Block], *, filters, paged: bool):
        self.blocks, self.filters, self.paged = blocks, filters, paged
        self.key: str | None = None
        self.html: str | None = None

    def ready(self, fragment_keys: list[str]) -> bool:
        digest = hashlib.blake2b(repr((self.filters.active, self.paged, timezone.get_current_timezone_name(),
                                       translation.get_language())).encode(), digest_size=16)
        for b in self.blocks:
            digest.update(repr((b.kind, b.day, b.subject if b.kind == "thread" else "",
                                b.summary if b.kind == "run" else None, b.oldest.occurred_at, b.newest.occurred_at,
                                [a.pk for a in b.items])).encode())
        digest.update(" ".join(fragment_keys).encode())
        self.key = f"mesh:frag:{FRAGMENT_VERSION}:t:{digest.hexdigest()}"
        self.html = cache.get(self.key)
        return self.html is not None

    def render(self) -> SafeString:
        """The piece: from the cache, or rendered from the activities' fragments (then cached)."""
        if self.html is None:
            self.html = get_template("streams/_timeline_items.html").render(
                {"blocks": self.blocks, "filters": self.filters, "paged": self.paged})
            if self.key is not None:  # None: no activities, nothing worth a key
                cache.set(self.key, self.html, FRAGMENT_SECONDS)
        return mark_safe(self.html)  # our own template's output: every value in it was escaped
