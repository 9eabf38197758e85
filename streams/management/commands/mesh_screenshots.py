"""Regenerate the README's screenshots: set the demo up in a throw-away SQLite database (in a
temporary directory, whatever DATABASE_URL says), serve it, log in with headless Chromium and
write PNGs of the contact page, a text conversation, the device page, the sources page and the
public lifestream at each width (default 1280 and 390 px) into --out (default docs/screenshots/),
and the contact page in dark mode at the widest (``contact-1280-dark.png``).

Needs Playwright for Python (in `pip install -e '.[dev]'`) and Debian's `chromium`; nothing is
downloaded. Each PNG is the first screenful (the viewport), which keeps it small."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management import CommandError

from streams.cli import USAGE_ERROR, MeshCommand

# Screen heights that go with each width: a laptop's, and a phone's (iPhone 12-15 is 390x844).
HEIGHTS = {390: 844}
DEFAULT_HEIGHT = 900
PAGES = ("contact", "conversation", "device", "sources", "lifestream")
DARK_PAGES = ("contact",)  # also shot in prefers-color-scheme: dark, at the widest width
SERVER_START_SECONDS = 240  # migrate + the demo import on SQLite, on a slow shared machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; ValueError when the file is no PNG."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


class Command(MeshCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--out", default=str(Path(settings.BASE_DIR) / "docs" / "screenshots"),
                            help="folder for the PNGs (default: docs/screenshots/)")
        parser.add_argument("--widths", default="1280,390", help="comma list of viewport widths in CSS pixels")
        parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium program")

    def handle(self, *args, **options):
        try:
            widths = [int(w) for w in options["widths"].split(",") if w.strip()]
        except ValueError:
            raise CommandError(f"--widths: expected numbers like 1280,390, got {options['widths']!r}",
                               returncode=USAGE_ERROR) from None
        if not widths or any(not 200 <= w <= 4000 for w in widths):
            raise CommandError("--widths: each width must be between 200 and 4000", returncode=USAGE_ERROR)
        if not Path(options["chromium"]).exists():
            raise CommandError(f"no Chromium at {options['chromium']} (apt-get install chromium, or --chromium PATH)")
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise CommandError("mesh_screenshots needs Playwright: pip install -e '.[dev]'") from None
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="mesh-screenshots-") as var:
            server, demo = self._serve_demo(Path(var), options["workspace"])
            try:
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path=options["chromium"], headless=True,
                                                args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
                    try:
                        files = self._shoot(browser, demo, widths, out)
                    finally:
                        browser.close()
            finally:
                server.send_signal(signal.SIGINT)
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    server.kill()
        total = sum(f["bytes"] for f in files)
        self.emit(options, {"out": str(out), "files": files},
                  "\n".join(f"{f['path']}  {f['width']}x{f['height']}  {f['bytes'] // 1024} KB" for f in files)
                  + f"\n{len(files)} screenshots, {total // 1024} KB")

    def _serve_demo(self, var: Path, workspace: str) -> tuple[subprocess.Popen, dict]:
        """``mesh_demo`` on a SQLite file in ``var``, served on a free port: the process and
        its JSON (URLs, login)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "DATABASE_URL_FILE", "REDIS_URL", "REDIS_URL_FILE")}
        # The embedded default, with DEBUG on so that runserver serves the static files.
        env.update(MESH_VAR_DIR=str(var), DEBUG="1", PYTHONUNBUFFERED="1")
        addr = f"127.0.0.1:{free_port()}"
        password = secrets.token_urlsafe(12)
        self.note(f"setting up the demo on SQLite in {var} and serving it on {addr}…")
        # The server's log goes to a file: a pipe nobody reads would fill up and stall it.
        log_path = var / "server.log"
        log = log_path.open("w")
        server = subprocess.Popen(
            [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "mesh_demo", "--json", "--addr", addr,
             "--workspace", workspace, "--username", "screenshots", "--password", password],
            cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
        )
        log.close()
        try:
            line = server.stdout.readline()
            if not line:
                raise CommandError("mesh_demo ended before it was ready:\n" + log_path.read_text()[-2000:])
            demo = json.loads(line)
            demo["base"] = f"http://{addr}"
            deadline = time.monotonic() + SERVER_START_SECONDS
            while True:
                try:
                    urllib.request.urlopen(demo["urls"]["login"], timeout=5).close()
                    break
                except (urllib.error.URLError, ConnectionError):
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise CommandError("the demo server did not start:\n" + log_path.read_text()[-2000:]) from None
                    time.sleep(0.3)
        except BaseException:
            server.kill()
            server.wait()
            raise
        return server, demo

    def _shoot(self, browser, demo: dict, widths: list[int], out: Path) -> list[dict]:
        base, urls = demo["base"], demo["urls"]
        files = []
        for width in widths:
            context = browser.new_context(viewport={"width": width, "height": HEIGHTS.get(width, DEFAULT_HEIGHT)},
                                          device_scale_factor=1, color_scheme="light", reduced_motion="reduce")
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(urls["login"])
            page.fill("#id_username", demo["username"])
            page.fill("#id_password", demo["password"])
            page.click("button[type=submit]")
            page.wait_for_url(urls["contacts"])
            # The conversation: the contact with the latest texts, as the list filtered to SMS finds them.
            page.goto(f"{urls['contacts']}?channel=sms")
            texter = page.locator("a.contact-name").first.get_attribute("href")
            targets = {
                "contact": urls["contact"],
                "conversation": f"{base}{texter}?channel=sms",
                "device": urls["device"],
                "sources": urls["sources"],
                "lifestream": f"{base}/@{demo['workspace']}/",
            }
            for name in PAGES:
                page.goto(targets[name])
                page.wait_for_load_state("networkidle")
                if name == "conversation":
                    # The texts themselves, not the profile above them.
                    page.evaluate("(document.querySelector('section.conversation')"
                                  " || document.querySelector('section.timeline')).scrollIntoView()")
                files.append(self._save(page, out / f"{name}-{width}.png", name, "light"))
                if name in DARK_PAGES and width == max(widths):
                    page.emulate_media(color_scheme="dark")
                    files.append(self._save(page, out / f"{name}-{width}-dark.png", name, "dark"))
                    page.emulate_media(color_scheme="light")
            context.close()
        return files

    @staticmethod
    def _save(page, path: Path, name: str, scheme: str) -> dict:
        page.screenshot(path=str(path))
        w, h = png_size(path)
        return {"page": name, "scheme": scheme, "path": str(path), "width": w, "height": h, "bytes": path.stat().st_size}
