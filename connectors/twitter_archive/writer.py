"""Write archives shaped like X's "Download your archive" zip, for tests, the demo and the
benchmark. Deterministic: the same input gives the same bytes (fixed zip dates, member order).

    write_archive(path, account=account(...), tweets=[tweet(...), ...], dms=[conversation(...)],
                  group_dms=[...], parts=2)
"""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from collections.abc import Iterable
from pathlib import Path

ZIP_DATE = (2024, 1, 1, 0, 0, 0)


def legacy_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%a %b %d %H:%M:%S +0000 %Y")


def iso_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def account(user_id: str, username: str, display_name: str = "", email: str = "") -> dict:
    return {"account": {"email": email, "createdVia": "web", "username": username, "accountId": user_id,
                        "createdAt": "2012-03-04T05:06:07.000Z", "accountDisplayName": display_name or username}}


def tweet(
    tweet_id: str, when: dt.datetime, text: str, *, reply_to: tuple[str, str, str] | None = None,
    mentions: Iterable[tuple[str, str]] = (), media: Iterable[tuple[str, str]] = (), urls: Iterable[tuple[str, str]] = (),
) -> dict:
    """One element of tweets.js. reply_to = (status id, user id, screen name); mentions =
    (user id, screen name); media = (media id, "photo"|"video"); urls = (t.co url, real url)."""
    t = {
        "edit_info": {"initial": {"editTweetIds": [tweet_id], "editableUntil": iso_time(when), "editsRemaining": "5",
                                  "isEditEligible": True}},
        "retweeted": False, "source": '<a href="https://mobile.twitter.com" rel="nofollow">Twitter Web App</a>',
        "entities": {
            "hashtags": [], "symbols": [],
            "user_mentions": [
                {"name": name, "screen_name": name, "indices": ["0", str(len(name) + 1)], "id_str": uid, "id": uid}
                for uid, name in mentions
            ],
            "urls": [{"url": short, "expanded_url": real, "display_url": real.split("//", 1)[-1][:25],
                      "indices": ["0", "23"]} for short, real in urls],
        },
        "display_text_range": ["0", str(len(text))], "favorite_count": "0", "id_str": tweet_id, "truncated": False,
        "retweet_count": "0", "id": tweet_id, "created_at": legacy_time(when), "favorited": False,
        "full_text": text, "lang": "en",
    }
    if reply_to:
        status, user, name = reply_to
        t.update(in_reply_to_status_id_str=status, in_reply_to_status_id=status, in_reply_to_user_id=user,
                 in_reply_to_user_id_str=user, in_reply_to_screen_name=name)
    media = list(media)
    if media:
        items = []
        for media_id, kind in media:
            short = f"https://t.co/m{media_id[-6:]}"
            item = {"expanded_url": f"https://x.com/i/web/status/{tweet_id}/photo/1", "indices": ["0", "23"],
                    "url": short, "media_url": f"http://pbs.twimg.com/media/{media_id}.jpg", "id_str": media_id,
                    "id": media_id, "media_url_https": f"https://pbs.twimg.com/media/{media_id}.jpg",
                    "type": kind, "display_url": "pic.x.com/abc"}
            if kind == "video":
                item["media_url_https"] = f"https://pbs.twimg.com/ext_tw_video_thumb/{media_id}/pu/img/thumb.jpg"
                item["video_info"] = {"aspect_ratio": ["16", "9"], "variants": [
                    {"bitrate": "256000", "content_type": "video/mp4",
                     "url": f"https://video.twimg.com/ext_tw_video/{media_id}/pu/vid/480x270/low.mp4"},
                    {"bitrate": "2176000", "content_type": "video/mp4",
                     "url": f"https://video.twimg.com/ext_tw_video/{media_id}/pu/vid/1280x720/high.mp4"},
                    {"content_type": "application/x-mpegURL",
                     "url": f"https://video.twimg.com/ext_tw_video/{media_id}/pu/pl/playlist.m3u8"}]}
            items.append(item)
            t["full_text"] = f"{t['full_text']} {short}"
        t["entities"]["media"] = items
        t["extended_entities"] = {"media": items}
    return {"tweet": t}


def message(event_id: str, sender: str, when: dt.datetime, text: str, recipient: str | None = None,
            media_urls: Iterable[str] = ()) -> dict:
    create = {"reactions": [], "urls": [], "text": text, "mediaUrls": list(media_urls), "senderId": sender,
              "id": event_id, "createdAt": iso_time(when)}
    if recipient is not None:
        create = {"recipientId": recipient, **create}
    return {"messageCreate": create}


def conversation(conversation_id: str, messages: list[dict], *, members: Iterable[str] = (),
                 started: dt.datetime | None = None) -> dict:
    """A dmConversation; for a group, ``members`` adds the joinConversation event X writes."""
    members = list(members)
    events = list(messages)
    if members:
        events.append({"joinConversation": {"initiatingUserId": members[0], "participantsSnapshot": members,
                                            "createdAt": iso_time(started or dt.datetime(2020, 1, 1, tzinfo=dt.UTC))}})
    return {"dmConversation": {"conversationId": conversation_id, "messages": events}}


def _js(name: str, part: int, elements: Iterable[dict]) -> Iterable[str]:
    yield f"window.YTD.{name}.part{part} = ["
    first = True
    for element in elements:
        yield ("\n  " if first else ",\n  ") + json.dumps(element, indent=2, ensure_ascii=False,
                                                          separators=(",", " : ")).replace("\n", "\n  ")
        first = False
    yield "\n]"


def _member(zf: zipfile.ZipFile, name: str, chunks: Iterable[str]) -> None:
    info = zipfile.ZipInfo(name, ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w") as out:
        for chunk in chunks:
            out.write(chunk.encode("utf-8"))


def write_archive(
    path: str | Path, *, account: dict | None, tweets: Iterable[dict] = (), dms: Iterable[dict] = (),
    group_dms: Iterable[dict] = (), parts: int = 1, tweets_per_part: int | None = None,
    raw: dict[str, str] | None = None, media_files: dict[str, bytes] | None = None, prefix: str = "data/",
) -> Path:
    """Write the zip. Tweets are split into ``parts`` files (tweets.js, tweets-part1.js, ...), or
    into files of ``tweets_per_part`` (streamed: tweets may be a generator). ``raw`` adds members
    verbatim (name → text), e.g. a hand-broken file."""
    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        if account is not None:
            _member(zf, f"{prefix}account.js", _js("account", 0, [account]))
        if tweets_per_part:
            chunks = _chunked(tweets, tweets_per_part)
        else:
            tweets = list(tweets)
            size = -(-len(tweets) // parts) if tweets else 0
            chunks = [tweets[i * size:(i + 1) * size] for i in range(parts)] if tweets else []
        for n, chunk in enumerate(chunks):
            _member(zf, f"{prefix}tweets{'' if n == 0 else f'-part{n}'}.js", _js("tweets", n, chunk))
        dms, group_dms = list(dms), list(group_dms)
        if dms:
            _member(zf, f"{prefix}direct-messages.js", _js("direct_messages", 0, dms))
        if group_dms:
            _member(zf, f"{prefix}direct-messages-group.js", _js("direct_messages_group", 0, group_dms))
        for name, text in sorted((raw or {}).items()):
            _member(zf, name, [text])
        for name, data in sorted((media_files or {}).items()):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            zf.writestr(info, data, compress_type=zipfile.ZIP_STORED)
    return path


def _chunked(items: Iterable[dict], size: int) -> Iterable[list[dict]]:
    chunk: list[dict] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
