"""Forms of the web pages: what a request may ask for, checked once before a view reads it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django import forms
from django.http import QueryDict
from django.utils import timezone

from .selectors import search_terms

CHANNELS = ("email", "sms", "twitter", "device")
DIRECTIONS = (("in", "incoming"), ("out", "outgoing"), ("none", "no direction"))


class TimelineFilterForm(forms.Form):
    """The filters above a timeline and on the search page. A channel or direction that is not
    one of ours is dropped, not refused: a hand-edited or stale link still shows a page. A date
    that is not one is said so, and the page shows what it can without it."""

    q = forms.CharField(required=False, strip=False)
    channel = forms.RegexField(r"^[a-z0-9_-]{1,16}$", required=False)
    direction = forms.ChoiceField(choices=DIRECTIONS, required=False)
    since = forms.DateField(required=False, input_formats=["%Y-%m-%d"],
                            error_messages={"invalid": "not a date (YYYY-MM-DD)"})
    until = forms.DateField(required=False, input_formats=["%Y-%m-%d"],
                            error_messages={"invalid": "not a date (YYYY-MM-DD)"})

    def clean_q(self) -> str:
        return search_terms(self.cleaned_data["q"])

    def filters(self) -> TimelineFilters:
        """The valid values, each invalid one left empty, with the errors a person should see."""
        self.is_valid()
        data, errors = self.cleaned_data, []
        for name in ("since", "until"):
            errors += [f"{name}: {e}" for e in self.errors.get(name, [])]
        day = {name: data[name].isoformat() if data.get(name) else "" for name in ("since", "until")}
        return TimelineFilters(channel=data.get("channel") or "", direction=data.get("direction") or "",
                               since=day["since"], until=day["until"], q=data.get("q") or "", errors=errors)

    @classmethod
    def from_query(cls, query: QueryDict) -> TimelineFilters:
        return cls(query).filters()


@dataclass(frozen=True)
class TimelineFilters:
    """Checked filters, as the templates show them and the selectors take them."""

    channel: str = ""
    direction: str = ""
    since: str = ""  # YYYY-MM-DD
    until: str = ""  # YYYY-MM-DD, the whole day included
    q: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(self.channel or self.direction or self.since or self.until or self.q)

    def params(self) -> dict[str, str]:
        return {"channel": self.channel, "direction": self.direction, "since": self.since,
                "until": self.until, "q": self.q}

    def selector_kwargs(self) -> dict:
        since = _midnight(self.since)
        until = _midnight(self.until)
        return {
            "channel": self.channel or None, "direction": self.direction or None, "since": since,
            # "until" is inclusive on the page: the whole day counts.
            "until": until + dt.timedelta(days=1) if until else None,
        }


def _midnight(day: str) -> dt.datetime | None:
    # The reader's midnight (streams.timezones): a day filter takes the days the page shows.
    if not day:
        return None
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), tzinfo=timezone.get_current_timezone())
