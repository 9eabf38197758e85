"""Feed tokens (services): create, rotate, revoke and resolve the tokens that give a tool a
relationship's feed without a login; and ``activity_erase``, which turns an item into a
tombstone that feeds keep showing for ``TOMBSTONE_DAYS``.

A token is 256 random bits, shown once, stored as a SHA-256 hash. It is bound to one contact
(or one device) in one workspace. After a merge, a token of the merged contact resolves to the
surviving root contact, whose timeline holds the merged history; after an unmerge it resolves
to its own contact again.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets as pysecrets
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from connectors.text import clean_text

from .conf import conf
from .crypto import token_hash
from .heatmap import heat_forget
from .ingest import scope_for
from .models import Activity, Contact, Device, FeedToken, InboundItem, TimelineEntry, Workspace
from .rawdb import prepared_fetch
from .search import search_forget
from .selectors import contact_subtree_ids
from .timelines import contact_summaries_refresh, device_summaries_refresh

TOKEN_PREFIX = "mf_"
# What a token we issued looks like; anything else is refused before a database lookup.
TOKEN_RE = re.compile(r"^mf_[A-Za-z0-9_-]{43}$")
MAX_LABEL = 100  # FeedToken.label's column
TOMBSTONE_DAYS = 30
FORMATS = ("rss", "atom", "json", "as2")
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
# last_used_at is written at most this often, so a poll stays a read.
LAST_USED_RESOLUTION = dt.timedelta(hours=1)


class FeedTokenError(ValueError):
    """A request about feed tokens that cannot be done as asked; the message is for the user."""


@dataclass(frozen=True, slots=True)
class FeedOwner:
    """What a valid token opens: a timeline (kind "c" or "d", owner id) in a workspace, at a tier."""

    token: FeedToken
    workspace: Workspace
    kind: str
    contact: Contact | None
    device: Device | None
    tier: str

    @property
    def owner_id(self) -> int:
        return self.contact.pk if self.contact is not None else self.device.pk


def public_base_url() -> str:
    """Absolute URLs printed by commands: MESH_PUBLIC_URL, else the development server's."""
    return (conf.PUBLIC_URL or DEFAULT_PUBLIC_URL).rstrip("/")


def feed_urls(token: str, *, base: str | None = None) -> dict[str, str]:
    base = (base or public_base_url()).rstrip("/")
    return {fmt: base + reverse("feed-token", kwargs={"token": token, "fmt": fmt}) for fmt in FORMATS}


def _new_token() -> str:
    return TOKEN_PREFIX + pysecrets.token_urlsafe(32)  # 256 bits


def _check_tier(tier: str) -> str:
    if tier not in FeedToken.Tier.values:
        raise FeedTokenError(f"unknown tier {tier!r}: use one of {', '.join(FeedToken.Tier.values)}")
    return tier


def _clean_label(label: str) -> str:
    label = " ".join(clean_text(str(label or "")).split())
    if len(label) > MAX_LABEL:
        raise FeedTokenError(f"a label has at most {MAX_LABEL} characters")
    return label


def _active_for(*, contact: Contact | None = None, device: Device | None = None):
    qs = FeedToken.objects.filter(revoked_at=None)
    if device is not None:
        return qs.filter(device=device)
    # A root contact's feed is also what the tokens of the contacts merged into it show.
    return qs.filter(contact_id__in=contact_subtree_ids(contact))


def feed_token_create(
    *,
    workspace: Workspace,
    contact: Contact | None = None,
    device: Device | None = None,
    tier: str = FeedToken.Tier.METADATA,
    label: str = "",
) -> tuple[FeedToken, str]:
    """A new token for a contact's (a merged contact: its surviving root's) or a device's feed,
    with a ``label`` saying what it is for. Returns the row and the token, which is shown only
    now."""
    _check_tier(tier)
    label = _clean_label(label)
    if (contact is None) == (device is None):
        raise FeedTokenError("a feed token is for one contact or one device")
    if contact is not None:
        if contact.workspace_id != workspace.pk:
            raise FeedTokenError("contact is not in this workspace")
        if contact.is_self:
            raise FeedTokenError("the workspace owner's own contact has no timeline to follow")
        contact = contact.root()
    if device is not None and device.workspace_id != workspace.pk:
        raise FeedTokenError("device is not in this workspace")
    token = _new_token()
    row = FeedToken.objects.create(
        workspace=workspace, contact=contact, device=device, tier=tier,
        token_hash=token_hash(token), token_prefix=token[:12], label=label,
    )
    return row, token


