"""Screenshots the browser tests take of the pages they check, for a reviewer to look at.

Every one lands in ``test-output/screenshots/<name>.png`` (git-ignored; CI keeps the folder as
its artifact, see ``.ci/run``), named after the page and the state it shows, so two runs can be
compared file by file.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SCREENSHOTS", "screenshot"]

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"


def screenshot(browser, name: str) -> Path:
    """A full-page PNG of what *browser* shows: the window is stretched to the document's height
    first (the window's own chrome takes some of it even headless: leave room), then put back."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = browser.get_window_size()["width"]
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(width, min(max(int(height) + 160, 900), 6000))
    browser.execute_script("window.scrollTo(0, 0)")
    path = SCREENSHOTS / f"{name}.png"
    assert browser.save_screenshot(str(path)), f"could not save {path}"
    browser.set_window_size(width, 900)
    return path
