"""X (Twitter) API v2 sync with tweepy: the account's own posts, its mentions and its DMs.

    mesh_source add twitter --name Me --config user_id=… --secret bearer_token=…
    mesh_source add twitter --name Me --secret access_token=…     # OAuth 2 user context: + DMs

Each stream (``posts``, ``mentions``, ``dms``) keeps its own cursor: ``since_id`` (the newest
id stored), and while a pass is paging, ``next_token`` plus the ``newest`` id that becomes
``since_id`` once the last page is stored. One page is one batch, so a crash or a rate limit
mid-pass resumes at the page after the last stored one. ``dm_events`` has no ``since_id``:
pages are read newest-first until an event at or below the cursor appears.

Failures (``ConnectorError``): 429 → retry at ``x-rate-limit-reset`` (tweepy's
wait_on_rate_limit is off: a worker never sleeps); 401/403 → permanent, the Source needs
re-authorization; 5xx, timeouts and network errors → transient, retried with backoff. Deleted
or suspended users listed in a page's ``errors`` do not stop the page: their items keep the
numeric id with no handle.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import requests
import tweepy

from connectors import http
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
    profile_image,
    tweet_draft,
)

log = logging.getLogger(__name__)

STREAMS = ("posts", "mentions", "dms")
TWEET_FIELDS = "created_at,author_id,conversation_id,in_reply_to_user_id,referenced_tweets,entities,attachments,lang"
TWEET_EXPANSIONS = "author_id,in_reply_to_user_id,entities.mentions.username,attachments.media_keys"
USER_FIELDS = "username,name,protected,profile_image_url"
MEDIA_FIELDS = "media_key,type,url,preview_image_url,variants"
DM_FIELDS = "id,text,event_type,created_at,dm_conversation_id,sender_id,participant_ids,attachments"
DM_EXPANSIONS = "sender_id,participant_ids,attachments.media_keys"
DEFAULT_RESET = dt.timedelta(minutes=15)  # X's rate-limit window, when a 429 does not say


@dataclass(frozen=True)
class TwitterConfig:
    user_id: str = ""  # looked up from the token (GET /2/users/me) when empty
    api_base_url: str = "https://api.twitter.com"
    streams: str = ""  # comma-separated subset of posts,mentions,dms; default: all the token can read
    page_size: int = 100
    timeout: float = 30.0

    def __post_init__(self):
        if self.user_id and not ID_RE.match(self.user_id):
            raise ValueError("user_id must be the numeric X user id (not the @handle)")
        if not str(self.api_base_url).startswith(("http://", "https://")):
            raise ValueError("api_base_url must be an http(s) URL")
        if not 5 <= self.page_size <= 100:
            raise ValueError("page_size must be between 5 and 100 (X's limits)")
        unknown = {s.strip() for s in self.streams.split(",") if s.strip()} - set(STREAMS)
        if unknown:
            raise ValueError(f"unknown stream(s) {', '.join(sorted(unknown))}: use {', '.join(STREAMS)}")


class _Client(tweepy.Client):
    """tweepy's Client, pointed at ``api_base_url`` with a timeout, answering failures with
    ConnectorError. It never sleeps (tweepy itself has no base-URL option and no timeout, so
    ``request`` is replaced; the endpoints and their parameters stay tweepy's)."""

    def __init__(self, token: str, base_url: str, timeout: float):
        super().__init__(bearer_token=token, return_type=dict, wait_on_rate_limit=False)
        self.session = http.session()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, method, route, params=None, json=None, user_auth=False):
        headers = {"Authorization": f"Bearer {self.bearer_token}"}
        try:
            response = self.session.request(method, self.base_url + route, params=params, json=json,
                                            headers=headers, timeout=self.timeout)
        except requests.Timeout as exc:
            raise ConnectorError(f"X API timed out ({route}): {exc}") from None
        except requests.RequestException as exc:
            raise ConnectorError(f"X API unreachable ({route}): {exc}") from None
        ERRORS.raise_for(response, where=route)
        return response

    def call(self, method, *args, **kwargs) -> dict:
        try:
            body = method(*args, **kwargs)
        except ValueError as exc:  # a 2xx whose body is not JSON (a proxy's page, a cut-off body)
            raise ConnectorError(f"X API answered with something that is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ConnectorError("X API answered with JSON that is not an object")
        return body


class XErrors(http.HttpErrors):
    """X's words for the shared mapping; X names its reset time in ``x-rate-limit-reset``."""

    default_retry = DEFAULT_RESET
    reset_headers = ("x-rate-limit-reset",)

    def message(self, status: int, detail: str, where: str) -> str:
        if status in (401, 403):
            return (f"X refused the token (HTTP {status} on {where}: {detail}): needs re-authorization — add a new "
                    f"bearer_token or access_token (DMs need an OAuth 2 user-context access_token)")
        if status == 429:
            return f"X rate limit reached on {where}"
        if status >= 500 or status in (408, 409):
            return f"X API error HTTP {status} on {where}: {detail}"
        return f"X API refused the request: HTTP {status} on {where}: {detail}"

    def detail(self, response: requests.Response) -> str:
        try:
            body = response.json()
            if isinstance(body, dict):
                return str(body.get("detail") or body.get("title") or body.get("errors") or body)[:300]
        except ValueError:
            pass
        return response.text[:300]


ERRORS = XErrors()


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    username: str = ""
    protected: bool = False
    profile_image_url: str = ""

    def as_dict(self) -> dict:
        return {"id": self.id, "username": self.username, "protected": self.protected,
                "profile_image_url": self.profile_image_url}


class TwitterConnector(Connector):
    key = "twitter"
    label = "X (Twitter) API"
    channel = "twitter"
    Config = TwitterConfig
    pollable = True

    def __init__(self, config=None, secrets=None, *, context=None):
        super().__init__(config, secrets, context=context)
        self.user_token = bool(self.secrets.get("access_token"))
        self.token = self.secrets.get("access_token") or self.secrets.get("bearer_token")
        if not self.token:
            raise ConfigError("missing secret: bearer_token (app) or access_token (OAuth 2 user context)")
        chosen = [s.strip() for s in self.config.streams.split(",") if s.strip()]
        # An app bearer token cannot read DMs; ask for them explicitly to try anyway.
        self.streams = [s for s in STREAMS if s in chosen] or [s for s in STREAMS if s != "dms" or self.user_token]
        self._client: _Client | None = None
        self._owner: Owner | None = None

    @property
    def client(self) -> _Client:
        if self._client is None:
            self._client = _Client(self.token, self.config.api_base_url, self.config.timeout)
        return self._client

    def owner(self) -> Owner:
        """The account: from config user_id (GET /2/users/:id) or the token (GET /2/users/me)."""
        if self._owner is None:
            if self.config.user_id:
                body = self.client.call(self.client.get_user, id=self.config.user_id, user_fields=USER_FIELDS)
            else:
                body = self.client.call(self.client.get_me, user_fields=USER_FIELDS, user_auth=False)
            user = body.get("data")
            if not isinstance(user, dict) or not ID_RE.match(str(user.get("id", ""))):
                reason = "; ".join(str(e.get("detail") or e) for e in body.get("errors") or [] if isinstance(e, dict))
                raise ConnectorError(f"X account {self.config.user_id or '(from token)'} not found: {reason or body}"[:500],
                                     permanent=True)
            self._owner = Owner(str(user["id"]), str(user.get("username") or ""), bool(user.get("protected")),
                                profile_image(user.get("profile_image_url")))
        return self._owner

    def self_identities(self) -> list[tuple[str, str, str]]:
        owner = self.owner()
        return [("x", owner.id, handle(owner.username))]

    # -- fetch --------------------------------------------------------------------------------
    def fetch(self, cursor, *, since=None) -> Iterator[Batch]:
        cursor = copy.deepcopy(cursor) if isinstance(cursor, dict) else {}
        owner = self.owner()
        for stream in self.streams:
            state = cursor.get(stream) if isinstance(cursor.get(stream), dict) else {}
            pages = self._dm_pages(owner, state) if stream == "dms" else self._tweet_pages(stream, owner, state, since)
            for items, state, gap in pages:
                cursor[stream] = state
                yield Batch(items, copy.deepcopy(cursor), gap)

    def _tweet_pages(self, stream, owner: Owner, state: dict, since) -> Iterator[tuple[list[RawItem], dict, str | None]]:
        method = self.client.get_users_tweets if stream == "posts" else self.client.get_users_mentions
        state = dict(state)
        while True:
            params = dict(max_results=self.config.page_size, tweet_fields=TWEET_FIELDS, expansions=TWEET_EXPANSIONS,
                          user_fields=USER_FIELDS, media_fields=MEDIA_FIELDS)
            if since is not None:
                params["start_time"] = since
            elif state.get("since_id"):
                params["since_id"] = state["since_id"]
            if state.get("next_token"):
                params["pagination_token"] = state["next_token"]
            body = self.client.call(method, owner.id, **params)
            self._check_owner_errors(body, owner)
            tweets = [t for t in body.get("data") or [] if isinstance(t, dict)]
            includes = body.get("includes") if isinstance(body.get("includes"), dict) else {}
            users = _by(includes.get("users"), "id")
            media = _by(includes.get("media"), "media_key")
            items = [self._tweet_item(stream, t, users, media, owner) for t in tweets]
            meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
            ids = [str(t.get("id")) for t in tweets if ID_RE.match(str(t.get("id", "")))]
            if "newest" not in state:
                state["newest"] = _max_id(meta.get("newest_id"), *ids)
            next_token = meta.get("next_token") if tweets else None
            _advance(state, next_token)
            yield items, dict(state), None
            if not next_token:
                return

    def _dm_pages(self, owner: Owner, state: dict) -> Iterator[tuple[list[RawItem], dict, str | None]]:
        state = dict(state)
        floor = int(state.get("since_id") or 0)
        while True:
            params = dict(max_results=min(100, self.config.page_size), dm_event_fields=DM_FIELDS,
                          expansions=DM_EXPANSIONS, user_fields=USER_FIELDS, media_fields=MEDIA_FIELDS,
                          event_types="MessageCreate", user_auth=False)
            if state.get("next_token"):
                params["pagination_token"] = state["next_token"]
            body = self.client.call(self.client.get_direct_message_events, **params)
            events = [e for e in body.get("data") or [] if isinstance(e, dict)]
            includes = body.get("includes") if isinstance(body.get("includes"), dict) else {}
            users = _by(includes.get("users"), "id")
            media = _by(includes.get("media"), "media_key")
            fresh = [e for e in events if not ID_RE.match(str(e.get("id", ""))) or int(e["id"]) > floor]
            items = [self._dm_item(e, users, media, owner) for e in fresh]
            if "newest" not in state:
                state["newest"] = _max_id(*[str(e["id"]) for e in fresh if ID_RE.match(str(e.get("id", "")))])
            meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
            reached_cursor = len(fresh) < len(events)
            next_token = meta.get("next_token") if events and not reached_cursor else None
            _advance(state, next_token)
            yield items, dict(state), None
            if not next_token:
                return

    @staticmethod
    def _check_owner_errors(body: dict, owner: Owner) -> None:
        """A page with no data whose errors name the account itself: it is gone or suspended."""
        if body.get("data"):
            return
        for error in body.get("errors") or []:
            if isinstance(error, dict) and str(error.get("resource_id") or error.get("value") or "") == owner.id:
                raise ConnectorError(f"X account {owner.id}: {error.get('detail') or error.get('title')}"[:500],
                                     permanent=True)

    @staticmethod
    def _tweet_item(stream, tweet: dict, users: dict, media: dict, owner: Owner) -> RawItem:
        ids = {str(tweet.get("author_id", "")), str(tweet.get("in_reply_to_user_id", ""))}
        entities = tweet.get("entities") if isinstance(tweet.get("entities"), dict) else {}
        for m in entities.get("mentions") or []:
            if isinstance(m, dict):
                ids.add(str(m.get("id", "")))
                ids.update(uid for uid, u in users.items() if u.get("username") == m.get("username"))
        keys = ((tweet.get("attachments") or {}).get("media_keys") or []) if isinstance(tweet.get("attachments"), dict) else []
        payload = {
            "stream": stream, "tweet": tweet,
            "users": {uid: _user(users[uid]) for uid in sorted(ids) if uid in users},
            "media": [media[k] for k in keys if isinstance(k, str) and k in media],
            "owner": owner.as_dict(),
        }
        return RawItem(str(tweet.get("id", "")), payload)

    @staticmethod
    def _dm_item(event: dict, users: dict, media: dict, owner: Owner) -> RawItem:
        ids = {owner.id, str(event.get("sender_id", "")), *[str(u) for u in event.get("participant_ids") or []]}
        conv = str(event.get("dm_conversation_id", ""))
        if "-" in conv:
            ids.update(conv.split("-"))
        keys = ((event.get("attachments") or {}).get("media_keys") or []) if isinstance(event.get("attachments"), dict) else []
        payload = {
            "dm": event,
            "users": {uid: _user(users[uid]) for uid in sorted(ids) if uid in users},
            "media": [media[k] for k in keys if isinstance(k, str) and k in media],
            "owner": owner.as_dict(),
        }
        return RawItem(f"dm:{event.get('id', '')}", payload)

    # -- normalize ----------------------------------------------------------------------------
    def normalize(self, raw: RawItem) -> ActivityDraft:
        p = raw.payload
        if not isinstance(p, dict):
            raise BadItem("payload is not an object")
        owner = p.get("owner") if isinstance(p.get("owner"), dict) else {}
        owner_id = check_id(owner.get("id"), "owner id")
        users = p.get("users") if isinstance(p.get("users"), dict) else {}
        media = [_attachment(m) for m in p.get("media") or [] if isinstance(m, dict)]
        avatars = _avatars(users, owner_id, owner)
        if isinstance(p.get("tweet"), dict):
            return _tweet(p["tweet"], users, media, owner_id, owner, avatars)
        if isinstance(p.get("dm"), dict):
            return _dm(p["dm"], users, media, owner_id, avatars)
        raise BadItem("neither a tweet nor a direct message")


def _tweet(t: dict, users: dict, media: list[dict], owner_id: str, owner: dict, avatars: dict) -> ActivityDraft:
    tweet_id = check_id(t.get("id"), "tweet id")
    author = check_id(t.get("author_id"), "author_id")
    if not isinstance(t.get("text"), str):
        raise BadItem("tweet has no text")
    refs = {r.get("type"): str(r.get("id", "")) for r in t.get("referenced_tweets") or [] if isinstance(r, dict)}
    entities = t.get("entities") if isinstance(t.get("entities"), dict) else {}
    by_name = {u.get("username"): uid for uid, u in users.items()}
    mentions = []
    for m in entities.get("mentions") or []:
        if not isinstance(m, dict):
            continue
        uid = str(m.get("id") or by_name.get(m.get("username")) or "")
        if ID_RE.match(uid):
            mentions.append((uid, handle(m.get("username"))))
    reply_user = str(t.get("in_reply_to_user_id") or "")
    media_links = {u["url"] for u in entities.get("urls") or [] if isinstance(u, dict) and u.get("media_key") and u.get("url")}
    tweet = Tweet(
        id=tweet_id,
        created=parse_iso_time(t.get("created_at")),
        text=expand_text(t["text"], [u for u in entities.get("urls") or [] if isinstance(u, dict) and not u.get("media_key")],
                         media_links),
        author_id=author,
        author_handle=handle((users.get(author) or {}).get("username")),
        reply_to_status=refs.get("replied_to", ""),
        reply_to_user=check_id(reply_user, "in_reply_to_user_id") if reply_user else "",
        reply_to_handle=handle((users.get(reply_user) or {}).get("username")),
        conversation=str(t.get("conversation_id") or ""),
        mentions=mentions,
        attachments=media,
        retweet="retweeted" in refs,
        quoted=refs.get("quoted", ""),
        lang=str(t.get("lang") or ""),
        avatars=avatars,
    )
    return tweet_draft(tweet, owner_id=owner_id, owner_handle=handle(owner.get("username")),
                       owner_protected=bool(owner.get("protected")))


def _dm(e: dict, users: dict, media: list[dict], owner_id: str, avatars: dict) -> ActivityDraft:
    if e.get("event_type", "MessageCreate") != "MessageCreate":
        raise BadItem(f"not a message: {e.get('event_type')!r}")
    event_id = check_id(e.get("id"), "dm event id")
    sender = check_id(e.get("sender_id"), "sender_id")
    conv = str(e.get("dm_conversation_id") or "")
    if "-" in conv:
        others = [u for u in conv.split("-") if u != sender] or [sender]
        group = False
    else:
        others = [owner_id] if sender != owner_id else []
        group = True
    recipients = [(check_id(u, "participant id"), handle((users.get(u) or {}).get("username"))) for u in others]
    return dm_draft(
        event_id=event_id, created=parse_iso_time(e.get("created_at")), text=expand_text(str(e.get("text") or ""), ()),
        sender_id=sender, sender_handle=handle((users.get(sender) or {}).get("username")), recipients=recipients,
        conversation=conv or event_id, owner_id=owner_id, attachments=media, group=group, avatars=avatars,
    )


def _attachment(m: dict) -> dict:
    key = str(m.get("media_key") or "")
    return media_attachment(media_id=key.rsplit("_", 1)[-1], url=str(m.get("url") or m.get("preview_image_url") or ""),
                            kind=str(m.get("type") or ""), variants=m.get("variants"))


def _user(u: dict) -> dict:
    return {k: u[k] for k in ("username", "name", "protected", "profile_image_url") if k in u}


def _avatars(users: dict, owner_id: str, owner: dict) -> dict[str, str]:
    """User id → profile picture URL (``user.fields=profile_image_url``), the unsafe ones dropped."""
    found = {uid: profile_image(u.get("profile_image_url")) for uid, u in users.items() if isinstance(u, dict)}
    if not found.get(owner_id):
        found[owner_id] = profile_image(owner.get("profile_image_url"))
    return {uid: url for uid, url in found.items() if url}


def _by(rows, key: str) -> dict:
    return {str(r[key]): r for r in rows or [] if isinstance(r, dict) and key in r}


def _max_id(*ids) -> str | None:
    valid = [int(i) for i in ids if i is not None and ID_RE.match(str(i))]
    return str(max(valid)) if valid else None


def _advance(state: dict, next_token: str | None) -> None:
    """Move a stream's cursor past a stored page: keep paging with ``next_token``, or, at the
    end of a pass, raise ``since_id`` to the newest id the pass saw (only then, so stopping
    mid-pass never skips older pages)."""
    if next_token:
        state["next_token"] = next_token
        return
    newest = state.pop("newest", None)
    state.pop("next_token", None)
    if newest:
        state["since_id"] = _max_id(state.get("since_id"), newest)
