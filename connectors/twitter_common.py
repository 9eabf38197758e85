"""What the X API and the archive export have in common (``connectors.twitter`` and
``connectors.twitter_archive`` both import it; a connector imports no other connector): one
tweet or one direct message becomes the same ActivityDraft whichever way it arrived, so that an
item imported from the archive and later seen by the API is one activity (``x:<tweet id>``,
``x:dm:<event id>``).

Identities are numeric user ids; the @handle is only the display value (a renamed account stays
one contact). The owner's own posts are public (unless the account is protected); DMs and
other people's mentions are private.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass, field

from connectors.base import ActivityDraft, BadItem, ParticipantDraft
from connectors.times import NoOffset, parse_time

ID_RE = re.compile(r"^\d{1,20}$")
MONTHS = {m: i for i, m in enumerate(("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec").split(), 1)}
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
               ".webp": "image/webp", ".mp4": "video/mp4", ".mov": "video/quicktime"}
MAX_TEXT = 20_000


def status_url(tweet_id: str) -> str:
    # The id-only form works for every account and survives renames.
    return f"https://x.com/i/web/status/{tweet_id}"


def check_id(value, what: str) -> str:
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not ID_RE.match(text):
        raise BadItem(f"{what} must be a numeric id, got {value!r}"[:300])
    return text


def handle(username) -> str:
    return f"@{username}" if isinstance(username, str) and username else ""


def profile_image(value) -> str:
    """A profile picture's URL as X gives it (API ``profile_image_url``, the archive's
    ``avatarMediaUrl``), kept only when it is a plain https URL: pages put it in ``<img src>``."""
    if not isinstance(value, str) or len(value) > 500 or not value.startswith("https://"):
        return ""
    if any(ch.isspace() or ch in "\"'<>\\" or ord(ch) < 32 for ch in value):
        return ""
    return value


def parse_legacy_time(value) -> dt.datetime:
    """``Wed Oct 10 20:19:24 +0000 2018`` (the archive's tweets) → aware UTC."""
    try:
        _wd, mon, day, hms, tz, year = value.split()
        h, m, s = hms.split(":")
        sign = -1 if tz[0] == "-" else 1
        offset = dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5])) * sign
        when = dt.datetime(int(year), MONTHS[mon], int(day), int(h), int(m), int(s),
                           tzinfo=dt.timezone(offset))
    except (AttributeError, ValueError, KeyError, IndexError, TypeError):
        raise BadItem(f"created_at is not like 'Wed Oct 10 20:19:24 +0000 2018': {str(value)[:60]!r}") from None
    return when.astimezone(dt.UTC)


def parse_iso_time(value) -> dt.datetime:
    """``2019-03-04T12:34:56.789Z`` (API v2, the archive's DMs) → aware UTC."""
    if not isinstance(value, str):
        raise BadItem(f"created_at must be an ISO 8601 string, got {value!r}"[:200])
    try:
        return parse_time(value, epoch=False)
    except NoOffset:
        raise BadItem(f"created_at has no UTC offset: {value[:60]!r}") from None
    except ValueError:
        raise BadItem(f"created_at is not ISO 8601: {value[:60]!r}") from None


def media_attachment(*, media_id: str, url: str, kind: str = "", variants=None) -> dict:
    """One attachment (metadata only: Mesh never downloads media)."""
    best = ""
    if isinstance(variants, list):  # video: the highest bitrate mp4
        mp4 = [v for v in variants if isinstance(v, dict) and v.get("content_type") == "video/mp4" and v.get("url")]
        if mp4:
            best = max(mp4, key=_bitrate)["url"]
    link = best or url or ""
    name = link.rsplit("/", 1)[-1].split("?", 1)[0] if link else f"{kind or 'media'}-{media_id}"
    ext = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
    media_type = MEDIA_TYPES.get(ext) or ("video/mp4" if kind in ("video", "animated_gif") else "")
    return {"name": name, "mediaType": media_type, "url": link, "id": media_id}


def _bitrate(variant: dict) -> int:
    # The archive writes numbers as strings ("832000" would beat "2176000" compared as text).
    value = variant.get("bitrate") or variant.get("bit_rate") or 0
    return int(value) if str(value).isdigit() else 0


