from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class MeshAdminConfig(AdminConfig):
    """The admin with Mesh's site (mesh_site/admin_site.py): superusers only."""

    default_site = "mesh_site.admin_site.MeshAdminSite"
