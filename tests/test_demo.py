"""`make demo`'s command on the embedded default: SQLite, eager Celery, bundled data, no
servers. Runs in a subprocess with DATABASE_URL and REDIS_URL removed, and ends with a page
that serves and logs in."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.run_suite import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def first_demo(tmp_path_factory) -> tuple[dict, dict]:
    """(environment, JSON) of a first `mesh_demo --no-serve` on a new SQLite file, which the
    module's tests then run again: setting the demo up costs seconds."""
    var = tmp_path_factory.mktemp("demo") / "var"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env["MESH_VAR_DIR"] = str(var)
    first = subprocess.run([sys.executable, "manage.py", "mesh_demo", "--no-serve", "--json"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stderr
    return env, json.loads(first.stdout)


def test_demo_sets_up_on_sqlite(first_demo):
    env, data = first_demo
    assert set(data) >= {"workspace", "username", "password", "urls"}
    assert data["database"].endswith("sqlite3")
    assert data["imported"]["10_devices"]["Pixel"]["new"] > 200 and data["imported"]["10_devices"]["Pixel"]["failed"] == 0
    assert (Path(env["MESH_VAR_DIR"]) / "mesh.sqlite3").exists()
    contacts = subprocess.run([sys.executable, "manage.py", "mesh_contacts", "list", "--json"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
    people = json.loads(contacts.stdout)
    ana = [c for c in people if "phone:+14155550100" in c["identities"]]
    assert len(ana) == 1 and "email:ana@example.com" in ana[0]["identities"]


def test_demo_run_again_imports_nothing_new_and_serves_a_page_you_can_log_in_to(first_demo):
    env, first = first_demo
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "mesh_demo", "--json", "--addr", f"127.0.0.1:{port}", "--password", "demo-pass-123"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        data = json.loads(line)
        pixel, first_pixel = data["imported"]["10_devices"]["Pixel"], first["imported"]["10_devices"]["Pixel"]
        assert pixel["new"] == 0 and pixel["duplicate"] == first_pixel["fetched"]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                login_page = requests.get(data["urls"]["login"], timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "demo server did not start"
                time.sleep(0.3)
        assert login_page.status_code == 200
        session = requests.Session()
        page = session.get(f"{base}/accounts/login/", timeout=5)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = session.post(
            f"{base}/accounts/login/", timeout=10,
            data={"username": "demo", "password": "demo-pass-123", "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/accounts/login/"},
        )
        assert response.status_code == 200 and response.url.endswith("/contacts/")
        assert "Ana Souza" in response.text
        contact = session.get(data["urls"]["contact"], timeout=10)
        assert contact.status_code == 200
        # The tour, as the workspace owner the demo user is (no staff, no superuser): the
        # device, the sources, a feed token and its feed; the admin is not on it.
        assert data["urls"]["admin"] is None
        for page in ("device", "sources"):
            assert session.get(data["urls"][page], timeout=10).status_code == 200
        tokens_url = data["urls"]["contact"] + "feed-tokens/"
        tokens_page = session.get(tokens_url, timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', tokens_page.text).group(1)
        created = session.post(tokens_url, data={"action": "create", "tier": "subject", "csrfmiddlewaretoken": token},
                               headers={"Referer": tokens_url}, timeout=10)
        feed_url = re.search(r'(/feeds/[^"<\s]+\.atom)', created.text).group(1)
        assert requests.get(base + feed_url, timeout=10).status_code == 200
        admin = session.get(f"{base}/admin/streams/contact/", timeout=10, allow_redirects=False)
        assert admin.status_code == 302 and "/admin/login/" in admin.headers["Location"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_demo_user_is_a_workspace_owner_and_not_a_superuser(db, django_user_model):
    from django.core.management import call_command

    from streams.models import Membership

    # A demo from before made its user a superuser: running it again makes it an owner only.
    django_user_model.objects.create_superuser("demo", password="old-demo-password")
    call_command("mesh_demo", "--no-serve", "--password", "demo-pass-123",
                 stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))
    user = django_user_model.objects.get(username="demo")
    assert not user.is_superuser and not user.is_staff
    assert user.check_password("demo-pass-123")
    assert list(Membership.objects.filter(user=user).values_list("workspace__slug", "role")) == [("default", "owner")]
