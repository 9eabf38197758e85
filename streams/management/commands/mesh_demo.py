"""Set up a demo: migrate, import the bundled sample data through the real connectors, create
a login, print the URLs, and serve on http://127.0.0.1:8000 (unless --no-serve).

Safe to run again: imports are idempotent and the login's password is reset and printed."""

from __future__ import annotations

import contextlib
import secrets
import sys
import unicodedata

from django.conf import settings
from django.core.management import call_command

from connectors.base import registry
from streams.cli import MeshCommand
from streams.demo import loaders as demo_loaders
from streams.identity import identity_mark_self
from streams.models import Contact, Device, Identity
from streams.services import (
    ServiceError,
    contact_merge,
    user_set_password,
    workspace_add_member,
)


class Command(MeshCommand):
    help = __doc__
    creates_workspace = True  # the demo sets its workspace up

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="set up and print, but do not start the server")
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="", help="default: a new random password each run")
        parser.add_argument("--addr", default="127.0.0.1:8000", help="address to serve on")

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
        workspace = self.workspace(options)
        if options["workspace"] == "default" and workspace.name == "Default":
            workspace.name = "Demo"
            workspace.save(update_fields=["name"])
        identity_mark_self(workspace=workspace, kind="email", value="me@mesh.example", display="Me")
        identity_mark_self(workspace=workspace, kind="phone", value="+14155550199", display="My phone")

        counts = {}
        for name, load in demo_loaders():
            counts[name] = load(workspace, self.note)
        self._merge_people(workspace)

        password = options["password"] or secrets.token_urlsafe(9)
        user = user_set_password(username=options["username"], password=password)
        if user.is_staff or user.is_superuser:
            # A workspace owner, as a real user would be: the admin spans every workspace and is
            # for superusers (`manage.py createsuperuser`). Demos before this one made a superuser.
            user.is_staff = user.is_superuser = False
            user.save(update_fields=["is_staff", "is_superuser"])
        workspace_add_member(workspace=workspace, user=user, role="owner")

        base = f"http://{options['addr']}"
        first = Contact.objects.filter(workspace=workspace, merged_into=None, is_self=False).order_by("-last_activity_at").first()
        device = Device.objects.filter(workspace=workspace).order_by("pk").first()
        urls = {
            "login": f"{base}/accounts/login/",
            "contacts": f"{base}/contacts/",
            "contact": f"{base}/contacts/{first.pk}/" if first else None,
            "device": f"{base}/devices/{device.pk}/" if device else None,
            "sources": f"{base}/sources/",
            # The demo user is no superuser: the admin is not part of its tour (null, as "contact"
            # and "device" are when there is none).
            "admin": None,
        }
        data = {"workspace": workspace.slug, "username": options["username"], "password": password, "urls": urls,
                "imported": counts, "connectors": registry.keys(), "database": settings.DATABASES["default"]["ENGINE"]}
        human = "\n".join([
            "", "Mesh demo is ready.", f"  log in at {urls['login']}",
            f"  username: {options['username']}", f"  password: {password}", "",
            *[f"  {k:<9} {v}" for k, v in urls.items() if v and k != "login"], "",
        ])
        self.emit(options, data, human)
        if options["no_serve"]:
            return
        self.stdout.flush()
        # runserver talks on stdout; with --json that must stay one document, so send it to stderr.
        redirect = contextlib.redirect_stdout(sys.stderr) if options["as_json"] else contextlib.nullcontext()
        with redirect:
            call_command("runserver", options["addr"], use_reloader=False, skip_checks=True)

    def _merge_people(self, workspace) -> None:
        """The demo's people appear by phone (calls, texts) and by email (meetings): merge each
        pair into one contact, the way a user would from the contact page."""
        for phone_ident in Identity.objects.filter(workspace=workspace, kind="phone", is_self=False).select_related("contact"):
            contact = phone_ident.contact
            if contact is None or contact.merged_into_id:
                continue
            first = contact.name.split()[0].lower() if contact.name else ""
            first = unicodedata.normalize("NFKD", first).encode("ascii", "ignore").decode()
            email_ident = (
                Identity.objects.filter(workspace=workspace, kind="email", is_self=False, value__startswith=first)
                .exclude(contact=contact).select_related("contact").first()
                if first else None
            )
            if email_ident and email_ident.contact and not email_ident.contact.merged_into_id:
                with contextlib.suppress(ServiceError):
                    contact_merge(workspace=workspace, target=contact, other=email_ident.contact)
