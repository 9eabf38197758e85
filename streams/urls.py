from __future__ import annotations

from django.urls import path
from django.views.generic import RedirectView

from .views import (
    attachments,
    contacts,
    devices,
    lifestream,
    linking,
    preferences,
    ranking,
    search,
    sources,
)
from .views.sync import sync_changes

# Mesh → device: the changes a device token may see (streams/selectors/sync.py). Mounted first
# by the site: devices poll it many times a minute, and resolving it after the ~40 page
# patterns cost a tenth of an up-to-date poll.
sync_urlpatterns = [path("api/v1/sync", sync_changes, name="sync")]

urlpatterns = [
    path("", RedirectView.as_view(url="/contacts/", permanent=False)),
    path("contacts/", contacts.contact_list, name="contact-list"),
    path("contacts/<int:contact_id>/", contacts.contact_detail, name="contact-detail"),
    path("contacts/<int:contact_id>/since", contacts.contact_since, name="contact-since"),
    path("contacts/<int:contact_id>/name/", contacts.contact_rename_view, name="contact-rename"),
    path("contacts/<int:contact_id>/merge/", contacts.contact_merge_view, name="contact-merge"),
    path("contacts/<int:contact_id>/unmerge/", contacts.contact_unmerge_view, name="contact-unmerge"),
    path("contacts/<int:contact_id>/sms/", contacts.contact_sms_view, name="contact-sms"),
    path("contacts/suggestions/", linking.suggestion_list, name="suggestion-list"),
    path("contacts/suggestions/refresh/", linking.suggestions_refresh_view, name="suggestion-refresh"),
    path("contacts/suggestions/<int:suggestion_id>/reject/", linking.suggestion_reject_view, name="suggestion-reject"),
    path("contacts/<int:contact_id>/cadence/", ranking.contact_cadence_view, name="contact-cadence"),
    path("cold/", ranking.cold_list, name="cold-list"),
    path("cold/cadences/", ranking.tier_cadences_view, name="tier-cadences"),
    path("activities/<int:activity_id>/body", contacts.activity_body, name="activity-body"),
    path("activities/<int:activity_id>/attachments/<int:index>", attachments.activity_attachment,
         name="activity-attachment"),
    path("search/", search.search, name="search"),
    path("devices/", devices.device_list, name="device-list"),
    path("devices/<int:device_id>/", devices.device_detail, name="device-detail"),
    path("devices/<int:device_id>/places/public", devices.device_places_public_view, name="device-places-public"),
    path("settings/time-zone/", preferences.time_zone_settings, name="time-zone"),
    path("sources/", sources.source_list, name="source-list"),
    path("sources/<int:source_id>/sync/", sources.source_sync_now, name="source-sync"),
    path("sources/add/", sources.source_add, name="source-add"),
    path("sources/<int:source_id>/edit/", sources.source_edit_view, name="source-edit"),
    path("sources/<int:source_id>/enabled/", sources.source_enabled_view, name="source-enabled"),
    path("sources/<int:source_id>/remove/", sources.source_remove_view, name="source-remove"),
    path("sources/<int:source_id>/failures/dismiss/", sources.source_failures_dismiss_view,
         name="source-failures-dismiss"),
    # The public lifestream; its feeds (/@<workspace>/feed.rss|.atom|.json) are in feed_urls.
    path("@<slug:workspace>/", lifestream.lifestream, name="lifestream"),
]
