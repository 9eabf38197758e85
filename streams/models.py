"""Mesh's data model. PostgreSQL is the source of truth; every query is scoped by workspace.

Constraints live in the database, not only in code: ``(workspace, dedup_key)`` makes a
re-import a no-op, ``(workspace, kind, value)`` makes an identity one row, and
``(kind, owner, activity)`` makes timeline fan-out idempotent.

Long because: every model of the app is here, so the schema reads in one place (each area's
models in a section of their own).
"""

from __future__ import annotations

import datetime as dt
import json

from django.conf import settings
from django.db import models
from django.db.models import F
from django.utils import timezone

from .conf import conf


class Workspace(models.Model):
    """A team (CRM) or a person (lifestream). Users belong to workspaces through Membership."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    default_region = models.CharField(
        max_length=2, blank=True, help_text="ISO country code for phone numbers without +CC; blank: MESH_DEFAULT_REGION."
    )
    create_contacts_for_automated = models.BooleanField(
        default=False, help_text="Let automated mail/messages create new contacts (newsletters, no-reply senders)."
    )
    # Merge suggestions scoring at least this are merged without asking (None: never; see
    # streams.linking). Off by default: a wrong merge costs more than a missed one.
    auto_merge_score = models.FloatField(null=True, blank=True)
    # The zone pages show times in for members who chose none and on the public lifestream
    # (streams.timezones); blank: TIME_ZONE. Times are stored in UTC whatever it says.
    time_zone = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.slug

    @property
    def region(self) -> str:
        return (self.default_region or conf.DEFAULT_REGION).upper()


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        MEMBER = "member"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mesh_memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace}"


class UserPreference(models.Model):
    """A person's own display settings, whatever the workspace: the zone their pages show
    times in (blank: not chosen yet, so their workspace's until their browser says)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mesh_preference")
    time_zone = models.CharField(max_length=64, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.user}: {self.time_zone or 'no time zone'}"


class Contact(models.Model):
    """A person or organization. ``merged_into`` points at the contact that absorbed this one;
    only contacts with ``merged_into`` empty are shown and own timelines."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="contacts")
    name = models.CharField(max_length=300, blank=True)
    # Where ``name`` came from (streams.identity.NAME_SOURCES, strongest first): a name from a
    # weaker source never replaces it. Blank: named before sources were recorded.
    name_source = models.CharField(max_length=16, blank=True, default="")
    is_self = models.BooleanField(default=False, help_text="The workspace owner; gets no timeline of their own.")
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_children"
    )
    merged_at = models.DateTimeField(null=True, blank=True)
    # Set on the merged-in contact when its name won the merge: the survivor's name before it,
    # so that undoing this one merge gives the survivor its own name back.
    merge_undo = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Summary fields, maintained by merge_activities and contact merges.
    last_activity_at = models.DateTimeField(null=True, blank=True)
    activity_count = models.PositiveIntegerField(default=0)
    channel_counts = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            # The list's order (no activity last) and its filter: merged_into IS NULL as the index's
            # predicate, since as a column it kept PostgreSQL from reading the index in order
            models.Index(
                F("workspace"), F("is_self"), F("last_activity_at").desc(nulls_last=True), F("id").desc(),
                name="contact_list_idx", condition=models.Q(merged_into=None),
            )
        ]

    def __str__(self) -> str:
        return self.name or f"Contact {self.pk}"

    def root(self) -> Contact:
        contact = self
        while contact.merged_into_id is not None:
            contact = contact.merged_into
        return contact


class Identity(models.Model):
    """(kind, normalized value) → Contact. ``contact`` is where the identity lives now (merges
    move it); ``home_contact`` is where it was first attached, so an unmerge can move it back."""

    KIND_EMAIL = "email"
    KIND_PHONE = "phone"
    KIND_X = "x"

    # No lone workspace index: identity_unique leads with it, and with stale statistics the
    # planner used the lone one to scan a whole workspace per looked-up identity.
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="identities", db_index=False)
    kind = models.CharField(max_length=32)
    value = models.CharField(max_length=320)
    display = models.CharField(max_length=320, blank=True)
    # The time of the item ``display`` came from (None: set by hand or an address book): a
    # display seen in an older item never replaces it.
    display_seen_at = models.DateTimeField(null=True, blank=True)
    # Where ``display`` came from (as Contact.name_source): a weaker source never replaces it.
    display_source = models.CharField(max_length=16, blank=True, default="")
    # A profile picture's https URL where the source gives one (X); kept from the newest item,
    # as ``display``. Pages show it only from origins the CSP allows (streams.people).
    avatar_url = models.CharField(max_length=500, blank=True, default="")
    is_self = models.BooleanField(default=False)
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="identities")
    home_contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="home_identities"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [models.UniqueConstraint(fields=["workspace", "kind", "value"], name="identity_unique")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.value}"


class Device(models.Model):
    """A device in the mesh. Its ingest token is stored as a SHA-256 hash and can be revoked."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="devices")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=32, blank=True, help_text="phone, laptop, console, ...")
    token_hash = models.CharField(max_length=64, unique=True)
    token_prefix = models.CharField(max_length=12, blank=True, help_text="First characters, to tell tokens apart.")
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    # Latest known state (battery, location, ...) from its events.
    state = models.JSONField(default=dict, blank=True)
    activity_count = models.PositiveIntegerField(default=0)
    # Whether its places (fixes, region transitions) may reach the public lifestream, coarsened
    # (streams.places). Off by default: where someone is is private until they say otherwise.
    places_public = models.BooleanField(default=False)
    # What its token may read through the sync API (streams.selectors.sync): its own events,
    # every device's events, or the contacts with their timelines.
    sync_scope = models.CharField(
        max_length=8, default="own", choices=[("own", "own"), ("devices", "devices"), ("contacts", "contacts")]
    )
    # Every seq from 1 to this is held (stored raw); what is held above it is in DeviceSeqRange
    # (streams.devices).
    seq_high = models.BigIntegerField(default=0)
    # The base topic it publishes under on MQTT ("owntracks/ana/phone", "mesh/devices/ana-phone"):
    # how mesh_mqtt knows which device a message is from.
    mqtt_topic = models.CharField(max_length=200, blank=True, default="")
    # When the broker last delivered its MQTT last will: offline from then until it is heard again.
    offline_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["mqtt_topic"], condition=~models.Q(mqtt_topic=""),
                                               name="device_mqtt_topic_unique")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class DeviceSeqRange(models.Model):
    """Seqs ``first``..``last`` of a device, held above its ``seq_high`` + 1: ranges are
    disjoint and never adjacent (merged on write, under the device's row lock)."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="seq_ranges")
    first = models.BigIntegerField()
    last = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "first"], name="device_seq_range_unique")]

    def __str__(self) -> str:
        return f"device {self.device_id}: {self.first}-{self.last}"


class Source(models.Model):
    """A configured connector instance: what to fetch, with which secrets, and how it went."""

    class Status(models.TextChoices):
        OK = "ok"
        ERROR = "error"  # transient; retried
        NEEDS_ATTENTION = "needs_attention"  # permanent; a human must act
        AUTH_FAILED = "auth_failed"
        DISABLED = "disabled"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="sources")
    name = models.CharField(max_length=200)
    connector = models.CharField(max_length=64)
    config = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, help_text="Fernet token; see streams.crypto.")
    cursor = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OK)
    last_error = models.TextField(blank=True)
    gap = models.TextField(blank=True, help_text="What the connector reports missing; empty when complete.")
    interval_seconds = models.PositiveIntegerField(default=900, help_text="0: never polled, sync by hand only.")
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)
    sync_started_at = models.DateTimeField(null=True, blank=True)
    # Who holds the sync lock (host, pid, process start; see streams.locks) and, without Redis,
    # until when its lease runs unless renewed.
    sync_holder = models.CharField(max_length=300, blank=True, default="")
    sync_lease_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="source_name_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.connector})"

    def stale_after(self) -> dt.timedelta:
        return dt.timedelta(seconds=max(conf.STALE_AFTER_SECONDS, 3 * self.interval_seconds))


class SyncRun(models.Model):
    """One sync or import of a Source, with honest counts."""

    class Status(models.TextChoices):
        RUNNING = "running"
        OK = "ok"
        FAILED = "failed"
        INTERRUPTED = "interrupted"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=20, default="manual")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RUNNING)
    fetched = models.PositiveIntegerField(default=0)
    new = models.PositiveIntegerField(default=0)
    duplicate = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # Newest item time seen in this run: lag = finished_at - newest_item_at.
    newest_item_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["source", "-started_at"], name="syncrun_recent_idx")]

    def __str__(self) -> str:
        return f"run {self.pk} of source {self.source_id}: {self.status}"


class InboundItem(models.Model):
    """A raw item received by push (webhook, device API), stored before anything else is done
    with it so that nothing is lost if a worker or Redis goes away."""

    class State(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE)
    connector = models.CharField(max_length=64)
    # "device:<id>" or "source:<id>": the namespace in which external_id is unique.
    scope = models.CharField(max_length=80)
    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.CASCADE)
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.CASCADE)
    external_id = models.CharField(max_length=255)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "external_id"], name="inbound_unique")]
        indexes = [models.Index(fields=["state", "received_at"], name="inbound_pending_idx")]

    def __str__(self) -> str:
        return f"{self.scope}/{self.external_id} ({self.state})"


class Activity(models.Model):
    """The normalized item (Activity Streams vocabulary: actor via participants, verb, object)."""

    # No single-column indexes on workspace and source: the unique (workspace, dedup_key) and
    # (source, id) indexes lead with them, and a lone workspace index tempted the planner into
    # scanning a whole workspace.
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="activities", db_index=False)
    source = models.ForeignKey(
        Source, null=True, blank=True, on_delete=models.SET_NULL, related_name="activities", db_index=False
    )
    device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="activities", db_index=False
    )  # indexed by activity_device_idx (partial: mail, texts and posts have no device)
    connector = models.CharField(max_length=64, blank=True)
    external_id = models.CharField(max_length=255, blank=True)
    dedup_key = models.CharField(max_length=255)
    channel = models.CharField(max_length=16)
    verb = models.CharField(max_length=32)
    direction = models.CharField(max_length=4, default="none")
    occurred_at = models.DateTimeField()
    subject = models.TextField(blank=True)
    text = models.TextField(blank=True)
    html = models.TextField(blank=True)
    url = models.TextField(blank=True)
    thread_key = models.CharField(max_length=255, blank=True)
    visibility = models.CharField(max_length=8, default="private")
    attachments = models.JSONField(default=list, blank=True)
    automated = models.BooleanField(default=False)
    extra = models.JSONField(default=dict, blank=True)
    raw = models.JSONField(null=True, blank=True, help_text="The RawItem payload, for reprocessing.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # Set by streams.feed_tokens.activity_erase: the content is blanked, the row and its
    # timeline rows stay so that feeds can show a tombstone (RFC 6721) for 30 days.
    erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "activities"
        constraints = [models.UniqueConstraint(fields=["workspace", "dedup_key"], name="activity_dedup_unique")]
        indexes = [
            # Both partial: rows that are neither public nor from a source (most device events,
            # private mail) skip them on insert, and an index that ends in ``id`` but does not
            # start with it must not be there for ``id = $1`` lookups (foreign-key checks)
            # when statistics are stale: PostgreSQL then walked the whole source index per
            # inserted participant (two ingest processes ran at 150 activities/s).
            models.Index(
                fields=["workspace", "-occurred_at", "-id"], name="activity_public_idx",
                condition=models.Q(visibility="public"),
            ),
            models.Index(fields=["source", "id"], name="activity_source_idx", condition=models.Q(source__isnull=False)),
            models.Index(
                fields=["erased_at"], name="activity_erased_idx", condition=models.Q(erased_at__isnull=False)
            ),
            models.Index(fields=["device"], name="activity_device_idx", condition=models.Q(device__isnull=False)),
            # A device's fixes and named places newest first, for its visits (streams.places,
            # computed on read); partial: only those rows pay for it on insert.
            models.Index(
                fields=["device", "verb", "-occurred_at", "-id"], name="activity_place_idx",
                condition=models.Q(verb__in=["location", "place"], device__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.verb} {self.dedup_key}"


class Participant(models.Model):
    class Role(models.TextChoices):
        FROM = "from"
        TO = "to"
        CC = "cc"
        BCC = "bcc"
        AUTHOR = "author"
        MENTION = "mention"
        SUBJECT = "subject"
        SENDER = "sender"  # email Sender: when it differs from From
        REPLY_TO = "reply_to"  # email Reply-To: when it differs from From

    # No database FK constraints on the fan-out rows (participants, timeline entries): each
    # inserted row's check took a KEY SHARE lock on its activity and identity rows, which was
    # over a third of the ingest's database time (README, Design). Rows are written only in
    # the transaction that inserts their activity, and deleted through the ORM's cascades
    # (on_delete still applies: Django emulates it); tests/test_integrity.py checks that no
    # flow leaves an orphan.
    activity = models.ForeignKey(
        Activity, on_delete=models.CASCADE, related_name="participants", db_index=False, db_constraint=False
    )
    identity = models.ForeignKey(
        Identity, on_delete=models.PROTECT, related_name="participations", db_index=False, db_constraint=False
    )  # indexed by participant_identity_idx (identity, activity)
    role = models.CharField(max_length=8, choices=Role.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["activity", "identity", "role"], name="participant_unique")
        ]
        indexes = [models.Index(fields=["identity", "activity"], name="participant_identity_idx")]

    def __str__(self) -> str:
        return f"{self.role} {self.identity_id} of activity {self.activity_id}"


class TimelineEntry(models.Model):
    """A materialized timeline row (fan-out on write). A page is one index range scan on
    ``(kind, owner_id, occurred_at DESC, activity_id DESC)`` with a keyset cursor; no OFFSET."""

    class Kind(models.TextChoices):
        CONTACT = "c"
        DEVICE = "d"

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=1, choices=Kind.choices)
    owner_id = models.BigIntegerField(help_text="Contact id or Device id, by kind.")
    occurred_at = models.DateTimeField()
    activity = models.ForeignKey(
        Activity, on_delete=models.CASCADE, related_name="timeline_entries", db_index=False, db_constraint=False
    )  # indexed by timeline_activity_idx; no FK constraint (see Participant)
    # Copied from the activity so that channel/direction filters are served by the timeline.
    channel = models.CharField(max_length=16)
    direction = models.CharField(max_length=4)

    class Meta:
        verbose_name_plural = "timeline entries"
        constraints = [
            models.UniqueConstraint(fields=["kind", "owner_id", "activity"], name="timeline_unique")
        ]
        indexes = [
            models.Index(fields=["kind", "owner_id", "-occurred_at", "-activity"], name="timeline_keyset_idx"),
            models.Index(fields=["activity"], name="timeline_activity_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}{self.owner_id} @ {self.occurred_at:%Y-%m-%d %H:%M} → {self.activity_id}"


class Change(models.Model):
    """One row of the sync change log: an activity, contact or identity changed. Written only by
    database triggers (migration 0013), in the transaction of the change, so a committed change
    is always logged and an aborted one never. Readers order by ``(xid, id)`` and serve only
    rows of finished transactions (``streams.selectors.sync``); the object is served as it is
    now, so the log holds no copy of it."""

    class Kind(models.TextChoices):
        ACTIVITY = "a"
        CONTACT = "c"
        IDENTITY = "i"

    id = models.BigAutoField(primary_key=True)
    # pg_current_xact_id() of the writing transaction (0 on SQLite, whose single writer makes
    # ``id`` the commit order).
    xid = models.BigIntegerField(default=0)
    # Plain ids, no foreign keys: one check per logged row would cost ingest, and a tombstone
    # outlives its object.
    workspace_id = models.BigIntegerField()
    kind = models.CharField(max_length=1, choices=Kind.choices)
    object_id = models.BigIntegerField()
    device_id = models.BigIntegerField(null=True, blank=True, help_text="The activity's device when logged.")
    op = models.CharField(max_length=1, help_text="c created, u updated, e erased, d deleted, r renamed, "
                                                  "m merged/moved, n unmerged (streams.selectors.sync.OPS)")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["workspace_id", "xid", "id"], name="change_log_idx")]

    def __str__(self) -> str:
        return f"{self.kind}{self.object_id} {self.op} ({self.xid}, {self.id})"


class ChangeHorizon(models.Model):
    """How far a workspace's change log was pruned: a sync token at or below ``(xid, seq)`` may
    have lost rows, so it is answered 410 (reset) rather than with a gappy stream."""

    workspace_id = models.BigIntegerField(primary_key=True)
    xid = models.BigIntegerField()
    seq = models.BigIntegerField()
    pruned_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"workspace {self.workspace_id} pruned to ({self.xid}, {self.seq})"


class TsVectorField(models.Field):
    """PostgreSQL ``tsvector`` (plain text elsewhere; only written with SQL on PostgreSQL).
    Not django.contrib.postgres's field: that needs the app installed, and SQLite must migrate."""

    description = "full-text document"

    def db_type(self, connection):
        return "tsvector" if connection.vendor == "postgresql" else "text"


