"""``mesh_screenshots``, the command that regenerates docs/screenshots/: the demo on a throw-away
SQLite database, served, photographed by headless Chromium at each width."""

from __future__ import annotations

from pathlib import Path

from streams.management.commands.mesh_screenshots import PAGES, png_size
from tests.fakes.cli import run, run_json

DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def test_it_writes_each_page_at_each_width_as_a_png_of_that_width(tmp_path):
    out = tmp_path / "shots"
    data = run_json("mesh_screenshots", "--out", str(out), "--widths", "1280,390")

    assert data["out"] == str(out)
    assert sorted((f["page"], f["width"]) for f in data["files"]) == sorted(
        (page, width) for page in PAGES for width in (1280, 390))
    for f in data["files"]:
        path = Path(f["path"])
        assert path.parent == out and path.name == f"{f['page']}-{f['width']}.png"
        assert png_size(path) == (f["width"], f["height"])  # a real PNG, as wide as the window
        assert f["height"] == (844 if f["width"] == 390 else 900)
        assert 10_000 < path.stat().st_size == f["bytes"] <= 300_000  # a picture, and small enough for git
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
