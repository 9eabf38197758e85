"""``mesh_screenshots``, the command that regenerates docs/screenshots/: the demo on a throw-away
SQLite database, served, photographed by headless Chromium at each width (and the contact page
in dark mode at the widest)."""

from __future__ import annotations

from pathlib import Path

from streams.management.commands.mesh_screenshots import DARK_PAGES, PAGES, png_size
from tests.fakes.cli import run, run_json

DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def test_it_writes_each_page_at_each_width_as_a_png_of_that_width(tmp_path, monkeypatch):
    # Two of the pages: the dark one and the conversation (scrolled to its texts); the others
    # take the same path, and the committed files below are checked for all of them.
    pages = ("contact", "conversation")
    assert set(pages) <= set(PAGES) and set(DARK_PAGES) <= set(pages)
    monkeypatch.setattr("streams.management.commands.mesh_screenshots.PAGES", pages)
    out = tmp_path / "shots"
    data = run_json("mesh_screenshots", "--out", str(out), "--widths", "1280,390")

    assert data["out"] == str(out)
    assert sorted((f["page"], f["width"], f["scheme"]) for f in data["files"]) == sorted(
        [(page, width, "light") for page in pages for width in (1280, 390)]
        + [(page, 1280, "dark") for page in DARK_PAGES])
    for f in data["files"]:
        path = Path(f["path"])
        dark = "-dark" if f["scheme"] == "dark" else ""
        assert path.parent == out and path.name == f"{f['page']}-{f['width']}{dark}.png"
        assert png_size(path) == (f["width"], f["height"])  # a real PNG, as wide as the window
        assert f["height"] == (844 if f["width"] == 390 else 900)
        assert 10_000 < path.stat().st_size == f["bytes"] <= 300_000  # a picture, and small enough for git
    for page in DARK_PAGES:  # dark: another picture of the same page
        assert (out / f"{page}-1280-dark.png").read_bytes() != (out / f"{page}-1280.png").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(f["path"]).name for f in data["files"])


def test_widths_that_are_not_numbers_are_a_usage_error(tmp_path):
    status, _, err = run("mesh_screenshots", "--out", str(tmp_path), "--widths", "wide")
    assert status == 2 and "--widths" in err
    status, _, err = run("mesh_screenshots", "--out", str(tmp_path), "--widths", "50")
    assert status == 2 and "between 200 and 4000" in err
    assert not any(tmp_path.iterdir())


def test_the_committed_screenshots_are_the_commands_pages_at_both_widths():
    for page in PAGES:
        for width in (1280, 390):
            path = DOCS / f"{page}-{width}.png"
            assert png_size(path)[0] == width, path
            assert path.stat().st_size <= 300_000, path
    for page in DARK_PAGES:
        assert png_size(DOCS / f"{page}-1280-dark.png")[0] == 1280
