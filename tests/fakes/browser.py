"""Headless Chromium from Debian's ``chromium`` package, driven by Playwright for Python with no
browser download (``executable_path``). tests/run_suite.py refuses to run without the program,
so the browser tests never skip."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.run_suite import CHROMIUM

# No sandbox: the tests run as root in CI containers, where Chromium's sandbox cannot start.
# The rest keeps the browser from talking to anything but the server under test.
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


@contextlib.contextmanager
def headless_chromium() -> Iterator[Browser]:
    """A launched browser, closed afterwards (with Playwright's driver)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def module_chromium() -> Iterator[Browser]:
    """One browser for a test module's tests (each opens its own context: cookies are not shared).
    Launching one costs about a second. Playwright's sync API keeps an event loop in this thread
    while it runs, so Django's ORM is told it is safe here for as long (the fixtures' calls too)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with headless_chromium() as browser:
            yield browser
