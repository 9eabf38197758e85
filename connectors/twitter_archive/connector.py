"""The official X "Download your archive" zip: ``mesh_import twitter_archive ARCHIVE.zip``.

Read: ``data/account.js`` (the owner: their user id becomes a self identity; the 2012–2018
layout has ``data/js/user_details.js`` instead), the owner's own posts, replies and retweets
(``data/tweets.js`` and ``tweets-partN.js``; ``tweet.js`` and ``tweet-partN.js`` before late
2022, wrapped as ``{"tweet": …}`` or not; ``data/js/tweets/YYYY_MM.js`` before 2018), and the
direct messages (``direct-messages.js``/``direct-message.js``, the ``-group`` files, their
parts). reader.py describes each generation. Media folders are never opened: media entities
become attachment metadata.

Files are streamed element by element (see reader.py), so a 2 GB archive needs the memory of
one element and a 1 MB buffer, plus a map of reply → parent ids for threading (a few bytes per
reply). The cursor is (file, element, message) after the last stored item; a crash resumes
there. Dedup keys are the API's (``x:<tweet id>``, ``x:dm:<event id>``), so an archive import
and a later API sync give one activity per item.
"""

from __future__ import annotations

import datetime as dt
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from connectors.base import (
    ActivityDraft,
    BadItem,
    Batch,
    ConfigError,
    Connector,
    ConnectorError,
    RawItem,
)
from connectors.twitter_common import (
    ID_RE,
    Tweet,
    check_id,
    dm_draft,
    expand_text,
    handle,
    media_attachment,
    parse_iso_time,
    parse_legacy_time,
    profile_image,
    tweet_draft,
)

from .reader import ELEMENT_SHAPES, Archive, ArchiveError, Broken, iter_elements, member_kind

# Errors a zip member can raise part-way through (a bad CRC, a cut deflate stream).
MEMBER_READ_ERRORS = (ArchiveError, zipfile.BadZipFile, zlib.error, EOFError, OSError)


@dataclass(frozen=True)
class ArchiveConfig:
    path: str = ""
    # The owner's user id, when account.js is missing from the archive.
    user_id: str = ""
    batch_size: int = 1000
    # Thread replies to the root of their chain inside the archive (one extra pass over the
    # tweets, reading only ids); off: the thread is the tweet replied to.
    thread_roots: bool = True

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError("batch_size must be positive")
        if self.user_id and not ID_RE.match(str(self.user_id)):
            raise ValueError("user_id must be the numeric X user id")


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    username: str = ""
    protected: bool = False
    avatar: str = ""  # data/profile.js: the owner's profile picture

    def as_dict(self) -> dict:
        return {"id": self.id, "username": self.username, "protected": self.protected, "avatar": self.avatar}


