"""A real headless Chromium (Debian's package) driven by Selenium against a live server.

The driver (tests/chromium.py) fails a test on console errors after every page it opens.
"""

import pytest

from tests.chromium import start_chromium


@pytest.fixture
def browser():
    with start_chromium(1280, 900) as driver:
        yield driver