class SearchDocument(models.Model):
    """The full-text document of one activity (PostgreSQL; SQLite searches with LIKE).

    Kept off the ingest path on purpose: ``to_tsvector`` plus the GIN insert cost ~130 µs an
    activity, more than everything else ingest does for it. Ingest only queues the activity's
    id (``SearchPending``, same transaction); ``streams.search.search_index_pending`` turns
    queued ids into documents in batches, from a Celery task kicked after each commit and from
    the beat. Searches also test still-queued activities directly, so nothing is ever missing
    from results while the queue drains.
    """

    activity = models.OneToOneField(Activity, primary_key=True, on_delete=models.CASCADE, related_name="+")
    document = TsVectorField()

    def __str__(self) -> str:
        return f"search document of activity {self.activity_id}"


class SearchPending(models.Model):
    """An activity whose search document is missing or out of date (a durable queue: Redis
    keeps nothing on disk). No foreign key: a deleted activity's entry is simply dropped."""

    activity_id = models.BigIntegerField(primary_key=True)

    class Meta:
        verbose_name_plural = "search pending"

    def __str__(self) -> str:
        return f"activity {self.activity_id} waiting for its search document"


class ImportFailure(models.Model):
    """An item that could not be normalized: nothing is silently dropped. One row per item
    (scope, external_id); seeing it fail again bumps ``attempts``; it is marked resolved when a
    later run or a reprocess stores it."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE)
    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.CASCADE, related_name="failures")
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.CASCADE, related_name="failures")
    connector = models.CharField(max_length=64)
    scope = models.CharField(max_length=80)
    external_id = models.CharField(max_length=255)
    reason = models.TextField()
    payload = models.JSONField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=1)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "external_id"], name="failure_unique")]

    def __str__(self) -> str:
        return f"{self.scope}/{self.external_id}: {self.reason[:60]}"


class FeedToken(models.Model):
    """Access to one relationship's feed (a contact's, or a device's) without a login. The token
    is random (256 bits) and stored as a SHA-256 hash; revoking or rotating it is immediate."""

    class Tier(models.TextChoices):
        METADATA = "metadata"  # who, when, channel
        SUBJECT = "subject"  # plus the subject or first line
        FULL = "full"  # plus the sanitized content

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="feed_tokens")
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.CASCADE, related_name="feed_tokens")
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.CASCADE, related_name="feed_tokens")
    tier = models.CharField(max_length=8, choices=Tier.choices, default=Tier.METADATA)
    token_hash = models.CharField(max_length=64, unique=True)
    token_prefix = models.CharField(max_length=12, blank=True, help_text="First characters, to tell tokens apart.")
    label = models.CharField(max_length=100, blank=True, help_text="What the token is for, e.g. the reader using it.")
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(contact__isnull=False, device__isnull=True)
                | models.Q(contact__isnull=True, device__isnull=False),
                name="feedtoken_one_owner",
            )
        ]

    def __str__(self) -> str:
        owner = f"contact {self.contact_id}" if self.contact_id else f"device {self.device_id}"
        return f"{self.token_prefix}… ({owner}, {self.tier})"


class MergeSuggestion(models.Model):
    """Two top-level contacts that may be one person, with the evidence that says so (computed
    by streams.linking). A rejected pair is remembered and comes back only when evidence of a
    stronger kind than any it had appears (``strength``)."""

    class State(models.TextChoices):
        OPEN = "open"
        ACCEPTED = "accepted"
        REJECTED = "rejected"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="merge_suggestions")
    # The pair in id order (contact_a.pk < contact_b.pk), so that it is one row either way round.
    contact_a = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    contact_b = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()
    reasons = models.JSONField(default=list, blank=True)
    # The rank of the strongest kind of reason (streams.linking.KINDS) when last scored.
    strength = models.PositiveSmallIntegerField(default=0)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    auto = models.BooleanField(default=False, help_text="Merged by the workspace's auto-merge score, not by a person.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "contact_a", "contact_b"], name="suggestion_pair_unique")
        ]
        indexes = [models.Index(fields=["workspace", "state", "-score"], name="suggestion_open_idx")]

    def __str__(self) -> str:
        return f"contacts {self.contact_a_id} and {self.contact_b_id}: {self.score:.2f} ({self.state})"


# --- relationship strength and keep in touch (streams.ranking) --------------------------------


class ConversationDay(models.Model):
    """Relationship strength's aggregate: one conversation of a contact on one UTC day and
    channel (``conversation``: the thread key, '' for the channel as a whole) with its counted
    interactions (streams.ranking says which count). Folded from what ingest queues
    (RankBatch); the score is computed from these rows, so a chatty thread is one conversation a
    day however long."""

    # The natural key is the primary key: no id sequence and no second index to write per row
    # (the upsert was a tenth of a batch's time with both).
    pk = models.CompositePrimaryKey("contact", "day", "channel", "conversation")
    # No FK constraint (as the fan-out rows): written only with the timeline rows it follows.
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+", db_index=False,
                                db_constraint=False)
    day = models.DateField()
    channel = models.CharField(max_length=16)
    conversation = models.CharField(max_length=255, blank=True)
    inbound = models.PositiveIntegerField(default=0)
    outbound = models.PositiveIntegerField(default=0)
    mutual = models.PositiveIntegerField(default=0)  # calls and meetings: both ways by nature
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"contact {self.contact_id} {self.day} {self.channel} {self.conversation!r}"


class ContactStrength(models.Model):
    """A contact's relationship strength and the parts it is made of, as of ``computed_on``
    (computed from ConversationDay by streams.ranking; no row: nothing that counts yet)."""

    contact = models.OneToOneField(Contact, primary_key=True, on_delete=models.CASCADE, related_name="strength",
                                   db_constraint=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    score = models.PositiveSmallIntegerField(default=0)
    tier = models.CharField(max_length=8)
    conversations = models.PositiveIntegerField(default=0)  # conversation-days, all time
    last_30 = models.PositiveIntegerField(default=0)
    last_90 = models.PositiveIntegerField(default=0)
    last_365 = models.PositiveIntegerField(default=0)
    in_90 = models.PositiveIntegerField(default=0)  # of last_90: they wrote or called (or both ways)
    out_90 = models.PositiveIntegerField(default=0)
    in_365 = models.PositiveIntegerField(default=0)
    out_365 = models.PositiveIntegerField(default=0)
    channels_90 = models.JSONField(default=list, blank=True)
    channels_365 = models.PositiveSmallIntegerField(default=0)
    first_touch_at = models.DateTimeField(null=True, blank=True)
    last_touch_at = models.DateTimeField(null=True, blank=True)
    computed_on = models.DateField()

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "-score", "-contact"], name="strength_rank_idx"),
            # "Anything computed before today?", asked before every read: an index probe.
            models.Index(fields=["workspace", "computed_on"], name="strength_day_idx"),
            # The going-cold page: each tier's oldest last touches, and how many are overdue
            models.Index(fields=["workspace", "tier", "last_touch_at"], name="strength_cold_idx",
                         condition=models.Q(last_touch_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"contact {self.contact_id}: {self.score} ({self.tier})"


class QueuedArray(models.Field):
    """A column holding a list: a native array of ``element`` on PostgreSQL (the fold unnests it
    in SQL), JSON text on SQLite (read back in Python). Written only by streams.ranking."""

    def __init__(self, *args, element: str = "text", **kwargs):
        self.element = element
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        return name, path, args, {**kwargs, "element": self.element}

    def db_type(self, connection):
        return f"{self.element}[]" if connection.vendor == "postgresql" else "text"

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None or connection.vendor == "postgresql":
            return value
        return json.dumps(value, default=str)

    def from_db_value(self, value, expression, connection):
        return json.loads(value) if isinstance(value, str) else value


class RankBatch(models.Model):
    """What one ingest batch wrote to contacts' timelines that counts for relationship strength,
    as parallel lists (one element per contact and activity: the contact, when, the channel, the
    conversation, "in"/"out"/"both"), waiting to be folded into ConversationDay and the contacts
    re-scored by the beat or before a read (streams.ranking). Ingest pays one row per batch, not
    the aggregate's upsert; the fold needs nothing but these rows. Claimed per workspace in id
    order. No foreign keys: a durable queue."""

    id = models.BigAutoField(primary_key=True)
    workspace_id = models.BigIntegerField()
    interactions = models.PositiveIntegerField()  # the lists' length: folds claim up to a number of them
    contact_ids = QueuedArray(element="bigint")
    occurred_micros = QueuedArray(element="bigint")  # microseconds since the epoch, UTC
    channels = QueuedArray()
    conversations = QueuedArray()
    ways = QueuedArray()

    def __str__(self) -> str:
        return f"{self.interactions} interactions of workspace {self.workspace_id} waiting to count"


class KeepInTouch(models.Model):
    """A contact's own cadence: ideally every ``every_days``, at most ``at_most_days`` apart."""

    contact = models.OneToOneField(Contact, primary_key=True, on_delete=models.CASCADE, related_name="keep_in_touch")
    every_days = models.PositiveIntegerField()
    at_most_days = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"contact {self.contact_id}: every {self.every_days} d, at most {self.at_most_days} d"


class KeepInTouchDefault(models.Model):
    """A workspace's cadence for the contacts of one strength tier that have none of their own
    (no row: streams.ranking.DEFAULT_CADENCES)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False)
    tier = models.CharField(max_length=8)
    every_days = models.PositiveIntegerField(null=True, blank=True)  # None: no reminders for this tier
    at_most_days = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "tier"], name="keepintouchdefault_unique")]

    def __str__(self) -> str:
        return f"{self.workspace_id} {self.tier}: every {self.every_days} d, at most {self.at_most_days} d"


class ColdFeedToken(models.Model):
    """Access to a workspace's "going cold" list as a feed (JSON Feed, RSS) without a login:
    random, stored as a SHA-256 hash, revocable (as FeedToken, which names one timeline)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    token_prefix = models.CharField(max_length=12, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.token_prefix}… (going cold, workspace {self.workspace_id})"
