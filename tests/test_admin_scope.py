"""The admin spans every workspace, so it is for superusers only: a staff user, even one with
every model permission, sees no tenant's data in it and is told why."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.utils.html import escape

from mesh_site.admin_site import SUPERUSERS_ONLY
from streams.models import Contact

PASSWORD = "correct horse battery"


@pytest.fixture
def other_tenants_contact(other_workspace):
    return Contact.objects.create(workspace=other_workspace, name="Globex Secret Person")


@pytest.fixture
def staff(member):
    member.is_staff = True
    member.save()
    member.user_permissions.set(Permission.objects.filter(content_type__app_label="streams"))
    return member


@pytest.mark.parametrize("path", ["/admin/", "/admin/streams/contact/", "/admin/streams/activity/",
                                  "/admin/streams/feedtoken/", "/admin/streams/workspace/"])
def test_a_staff_user_who_is_not_a_superuser_sees_no_tenant_in_the_admin(client, staff, other_tenants_contact,
                                                                         path):
    client.force_login(staff)
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    page = client.get(response["Location"])
    assert page.status_code == 200
    text = page.content.decode()
    assert escape(SUPERUSERS_ONLY) in text
    assert "Globex Secret Person" not in text and "globex" not in text


def test_a_staff_user_cannot_log_in_to_the_admin_and_is_told_why(client, staff, other_tenants_contact):
    response = client.post("/admin/login/", {"username": "alice", "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 200
    assert response.context["form"].errors["__all__"] == [SUPERUSERS_ONLY]
    assert client.get(f"/admin/streams/contact/{other_tenants_contact.pk}/change/").status_code == 302


def test_a_superuser_uses_the_admin_across_workspaces(client, django_user_model, other_tenants_contact):
    root = django_user_model.objects.create_superuser("root", password=PASSWORD)
    client.force_login(root)
    response = client.get("/admin/streams/contact/")
    assert response.status_code == 200 and "Globex Secret Person" in response.content.decode()