class TwitterArchiveConnector(Connector):
    key = "twitter_archive"
    label = "X (Twitter) archive"
    channel = "twitter"
    Config = ArchiveConfig
    importable = True

    # -- the archive --------------------------------------------------------------------------
    def _archive(self) -> Archive:
        if not self.config.path:
            raise ConfigError("no path: use mesh_import twitter_archive ARCHIVE.zip")
        path = Path(self.config.path)
        if not path.exists():
            raise ConnectorError(f"no such archive: {path}", permanent=True)
        try:
            archive = Archive(path)
        except ArchiveError as exc:
            raise ConnectorError(str(exc), permanent=True) from None
        if not archive.item_members() and not archive.find("account.js") and not archive.find("user_details.js"):
            archive.close()
            raise ConnectorError(f"{path.name} is not an X archive: it holds no data/tweets.js, tweet.js, "
                                 "direct-messages.js, account.js or data/js/tweets/ file", permanent=True)
        return archive

    def _owner(self, archive: Archive) -> Owner:
        protected = _is_protected(archive)
        # account.js: [{"account": {"accountId", "username"}}]; Grailbird's user_details.js:
        # {"id", "screen_name"}.
        for basename, read in (("account.js", _account_owner), ("user_details.js", _user_details_owner)):
            name = archive.find(basename)
            if not name:
                continue
            try:
                user_id, username = read(archive.load_small(name))
                return Owner(user_id, username, protected, _owner_avatar(archive))
            except (ArchiveError, BadItem, LookupError, TypeError) as exc:
                if not self.config.user_id:
                    raise ConnectorError(f"{basename} is unreadable ({exc}); give --config user_id=…",
                                         permanent=True) from None
        if self.config.user_id:
            return Owner(str(self.config.user_id), "", protected, _owner_avatar(archive))
        raise ConnectorError("the archive has no data/account.js: give the owner's id with --config user_id=…",
                             permanent=True)

    def self_identities(self) -> list[tuple[str, str, str]]:
        with self._archive() as archive:
            owner = self._owner(archive)
        return [("x", owner.id, handle(owner.username))]

    # -- fetch --------------------------------------------------------------------------------
    def fetch(self, cursor, *, since=None) -> Iterator[Batch]:
        """Yield batches of items in file order. Cursor: ``{"file": name, "element": n,
        "message": m}`` = everything before message m of element n of that file is stored."""
        cursor = cursor or {}
        with self._archive() as archive:
            owner = self._owner(archive)
            members = archive.item_members()
            roots = self._thread_roots(archive, members) if self.config.thread_roots else {}
            start = members.index(cursor["file"]) if cursor.get("file") in members else 0
            items: list[RawItem] = []
            position = dict(cursor) if cursor.get("file") in members else {}
            for name in members[start:]:
                skip_element = int(position.get("element", 0)) if position.get("file") == name else 0
                skip_message = int(position.get("message", 0)) if position.get("file") == name else 0
                kind = member_kind(name)
                try:
                    with archive.open(name) as fh:
                        for n, element in enumerate(iter_elements(fh, name=name, is_element=ELEMENT_SHAPES[kind])):
                            if n < skip_element:
                                continue
                            for m, item in enumerate(self._items(kind, name, n, element, owner, roots)):
                                if n == skip_element and m < skip_message:
                                    continue
                                if since is not None and not _after(item, since):
                                    continue
                                items.append(item)
                                if len(items) >= self.config.batch_size:
                                    position = {"file": name, "element": n, "message": m + 1}
                                    yield Batch(items, position)
                                    items = []
                            position = {"file": name, "element": n + 1, "message": 0}
                except MEMBER_READ_ERRORS as exc:
                    items.append(RawItem(f"{_short(name)}#file", {"_error": f"{name}: {exc}", "_file": name}))
                position = {"file": name, "element": 1 << 62, "message": 0}
            yield Batch(items, position or {"file": "", "element": 0, "message": 0})

    def _items(self, kind, name, n, element, owner: Owner, roots) -> Iterator[RawItem]:
        if isinstance(element, Broken):
            yield RawItem(f"{_short(name)}#{n}", {"_error": f"{name} element {n}: {element.reason}", "_text": element.text})
            return
        where = f"{_short(name)}#{n}"
        owner_data = owner.as_dict()
        if kind == "tweets":
            tweet = _unwrap(element)
            tweet_id = tweet.get("id_str") or tweet.get("id") if isinstance(tweet, dict) else None
            if not isinstance(tweet_id, str | int) or not ID_RE.match(str(tweet_id)):
                yield RawItem(where, {"_error": f"{name} element {n}: no tweet id", "_value": element})
                return
            payload = {"tweet": tweet, "owner": owner_data}
            root = roots.get(int(tweet_id))
            if root:
                payload["thread_root"] = str(root)
            yield RawItem(str(tweet_id), payload)
            return
        conv = element.get("dmConversation") if isinstance(element, dict) else None
        messages = conv.get("messages") if isinstance(conv, dict) else None
        if not isinstance(messages, list):
            yield RawItem(where, {"_error": f"{name} element {n}: not a dmConversation with messages", "_value": element})
            return
        group = kind == "direct-messages-group"
        members = sorted(_conversation_members(messages)) if group else []
        for m, message in enumerate(messages):
            event = message.get("messageCreate") if isinstance(message, dict) else None
            if event is None:
                continue  # joins, leaves, renames, reactions: not messages
            event_id = event.get("id") if isinstance(event, dict) else None
            if not isinstance(event_id, str | int) or not ID_RE.match(str(event_id)):
                yield RawItem(f"{where}.{m}", {"_error": f"{name} element {n} message {m}: no message id", "_value": message})
                continue
            payload = {"dm": event, "conversation": str(conv.get("conversationId", "")), "owner": owner_data}
            if group:
                payload["group"] = True
                payload["members"] = members
            yield RawItem(f"dm:{event_id}", payload)

    def _thread_roots(self, archive: Archive, members: list[str]) -> dict[int, int]:
        """reply id → root id, following in_reply_to chains inside the archive. One pass over the
        tweets keeping only reply → parent ids (two ints per reply)."""
        parent: dict[int, int] = {}
        for name in members:
            if member_kind(name) != "tweets":
                continue
            try:
                with archive.open(name) as fh:
                    found = _reply_pairs(fh, name)
            except MEMBER_READ_ERRORS:
                continue
            parent.update(found)
        roots: dict[int, int] = {}
        for tid in parent:
            chain = [tid]
            node = parent[tid]
            while node in parent and len(chain) < 10_000:
                if node in roots:
                    node = roots[node]
                    break
                chain.append(node)
                node = parent[node]
            for t in chain:
                roots[t] = node
        return roots

    # -- normalize ----------------------------------------------------------------------------
    def normalize(self, raw: RawItem) -> ActivityDraft:
        p = raw.payload
        if not isinstance(p, dict):
            raise BadItem("payload is not an object")
        if "_error" in p:
            raise BadItem(str(p["_error"]))
        owner = p.get("owner") or {}
        owner_id = check_id(owner.get("id"), "owner id")
        if "tweet" in p:
            return _tweet(p, owner_id, owner)
        if "dm" in p:
            return _dm(p, owner_id, owner)
        raise BadItem("neither a tweet nor a direct message")


