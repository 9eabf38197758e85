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


def _key(kind: str, digest) -> str:
    return f"mesh:frag:{FRAGMENT_VERSION}:{kind}:{digest.hexdigest()}"


def render_timeline_items(blocks: list[Block], *, filters, paged: bool) -> SafeString:
    """``_timeline_items.html`` for ``blocks`` whose activities already carry their fragments.
    Rendering the blocks (headings per day, threads, folded runs) took as long as the rest of the
    page's templates; the key is what that template reads: each block's kind, day, subject,
    run summary and times, the activities and their fragments as shown, the empty-page wording."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((filters.active, paged, timezone.get_current_timezone_name(),
                        translation.get_language())).encode())
    for b in blocks:
        digest.update(repr((b.kind, b.day, b.subject if b.kind == "thread" else "",
                            b.summary if b.kind == "run" else None, b.oldest.occurred_at, b.newest.occurred_at,
                            [a.pk for a in b.items])).encode())
        for a in b.items:
            digest.update(a.fragment.encode())
    key = _key("t", digest)
    html = cache.get(key)
    if html is None:
        html = get_template("streams/_timeline_items.html").render({"blocks": blocks, "filters": filters,
                                                                    "paged": paged})
        cache.set(key, html, FRAGMENT_SECONDS)
    return mark_safe(html)  # our own template's output: every value in it was escaped
