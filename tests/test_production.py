"""The README's production recipe, run as written: DEBUG off, `collectstatic` into STATIC_ROOT,
`check --deploy`, then gunicorn alone on a loopback port, on this run's PostgreSQL and Redis.
The stylesheet and mesh.js come back hashed, compressed and cached for ever, and an HTML
email opens in its iframe in a real browser (headless Chromium), with no request failing.

Requests carry ``X-Forwarded-Proto: https`` as the TLS proxy in front of gunicorn would; the
session is made in the database (its cookie is Secure, which plain HTTP would not send back)."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core.management import call_command

from tests.fakes.browser import headless_chromium
from tests.fakes.subprocesses import stop_and_show_output, subprocess_database_url
from tests.run_suite import free_port

ROOT = Path(__file__).resolve().parent.parent
PROXY = {"X-Forwarded-Proto": "https"}
SECRET_KEY = "production-test-secret-key-" + "x" * 40

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def production_env(django_db_setup, tmp_path_factory):
    """The README's Production environment, on this run's database and Redis."""
    if not settings.REDIS_URL:
        pytest.fail("REDIS_URL is not set: run the suite with `make test`, which provides Redis")
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DJANGO_SETTINGS_MODULE")}
    env.update({
        "DATABASE_URL": subprocess_database_url(), "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": SECRET_KEY, "MESH_ENCRYPTION_KEYS": settings.MESH_ENCRYPTION_KEYS[0],
        "ALLOWED_HOSTS": "127.0.0.1", "CSRF_TRUSTED_ORIGINS": "https://127.0.0.1", "DEBUG": "0",
        "DB_CONN_MAX_AGE": "60", "STATIC_ROOT": str(tmp_path_factory.mktemp("production") / "static"), "MESH_CACHE_PREFIX": "mesh-production-test",
    })
    return env


@pytest.fixture(scope="module")
def gunicorn(production_env):
    """collectstatic, check --deploy and gunicorn, as the README says; the base URL. Started once
    for the module: it keeps no state of its own, and the tests' data is in the database."""
    for step in (["collectstatic", "--noinput"], ["check", "--deploy", "--fail-level", "WARNING"]):
        done = subprocess.run([sys.executable, "manage.py", *step], cwd=ROOT, env=production_env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    port = free_port()
    # The browser reaches gunicorn over plain HTTP with the proxy's header set, so its pages'
    # own POSTs (the time zone it sends once) carry an http:// Origin that a TLS proxy's never would.
    env = {**production_env, "CSRF_TRUSTED_ORIGINS": f"https://127.0.0.1,http://127.0.0.1:{port}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "mesh_site.wsgi", "-w", "2", "-b", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/accounts/login/", headers=PROXY, timeout=5)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.3)
        yield base
    finally:
        stop_and_show_output(proc)


@pytest.fixture
def demo_session(settings):
    """The demo's data and user in this run's database, and a logged-in session's key."""
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore

    call_command("mesh_demo", "--no-serve", "--workspace", "demo", "--username", "prod", "--password", "prod-pass-1",
                 stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))
    user = get_user_model().objects.get(username="prod")
    settings.SECRET_KEY = SECRET_KEY  # gunicorn's: the session is signed with it
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def test_gunicorn_alone_serves_hashed_compressed_static_files(gunicorn, production_env):
    page = requests.get(f"{gunicorn}/accounts/login/", headers=PROXY, timeout=10)
    assert page.status_code == 200
    css = re.search(r'href="(/static/streams/mesh\.[0-9a-f]{12}\.css)"', page.text).group(1)
    js = re.search(r'src="(/static/streams/mesh\.[0-9a-f]{12}\.js)"', page.text).group(1)
    collected = Path(production_env["STATIC_ROOT"])
    for url, content_type in ((css, "text/css"), (js, "text/javascript")):
        response = requests.get(gunicorn + url, headers={**PROXY, "Accept-Encoding": "gzip"}, timeout=10, stream=True)
        assert response.status_code == 200, url
        assert response.headers["Content-Type"].startswith(content_type)
        assert response.headers["Content-Encoding"] == "gzip"
        cache_control = response.headers["Cache-Control"]
        assert "immutable" in cache_control and "public" in cache_control
        assert int(re.search(r"max-age=(\d+)", cache_control).group(1)) >= 365 * 24 * 3600
        body = gzip.decompress(response.raw.read())
        assert body == (collected / url.removeprefix("/static/")).read_bytes()
    # The scripts that bring an email's iframe to life are in what was served.
    served_js = requests.get(gunicorn + js, headers=PROXY, timeout=10).text
    assert 'frame.setAttribute("src", frame.dataset.src)' in served_js
    assert requests.get(f"{gunicorn}/static/streams/nothing.css", headers=PROXY, timeout=10).status_code == 404


def test_an_html_email_opens_in_its_iframe_under_gunicorn(gunicorn, demo_session, monkeypatch):
    from streams.models import Activity

    email = (Activity.objects.filter(workspace__slug="demo", channel="email").exclude(html="")
             .order_by("-occurred_at").first())
    assert email is not None, "the demo has an HTML email"
    body = requests.get(f"{gunicorn}/activities/{email.pk}/body", headers=PROXY, timeout=10,
                        cookies={"sessionid": demo_session}, allow_redirects=False)
    assert body.status_code == 200 and body.headers["Content-Type"] == "text/html; charset=utf-8"
    assert body.headers["X-Frame-Options"] == "SAMEORIGIN"

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    failures: list[str] = []
    with headless_chromium() as browser:
        context = browser.new_context(extra_http_headers=PROXY)
        context.add_cookies([{"name": "sessionid", "value": demo_session, "url": gunicorn}])
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("console", lambda m: failures.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: failures.append(str(e)))
        page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(f"{gunicorn}/search/?q=weekly&channel=email")
        # The stylesheet applied: mesh.css lays the page out, the browser default would not.
        assert page.evaluate("[...document.styleSheets].some(s => s.href && s.href.includes('/static/streams/mesh.')"
                             " && s.cssRules.length > 10)")
        article = page.locator(f"#a{email.pk}")
        article.locator("summary", has_text="Show message").click()
        frame = page.frame_locator(f"#a{email.pk} iframe.mail")
        frame.locator("body *").first.wait_for()  # about:blank has an empty body; the message does not
        assert len(frame.locator("body").inner_text().strip()) > 0
    assert not failures, failures


def test_the_wsgi_entry_point_freezes_what_it_loaded(production_env):
    """gunicorn's entry point leaves the loaded application out of the collector's full passes
    (mesh_site.heap): every view module imported up front, the heap frozen."""
    probe = ("import gc, sys, mesh_site.wsgi; "
             "print(gc.get_freeze_count(), 'streams.views.contacts' in sys.modules, 'streams.views.sync' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=production_env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert int(out[0]) > 50_000 and out[1:] == ["True", "True"], out