def _tweet(p: dict, owner_id: str, owner: dict) -> ActivityDraft:
    tweet = p["tweet"]
    if not isinstance(tweet, dict):
        raise BadItem("tweet is not an object")
    tweet_id = check_id(tweet.get("id_str") or tweet.get("id"), "tweet id")
    entities = tweet.get("entities") if isinstance(tweet.get("entities"), dict) else {}
    extended = tweet.get("extended_entities") if isinstance(tweet.get("extended_entities"), dict) else {}
    media = extended.get("media") or entities.get("media") or []
    attachments, media_links = [], set()
    for item in media if isinstance(media, list) else []:
        if not isinstance(item, dict):
            continue
        attachments.append(media_attachment(
            media_id=str(item.get("id_str") or item.get("id") or ""), url=item.get("media_url_https") or item.get("media_url") or "",
            kind=str(item.get("type") or ""), variants=(item.get("video_info") or {}).get("variants"),
        ))
        if isinstance(item.get("url"), str):
            media_links.add(item["url"])
    text = tweet.get("full_text") if isinstance(tweet.get("full_text"), str) else tweet.get("text")
    if not isinstance(text, str):
        raise BadItem("tweet has no full_text")
    mentions = []
    for u in entities.get("user_mentions") or []:
        if isinstance(u, dict) and ID_RE.match(str(u.get("id_str") or u.get("id") or "")):
            mentions.append((str(u.get("id_str") or u.get("id")), handle(u.get("screen_name"))))
    reply_status = tweet.get("in_reply_to_status_id_str") or ""
    reply_user = tweet.get("in_reply_to_user_id_str") or ""
    # Grailbird tweets carry their author (the owner) with the account's state at the time.
    author = tweet.get("user") if isinstance(tweet.get("user"), dict) else {}
    t = Tweet(
        id=tweet_id,
        created=_created(tweet.get("created_at")),
        text=expand_text(text, entities.get("urls"), media_links),
        author_id=owner_id,
        author_handle=handle(owner.get("username")),
        reply_to_status=check_id(reply_status, "in_reply_to_status_id_str") if reply_status else "",
        reply_to_user=check_id(reply_user, "in_reply_to_user_id_str") if reply_user else "",
        reply_to_handle=handle(tweet.get("in_reply_to_screen_name")),
        conversation=str(p.get("thread_root") or reply_status or tweet_id),
        mentions=mentions,
        attachments=attachments,
        retweet=text.startswith("RT @"),
        lang=str(tweet.get("lang") or ""),
        avatars=_avatars(owner_id, owner),
    )
    return tweet_draft(t, owner_id=owner_id, owner_handle=handle(owner.get("username")),
                       owner_protected=bool(owner.get("protected")) or author.get("protected") is True)


def _dm(p: dict, owner_id: str, owner: dict) -> ActivityDraft:
    event = p["dm"]
    if not isinstance(event, dict):
        raise BadItem("message is not an object")
    event_id = check_id(event.get("id"), "message id")
    sender = check_id(event.get("senderId"), "senderId")
    conversation = str(p.get("conversation") or "")
    if p.get("group"):
        recipients = [(check_id(u, "member id"), "") for u in p.get("members") or []]
        if owner_id not in {u for u, _ in recipients}:
            recipients.append((owner_id, ""))
    else:
        recipients = [(check_id(event.get("recipientId"), "recipientId"), "")]
    text = event.get("text")
    if not isinstance(text, str):
        raise BadItem("message has no text")
    attachments = [
        media_attachment(media_id="", url=u) for u in event.get("mediaUrls") or [] if isinstance(u, str) and u
    ]
    return dm_draft(
        event_id=event_id, created=parse_iso_time(event.get("createdAt")), text=expand_text(text, event.get("urls")),
        sender_id=sender, sender_handle="", recipients=recipients, conversation=conversation or event_id,
        owner_id=owner_id, attachments=attachments, group=bool(p.get("group")), avatars=_avatars(owner_id, owner),
    )


