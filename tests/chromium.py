"""Debian's headless Chromium under Selenium, for the browser tiers (``e2e``, ``browser``).

:func:`start_chromium` gives a :class:`CheckedChrome`: after every page it opens
(``driver.get``) it reads the page's console (``driver.get_log("browser")``) and fails on a
SEVERE entry, a JavaScript error or a resource that did not load (a 404 favicon, a missing
static file, a failed htmx request) alike. ``driver.check_console()`` does the same at any
other point (after a click that loads something); ``driver.allow_console(pattern)`` accepts
entries matching *pattern* (a regular expression) for a test that provokes them on purpose.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


class ConsoleErrors(AssertionError):
    """SEVERE entries in the browser's console."""


class CheckedChrome(webdriver.Chrome):
    """A Chrome driver that fails on console errors after every page it opens."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.allowed_console: list[re.Pattern[str]] = []
        #: Every console entry read so far (level, message), for a failing test's report.
        self.console_seen: list[tuple[str, str]] = []

    def allow_console(self, pattern: str) -> None:
        self.allowed_console.append(re.compile(pattern))

    def console_errors(self) -> list[str]:
        """SEVERE console messages since the last read, minus the allowed ones."""
        errors = []
        for entry in super().get_log("browser"):
            self.console_seen.append((entry["level"], entry["message"]))
            if entry["level"] != "SEVERE":
                continue
            if any(p.search(entry["message"]) for p in self.allowed_console):
                continue
            errors.append(entry["message"])
        return errors

    def check_console(self, where: str = "") -> None:
        errors = self.console_errors()
        if errors:
            raise ConsoleErrors(f"console errors on {where or self.current_url}: {errors}")

    def get_log(self, log_type: str):
        entries = super().get_log(log_type)
        if log_type == "browser":
            self.console_seen.extend((e["level"], e["message"]) for e in entries)
        return entries

    def get(self, url: str) -> None:
        super().get(url)
        self.check_console(url)


@contextmanager
def start_chromium(width: int = 1280, height: int = 900) -> Iterator[CheckedChrome]:
    """A headless Chromium of *width* x *height* CSS pixels, quit afterwards."""
    profile = tempfile.mkdtemp(prefix="numaportal-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The closed network here refuses Chromium's background connections; keep it quiet.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # Lets the driver read the page's console (get_log("browser")) to catch JS errors.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Giving the driver path keeps Selenium Manager from trying to download one.
    driver = CheckedChrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.implicitly_wait(5)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