def feed_token_revoke(
    *, workspace: Workspace, contact: Contact | None = None, device: Device | None = None, token_id: int | None = None
) -> int:
    """Revoke every live token of a contact (with those of contacts merged into it) or device,
    or with ``token_id`` that one of them alone. Returns how many were revoked."""
    if (contact is None) == (device is None):
        raise FeedTokenError("revoke the tokens of one contact or one device")
    owner = contact if contact is not None else device
    if owner.workspace_id != workspace.pk:
        raise FeedTokenError("not in this workspace")
    tokens = _active_for(contact=contact, device=device)
    if token_id is not None:
        tokens = tokens.filter(pk=token_id)
    return tokens.update(revoked_at=timezone.now())


@transaction.atomic
def feed_token_rotate(
    *, workspace: Workspace, contact: Contact | None = None, device: Device | None = None, tier: str | None = None,
    label: str | None = None,
) -> tuple[FeedToken, str]:
    """Revoke the live tokens and issue one new one. Without ``tier`` (``label``) the new token
    keeps the tier (label) of the newest token it replaces (metadata, no label when there was
    none)."""
    if contact is not None and contact.workspace_id == workspace.pk:
        contact = contact.root()
    previous = _active_for(contact=contact, device=device).order_by("-created_at", "-pk").first() if (
        (contact is None) != (device is None)
    ) else None
    if tier is None:
        tier = previous.tier if previous else FeedToken.Tier.METADATA
    if label is None:
        label = previous.label if previous else ""
    _check_tier(tier)
    feed_token_revoke(workspace=workspace, contact=contact, device=device)
    return feed_token_create(workspace=workspace, contact=contact, device=device, tier=tier, label=label)


def token_select_sql(*, owner_columns: bool = False) -> str:
    """The live token by hash ($1), with its workspace and its contact or device. With
    ``owner_columns``, the row starts with the timeline the token names, ``kind`` and ``owner``
    (what a feed poll joins its timeline on); ``token_from_values`` reads the columns after them."""
    t, w, c, d = (m._meta.db_table for m in (FeedToken, Workspace, Contact, Device))
    owner = ("CASE WHEN t.device_id IS NULL THEN 'c' ELSE 'd' END AS kind, "
             "coalesce(t.device_id, t.contact_id) AS owner, ") if owner_columns else ""
    return f"""
        SELECT {owner}t.id, t.workspace_id, t.contact_id, t.device_id, t.tier, t.token_hash, t.token_prefix, t.created_at,
               t.last_used_at, w.slug, w.name, w.created_at AS w_created, c.name AS c_name, c.merged_into_id,
               c.workspace_id AS c_workspace_id, c.is_self, d.name AS d_name, d.workspace_id AS d_workspace_id
        FROM {t} t JOIN {w} w ON w.id = t.workspace_id
        LEFT JOIN {c} c ON c.id = t.contact_id LEFT JOIN {d} d ON d.id = t.device_id
        WHERE t.token_hash = $1 AND t.revoked_at IS NULL
    """


def _token_row(digest: str) -> FeedToken | None:
    """The live token with its workspace and contact or device, in one indexed query."""
    rows = prepared_fetch("mesh_feed_token_v1", token_select_sql(), [digest])
    if rows is None:
        return (
            FeedToken.objects.select_related("workspace", "contact", "device")
            .filter(token_hash=digest, revoked_at=None)
            .first()
        )
    return token_from_values(rows[0]) if rows else None