def _conversation_members(messages: list) -> set[str]:
    """Everyone seen in a group conversation: senders, and the ids in join/leave events."""
    found: set[str] = set()
    for message in messages:
        if not isinstance(message, dict):
            continue
        for event in message.values():
            if not isinstance(event, dict):
                continue
            for key in ("senderId", "initiatingUserId"):
                value = event.get(key)
                if isinstance(value, str) and ID_RE.match(value):
                    found.add(value)
            for key in ("participantsSnapshot", "userIds"):
                for value in event.get(key) or []:
                    if isinstance(value, str) and ID_RE.match(value):
                        found.add(value)
    return found


def _is_protected(archive: Archive) -> bool:
    """Whether the account's tweets were protected when the archive was made."""
    name = archive.find("protected-history.js")
    if not name:
        return False
    try:
        rows = archive.load_small(name)
        events = [r.get("protectedHistory", {}) for r in rows if isinstance(r, dict)]
        events = [e for e in events if isinstance(e, dict) and isinstance(e.get("protectedAt"), str)]
        return bool(events) and max(events, key=lambda e: e["protectedAt"]).get("action") == "Protect"
    except ArchiveError:
        return False


def _after(item: RawItem, since) -> bool:
    """For --since: keep items at or after ``since`` (and anything that will fail, to record it)."""
    p = item.payload
    try:
        if "tweet" in p:
            return _created(p["tweet"].get("created_at")) >= since
        if "dm" in p:
            return parse_iso_time(p["dm"].get("createdAt")) >= since
    except (BadItem, AttributeError, TypeError):
        return True
    return True


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _reply_pairs(fh, name: str) -> dict[int, int]:
    pairs: dict[int, int] = {}
    for element in iter_elements(fh, name=name, is_element=ELEMENT_SHAPES["tweets"]):
        tweet = _unwrap(element)
        if isinstance(tweet, dict):
            tid, rid = tweet.get("id_str"), tweet.get("in_reply_to_status_id_str")
            if isinstance(tid, str) and isinstance(rid, str) and tid.isdigit() and rid.isdigit():
                pairs[int(tid)] = int(rid)
    return pairs


def _unwrap(element) -> dict | None:
    """The tweet of a tweets.js element: ``{"tweet": {...}}`` since 2020, the object itself before."""
    if not isinstance(element, dict):
        return None
    return element["tweet"] if isinstance(element.get("tweet"), dict) else element


def _created(value) -> dt.datetime:
    """``Wed Oct 10 20:19:24 +0000 2018``, or Grailbird's ``2013-01-31 20:41:41 +0000``."""
    if isinstance(value, str) and value[:4].isdigit():
        try:
            return dt.datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S %z").astimezone(dt.UTC)
        except ValueError:
            pass
    return parse_legacy_time(value)


def _avatars(owner_id: str, owner: dict) -> dict[str, str]:
    """The owner's profile picture (profile.js), the only one an archive has. Grailbird tweets
    name one too, on si0.twimg.com, which no longer serves them."""
    avatar = profile_image(owner.get("avatar"))
    return {owner_id: avatar} if avatar else {}


def _owner_avatar(archive: Archive) -> str:
    """``data/profile.js``: ``[{"profile": {"avatarMediaUrl": "https://pbs.twimg.com/…"}}]``."""
    name = archive.find("profile.js")
    if not name:
        return ""
    try:
        rows = archive.load_small(name)
        return profile_image(rows[0]["profile"].get("avatarMediaUrl"))
    except (ArchiveError, LookupError, TypeError, AttributeError):
        return ""  # a picture is not worth failing an import for


def _account_owner(rows) -> tuple[str, str]:
    account = rows[0]["account"]
    return check_id(account["accountId"], "accountId"), str(account.get("username") or "")


def _user_details_owner(details) -> tuple[str, str]:
    return check_id(details["id"], "id"), str(details.get("screen_name") or "")
