from __future__ import annotations

from django.urls import path
from django.views.generic import RedirectView

from . import views

urlpatterns = [
    path("", RedirectView.as_view(url="/contacts/", permanent=False)),
    path("contacts/", views.contact_list, name="contact-list"),
    path("contacts/<int:contact_id>/", views.contact_detail, name="contact-detail"),
    path("contacts/<int:contact_id>/since", views.contact_since, name="contact-since"),
    path("contacts/<int:contact_id>/name/", views.contact_rename_view, name="contact-rename"),
    path("contacts/<int:contact_id>/merge/", views.contact_merge_view, name="contact-merge"),
    path("contacts/<int:contact_id>/unmerge/", views.contact_unmerge_view, name="contact-unmerge"),
    path("contacts/<int:contact_id>/sms/", views.contact_sms_view, name="contact-sms"),
    path("activities/<int:activity_id>/body", views.activity_body, name="activity-body"),
    path("search/", views.search, name="search"),
    path("devices/", views.device_list, name="device-list"),
    path("devices/<int:device_id>/", views.device_detail, name="device-detail"),
    path("sources/", views.source_list, name="source-list"),
    path("sources/<int:source_id>/sync/", views.source_sync_now, name="source-sync"),
    path("sources/add/", views.source_add, name="source-add"),
    path("sources/<int:source_id>/edit/", views.source_edit_view, name="source-edit"),
    path("sources/<int:source_id>/enabled/", views.source_enabled_view, name="source-enabled"),
    path("sources/<int:source_id>/remove/", views.source_remove_view, name="source-remove"),
    path("sources/<int:source_id>/failures/dismiss/", views.source_failures_dismiss_view,
         name="source-failures-dismiss"),
    # The public lifestream; its feeds (/@<workspace>/feed.rss|.atom|.json) are in feed_urls.
    path("@<slug:workspace>/", views.lifestream, name="lifestream"),
]
