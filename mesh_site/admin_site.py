"""The admin site: for superusers only. The admin is not scoped by workspace (it lists every
tenant's contacts, messages and tokens), so ``is_staff`` alone does not open it; workspace
owners and members manage their own workspace from Mesh's pages."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm

from streams.throttle import login_throttle

SUPERUSERS_ONLY = (
    "The admin shows every workspace, so only superusers may use it. "
    "Your own workspace is managed from Mesh's pages: contacts, devices, sources and feeds."
)


class SuperuserAuthenticationForm(AdminAuthenticationForm):
    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if not user.is_superuser:
            raise forms.ValidationError(SUPERUSERS_ONLY, code="superusers_only")


class MeshAdminSite(admin.AdminSite):
    login_form = SuperuserAuthenticationForm
    login_template = "registration/admin_login.html"
    # Shown by templates/admin/base_site.html, which also links Mesh's favicon.
    site_header = "Mesh administration"
    site_title = "Mesh administration"
    index_title = "Every workspace"
    site_url = "/contacts/"

    def has_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def login(self, request, extra_context=None):
        # The same log-in lock as Mesh's own log-in page (streams/throttle.py).
        context = {**(extra_context or {}), "superusers_only": SUPERUSERS_ONLY}
        return login_throttle(super().login)(request, extra_context=context)
