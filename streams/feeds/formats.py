"""The feed formats: RSS 2.0, Atom (RFC 4287), JSON Feed 1.1 and an Activity Streams 2.0
``OrderedCollectionPage``, each a ``feedgenerator.SyndicationFeed`` writing `FeedEntry` items.

Paging is RFC 5005 style (``rel="next"`` and ``first`` links). Erased items are tombstones on
a first page: Atom and RSS ``at:deleted-entry`` (RFC 6721), AS2 ``Tombstone``, JSON Feed
``_mesh.deleted``.
"""

from __future__ import annotations

import json

from django.utils import feedgenerator

from ..export import AS2_CONTEXT, rfc3339
from .entries import FeedEntry, summary_html

TOMBSTONE_NS = "http://purl.org/atompub/tombstones/1.0"
CONTENT_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
    "as2": "application/activity+json; charset=utf-8",
}


def _json(doc: dict) -> str:
    """Compact JSON with < > & written as \\u escapes (as Django's json_script does): the
    values are unchanged for any JSON reader, and the document holds no markup even for a
    client that sniffs it as HTML."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class _PagedWithTombstones:
    """What RSS and Atom add to their root element: RFC 5005 ``first``/``next`` links, RFC 6721
    tombstones, and the page's own last-modified time as the feed's date."""

    paging_element = "link"

    def add_root_elements(self, handler):
        super().add_root_elements(handler)
        for rel in ("first", "next"):
            if self.feed.get(f"{rel}_url"):
                handler.addQuickElement(self.paging_element, None, {"rel": rel, "href": self.feed[f"{rel}_url"]})
        for ref, when in self.feed["tombstones"]:
            handler.addQuickElement("at:deleted-entry", None, {"ref": ref, "when": rfc3339(when)})

    def latest_post_date(self):
        return self.feed["updated"]


class RssFeedGenerator(_PagedWithTombstones, feedgenerator.Rss201rev2Feed):
    paging_element = "atom:link"

    def rss_attributes(self):
        return {**super().rss_attributes(), "xmlns:at": TOMBSTONE_NS}


class AtomFeedGenerator(_PagedWithTombstones, feedgenerator.Atom1Feed):
    def root_attributes(self):
        return {**super().root_attributes(), "xmlns:at": TOMBSTONE_NS}

    def add_item_elements(self, handler, item):
        super().add_item_elements(handler, item)
        entry: FeedEntry = item["entry"]
        if entry.content_html is not None:
            handler.addQuickElement("content", entry.content_html, {"type": "html"})


class JsonFeedGenerator(feedgenerator.SyndicationFeed):
    """JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/)."""

    content_type = CONTENT_TYPES["json"]

    def document(self) -> dict:
        doc = {
            "version": "https://jsonfeed.org/version/1.1",
            "title": self.feed["title"],
            "home_page_url": self.feed["link"],
            "feed_url": self.feed["feed_url"],
            "description": self.feed["description"],
            "language": self.feed["language"],
            "authors": [{"name": self.feed["author_name"]}],
        }
        if self.feed.get("next_url"):
            doc["next_url"] = self.feed["next_url"]
        items = []
        for item in self.items:
            e: FeedEntry = item["entry"]
            out = {
                "id": e.guid,
                "url": e.link,
                "title": e.title,
                "date_published": rfc3339(e.published),
                "date_modified": rfc3339(e.updated),
                "tags": [e.channel],
            }
            if e.content_html is not None:
                out["content_html"] = e.content_html
                out["content_text"] = e.content_text or ""
            else:
                out["content_text"] = e.summary or e.title
            if e.summary:
                out["summary"] = e.summary
            if e.author:
                out["authors"] = [{"name": e.author}]
            with_url = [x for x in e.attachments if x["url"]]
            if with_url:
                out["attachments"] = [
                    {"url": x["url"], "mime_type": x["type"], "title": x["name"],
                     **({"size_in_bytes": x["size"]} if x["size"] is not None else {})}
                    for x in with_url
                ]
            items.append(out)
        doc["items"] = items
        if self.feed["tombstones"]:
            # JSON Feed has no deletions; an extension (keys starting with "_") carries them.
            doc["_mesh"] = {"deleted": [{"id": ref, "deleted": rfc3339(when)} for ref, when in self.feed["tombstones"]]}
        return doc

    def write(self, outfile, encoding):
        outfile.write(_json(self.document()))


class As2FeedGenerator(feedgenerator.SyndicationFeed):
    """An Activity Streams 2.0 OrderedCollectionPage of the page's activities, tombstones first."""

    content_type = CONTENT_TYPES["as2"]

    def document(self) -> dict:
        ordered: list[dict] = [
            {"type": "Tombstone", "id": ref, "formerType": "Create", "deleted": rfc3339(when)}
            for ref, when in self.feed["tombstones"]
        ]
        for item in self.items:
            e: FeedEntry = item["entry"]
            obj = {
                "type": e.as2_type,
                "id": e.guid,
                "name": e.title,
                "published": rfc3339(e.published),
                "updated": rfc3339(e.updated),
                "url": e.link,
                "mesh:channel": e.channel,
            }
            if e.author:
                obj["actor"] = {"type": "Person", "name": e.author}
            if e.recipients:
                obj["to"] = [{"type": "Person", "name": n} for n in e.recipients]
            if e.summary:
                obj["summary"] = summary_html(e.summary)
            if e.content_html is not None:
                obj["content"] = e.content_html
                obj["mediaType"] = "text/html"
            if e.attachments:
                obj["attachment"] = [
                    {"type": "Document", "name": x["name"], "mediaType": x["type"],
                     **({"url": x["url"]} if x["url"] else {}), **({"mesh:size": x["size"]} if x["size"] is not None else {})}
                    for x in e.attachments
                ]
            ordered.append(obj)
        doc = {
            "@context": AS2_CONTEXT,
            "type": "OrderedCollectionPage",
            "id": self.feed["feed_url"],
            "name": self.feed["title"],
            "summary": summary_html(self.feed["description"]),
            "url": self.feed["link"],
            "partOf": self.feed["first_url"] or self.feed["feed_url"],
            "updated": rfc3339(self.feed["updated"]),
            "orderedItems": ordered,
        }
        if self.feed.get("next_url"):
            doc["next"] = self.feed["next_url"]
        return doc

    def write(self, outfile, encoding):
        outfile.write(_json(self.document()))


GENERATORS = {"rss": RssFeedGenerator, "atom": AtomFeedGenerator, "json": JsonFeedGenerator, "as2": As2FeedGenerator}
