"""Template filters for the web pages."""

from __future__ import annotations

import re

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter
def highlight(text, terms) -> SafeString:
    """``text`` escaped, with the search ``terms`` wrapped in <mark>. The text is split on the
    matches first and every piece escaped on its own, so no markup from the text survives and
    no match can land inside an entity."""
    text = "" if text is None else str(text)
    words = [t for t in (terms or []) if t]
    if not words:
        return escape(text)
    pattern = re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), re.IGNORECASE)
    out, pos = [], 0
    for m in pattern.finditer(text):
        out.append(escape(text[pos : m.start()]))
        out.append(f"<mark>{escape(m.group(0))}</mark>")
        pos = m.end()
    out.append(escape(text[pos:]))
    return mark_safe("".join(out))  # every piece escaped above
