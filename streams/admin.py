"""The admin's model pages. The site itself (mesh_site/admin_site.py) is for superusers only:
these pages list every workspace's rows."""

from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from .models import (
    Activity,
    Contact,
    Device,
    FeedToken,
    Identity,
    ImportFailure,
    InboundItem,
    Membership,
    Source,
    SyncRun,
    Workspace,
)
from .services import source_health


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "default_region", "created_at"]
    inlines = [MembershipInline]


class IdentityInline(admin.TabularInline):
    model = Identity
    fk_name = "contact"
    extra = 0
    fields = ["kind", "value", "display", "is_self"]
    readonly_fields = ["kind", "value"]


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["__str__", "workspace", "activity_count", "last_activity_at", "merged_into", "is_self"]
    list_filter = ["workspace", "is_self"]
    search_fields = ["name", "identities__value"]
    raw_id_fields = ["merged_into"]
    readonly_fields = ["activity_count", "channel_counts", "last_activity_at"]
    inlines = [IdentityInline]


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ["kind", "value", "display", "contact", "is_self", "workspace"]
    list_filter = ["kind", "is_self", "workspace"]
    search_fields = ["value", "display"]
    raw_id_fields = ["contact", "home_contact"]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "workspace", "token_prefix", "last_seen_at", "revoked_at"]
    readonly_fields = ["token_hash", "token_prefix", "state", "activity_count", "last_event_at"]
    actions = ["revoke"]

    @admin.action(description="Revoke the token of the selected devices")
    def revoke(self, request, queryset):
        queryset.filter(revoked_at=None).update(revoked_at=timezone.now())


class SyncRunInline(admin.TabularInline):
    model = SyncRun
    extra = 0
    ordering = ["-started_at"]
    readonly_fields = ["trigger", "started_at", "finished_at", "status", "fetched", "new", "duplicate", "failed", "error"]
    can_delete = False
    max_num = 0


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ["name", "connector", "workspace", "status", "healthy", "last_success_at", "last_attempt_at"]
    list_filter = ["connector", "status", "workspace"]
    readonly_fields = ["secrets_encrypted", "cursor", "last_error", "gap", "last_success_at", "last_attempt_at",
                       "sync_started_at", "health"]
    inlines = [SyncRunInline]

    @admin.display(boolean=True)
    def healthy(self, obj):
        return source_health(source=obj)["healthy"]

    @admin.display(description="health")
    def health(self, obj):
        h = source_health(source=obj)
        return "healthy" if h["healthy"] else "; ".join(h["problems"])


@admin.register(Activity)
class ActivityAdmin(admin.ModelAdmin):
    list_display = ["occurred_at", "channel", "verb", "direction", "subject", "workspace", "source"]
    list_filter = ["channel", "direction", "visibility", "workspace"]
    search_fields = ["dedup_key", "subject"]
    raw_id_fields = ["source", "device"]
    date_hierarchy = "occurred_at"


@admin.register(ImportFailure)
class ImportFailureAdmin(admin.ModelAdmin):
    list_display = ["external_id", "connector", "source", "device", "reason", "attempts", "last_seen_at", "resolved_at"]
    list_filter = ["connector", "workspace"]


@admin.register(InboundItem)
class InboundItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "connector", "scope", "state", "received_at", "processed_at"]
    list_filter = ["state", "connector"]


@admin.register(FeedToken)
class FeedTokenAdmin(admin.ModelAdmin):
    list_display = ["token_prefix", "contact", "device", "tier", "workspace", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["tier", "workspace"]
    raw_id_fields = ["contact", "device"]
    readonly_fields = ["token_hash", "token_prefix", "created_at", "last_used_at"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected feed tokens")
    def revoke(self, request, queryset):
        queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
