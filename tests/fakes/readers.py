"""Mesh's answers read as the outside reads them: a page's text and the activities it lists, a
feed fetched by its token in each format."""

from __future__ import annotations

import re

from django.urls import reverse

FORMATS = ("rss", "atom", "json", "as2")


def text_of(response) -> str:
    return response.content.decode()


def page_activity_ids(response) -> list[int]:
    return [int(x) for x in re.findall(r'<article class="activity[^"]*" id="a(\d+)"', text_of(response))]


def feed_url(token, fmt, before=None):
    url = reverse("feed-token", kwargs={"token": token, "fmt": fmt})
    return url + (f"?before={before}" if before else "")


def get(client, url, **headers):
    return client.get(url, headers=headers)