def expand_text(text: str, urls, strip: set[str] = frozenset()) -> str:
    """Unescape (X sends ``&amp;``), put the real link in place of each t.co link, and drop the
    t.co links that only point at attached media."""
    text = html.unescape(text or "")
    for u in urls or ():
        if not isinstance(u, dict) or not isinstance(u.get("url"), str) or not u["url"]:
            continue
        if u["url"] in strip:
            text = text.replace(u["url"], "")
        elif isinstance(u.get("expanded_url") or u.get("expanded"), str):
            text = text.replace(u["url"], u.get("expanded_url") or u.get("expanded"))
    for short in strip:
        text = text.replace(short, "")
    return text.strip()[:MAX_TEXT]


@dataclass(slots=True)
class Tweet:
    """A tweet reduced to what Mesh keeps, from either path."""

    id: str
    created: dt.datetime
    text: str
    author_id: str
    author_handle: str = ""
    reply_to_status: str = ""
    reply_to_user: str = ""
    reply_to_handle: str = ""
    conversation: str = ""
    mentions: list[tuple[str, str]] = field(default_factory=list)  # (user id, @handle)
    attachments: list[dict] = field(default_factory=list)
    retweet: bool = False
    quoted: str = ""
    lang: str = ""
    avatars: dict[str, str] = field(default_factory=dict)  # user id → profile picture URL


def tweet_draft(t: Tweet, *, owner_id: str, owner_handle: str = "", owner_protected: bool = False) -> ActivityDraft:
    own = t.author_id == owner_id
    avatar = t.avatars.get
    participants = [ParticipantDraft("author", "x", t.author_id, t.author_handle or (owner_handle if own else ""),
                                     avatar(t.author_id, ""))]
    seen = {t.author_id}
    if t.reply_to_user and t.reply_to_user not in seen:
        participants.append(ParticipantDraft("to", "x", t.reply_to_user, t.reply_to_handle, avatar(t.reply_to_user, "")))
        seen.add(t.reply_to_user)
    for user_id, display in t.mentions:
        if user_id not in seen:
            seen.add(user_id)
            participants.append(ParticipantDraft("mention", "x", user_id, display, avatar(user_id, "")))
    if own:
        verb, direction = ("share" if t.retweet else "post"), "out"
        visibility = "private" if owner_protected else "public"
    else:
        verb, direction, visibility = "mention", "in", "private"
        if owner_id not in seen:  # a mention we only know from the mentions timeline
            participants.append(ParticipantDraft("mention", "x", owner_id, owner_handle, avatar(owner_id, "")))
    extra = {}
    if t.reply_to_status:
        extra["in_reply_to"] = t.reply_to_status
    if t.quoted:
        extra["quoted"] = t.quoted
    if t.lang:
        extra["lang"] = t.lang
    return ActivityDraft(
        channel="twitter", verb=verb, direction=direction, occurred_at=t.created, dedup_key=f"x:{t.id}",
        text=t.text, url=status_url(t.id), thread_key=f"x:conv:{t.conversation or t.id}",
        participants=participants, visibility=visibility, attachments=t.attachments, extra=extra,
    )


def dm_draft(
    *, event_id: str, created: dt.datetime, text: str, sender_id: str, sender_handle: str, recipients: list[tuple[str, str]],
    conversation: str, owner_id: str, attachments: list[dict], group: bool = False, avatars: dict[str, str] | None = None,
) -> ActivityDraft:
    avatar = (avatars or {}).get
    participants = [ParticipantDraft("from", "x", sender_id, sender_handle, avatar(sender_id, ""))]
    for user_id, display in recipients:
        if user_id != sender_id:
            participants.append(ParticipantDraft("to", "x", user_id, display, avatar(user_id, "")))
    out = sender_id == owner_id
    return ActivityDraft(
        channel="twitter", verb="send" if out else "receive", direction="out" if out else "in",
        occurred_at=created, dedup_key=f"x:dm:{event_id}", text=text, thread_key=f"x:dm:{conversation}"[:255],
        participants=participants, visibility="private", attachments=attachments,
        extra={"group": True} if group else {},
    )
