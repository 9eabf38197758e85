"""What surrounds every page (issue 18): breadcrumbs that name the contact or device, the
contact list's search placeholder shown whole, the admin branded as Mesh's, and a favicon on
Mesh's pages and the admin's."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from tests.factories import PASSWORD, ana, ingest_mail, mail
from tests.fakes.browser import headless_chromium

FAVICON = '<link rel="icon" href="/static/streams/favicon.svg" type="image/svg+xml">'


def crumbs(page: str) -> str:
    return re.search(r'<p class="crumbs">(.*?)</p>', page, re.S).group(1)


def test_the_contact_page_breadcrumb_names_the_contact_not_the_workspace(member_client, workspace):
    ingest_mail(workspace, [mail(1)])
    contact = ana(workspace)
    trail = crumbs(member_client.get(reverse("contact-detail", args=[contact.pk])).content.decode())
    assert f'<bdi aria-current="page">{contact}</bdi>' in trail
    assert workspace.name not in trail


def test_the_device_page_breadcrumb_names_the_device(member_client, workspace, device):
    trail = crumbs(member_client.get(reverse("device-detail", args=[device.pk])).content.decode())
    assert f'<bdi aria-current="page">{device.name}</bdi>' in trail
    assert workspace.name not in trail


def test_every_page_links_the_svg_favicon(member_client, workspace):
    assert FAVICON in member_client.get(reverse("contact-list")).content.decode()
    path = finders.find("streams/favicon.svg")
    assert path is not None
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox") == "0 0 32 32"
    assert not list(root.iter("{http://www.w3.org/2000/svg}script"))


def test_the_admin_is_branded_with_its_favicon(client, django_user_model):
    login = client.get("/admin/login/").content.decode()
    assert "<title>Log in | Mesh administration</title>" in login
    assert re.search(r'<div id="site-name"><a href="/admin/">Mesh administration</a></div>', login)
    assert FAVICON in login
    client.force_login(django_user_model.objects.create_superuser("root", password=PASSWORD))
    index = client.get("/admin/").content.decode()
    assert "<title>Every workspace | Mesh administration</title>" in index
    assert "Mesh administration</a>" in index and "Django administration" not in index
    assert FAVICON in index


# The placeholder's width in the field's font, against the room inside the field.
PLACEHOLDER_FIT = """() => {
  const field = document.querySelector('#q');
  const style = getComputedStyle(field);
  const context = document.createElement('canvas').getContext('2d');
  context.font = style.font;
  const room = field.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return {text: context.measureText(field.placeholder).width, room: room};
}"""


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1280, 390])
def test_the_contact_search_placeholder_is_not_cut_off(live_server, workspace, member, width):
    ingest_mail(workspace, [mail(1)])
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": 800})
        page.set_default_timeout(10_000)
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", member.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/contacts/")
        fit = page.evaluate(PLACEHOLDER_FIT)
        assert fit["text"] > 50  # measured: the placeholder is there
        assert fit["text"] <= fit["room"], fit