def token_from_values(values) -> FeedToken:
    """A FeedToken (with workspace, contact or device attached) from a ``token_select_sql`` row."""
    (pk, ws_id, contact_id, device_id, tier, digest, prefix, created, used, slug, ws_name, ws_created,
     c_name, c_merged, c_ws, c_self, d_name, d_ws) = values
    row = FeedToken(id=pk, workspace_id=ws_id, contact_id=contact_id, device_id=device_id, tier=tier,
                    token_hash=digest, token_prefix=prefix, created_at=created, last_used_at=used)
    row.workspace = Workspace(id=ws_id, slug=slug, name=ws_name, created_at=ws_created)
    if contact_id is not None:
        row.contact = Contact(id=contact_id, name=c_name, merged_into_id=c_merged, workspace_id=c_ws, is_self=c_self)
    if device_id is not None:
        row.device = Device(id=device_id, name=d_name, workspace_id=d_ws)
    return row


def owner_from_token(row: FeedToken) -> FeedOwner | None:
    """What a live token row opens (a merged contact's token: the surviving root contact)."""
    if row.device_id is not None:
        if row.device.workspace_id != row.workspace_id:
            return None
        return FeedOwner(row, row.workspace, "d", None, row.device, row.tier)
    contact = row.contact
    if contact.merged_into_id is not None:
        contact = contact.root()
    if contact.workspace_id != row.workspace_id:
        return None
    return FeedOwner(row, row.workspace, "c", contact, None, row.tier)


def feed_token_resolve(token: str) -> FeedOwner | None:
    """The live feed a token opens, or None for a malformed, unknown or revoked token (callers
    answer all three the same way). One indexed query; a merged contact costs one more per
    merge level."""
    if not token_well_formed(token):
        return None
    row = _token_row(token_hash(token))
    return owner_from_token(row) if row is not None else None


def token_well_formed(token) -> bool:
    return isinstance(token, str) and TOKEN_RE.match(token) is not None


def feed_token_touch(*, token: FeedToken, now: dt.datetime | None = None) -> None:
    """Record use, at most once per LAST_USED_RESOLUTION (a conditional UPDATE, so polling
    stays a read almost always)."""
    now = now or timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    FeedToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at=None) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
    token.last_used_at = now


def feed_tokens_for(*, contact: Contact | None = None, device: Device | None = None) -> list[FeedToken]:
    """Live tokens of a contact (with its merged contacts) or a device, newest first."""
    return list(_active_for(contact=contact, device=device).order_by("-created_at", "-pk"))


# --- erasing ---------------------------------------------------------------------------------


@transaction.atomic
def activity_erase(*, activity: Activity, now: dt.datetime | None = None) -> Activity:
    """Erase an item's content for good but keep the row and its timeline rows: pages and
    exports skip it, feeds show a tombstone for TOMBSTONE_DAYS so that mirrors delete their
    copy. The dedup key stays, so a re-import of the same item does not bring it back.
    Erasing twice keeps the first erase time."""
    now = now or timezone.now()
    Activity.objects.filter(pk=activity.pk, erased_at=None).update(
        subject="", text="", html="", url="", attachments=[], extra={}, raw=None, thread_key="",
        erased_at=now, updated_at=now,
    )
    search_forget(activity_ids=[activity.pk])
    owners = list(TimelineEntry.objects.filter(activity_id=activity.pk).values_list("kind", "owner_id"))
    heat_forget(owners=owners)
    contact_summaries_refresh(contact_ids=[owner for kind, owner in owners if kind == "c"])
    device_summaries_refresh(device_ids=[owner for kind, owner in owners if kind == "d"])
    if activity.external_id:
        # The pushed raw body (device API, webhooks) holds the same content.
        InboundItem.objects.filter(
            workspace_id=activity.workspace_id, external_id=activity.external_id,
            scope=scope_for(source=activity.source, device=activity.device),
        ).update(payload={})
    activity.refresh_from_db()
    return activity
