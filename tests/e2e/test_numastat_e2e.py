"""A real browser on the numastat history page: uPlot draws every chart, the window switches.

A 2-cell host gets 26 hours of one-minute samples through ``store_cell_samples`` (the
sampler's path), with a reboot and a sampling outage so that the charts have gaps. The
screenshot goes to ``test-output/screenshots/numastat-history.png`` for a person to look at.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from hosts.models import Host, SampleSource
from hosts.numastat import CHARTED
from hosts.sampling import store_cell_samples
from tests.screenshots import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHARTS = (*CHARTED, "local_ratio", "free_mib")
MINUTES = 26 * 60
REBOOT_AGO = 8 * 60  # minutes
OUTAGE_AGO = range(3 * 60, 3 * 60 + 20)  # no samples for 20 minutes, 3 hours ago


def feed(host) -> None:
    now = timezone.now().replace(second=0, microsecond=0)
    totals = {
        cell: dict.fromkeys(("hit", "miss", "foreign", "local", "other"), 0) for cell in (0, 1)
    }
    for ago in range(MINUTES, 0, -1):
        booted = ago <= REBOOT_AGO
        if ago == REBOOT_AGO:
            totals = {cell: dict.fromkeys(totals[cell], 0) for cell in totals}
        # a daily rhythm plus a burst of remote allocations on cell 1 in the afternoon
        wave = 1 + 0.5 * math.sin(ago / 180)
        for cell, t in totals.items():
            remote = 900 if cell == 1 and 300 < ago < 420 else 120 + 40 * cell
            t["hit"] += int(30_000 * wave) + 5_000 * cell
            t["miss"] += int(remote * wave)
            t["foreign"] += int((200 + 300 * cell) * wave)
            t["other"] += int(remote * wave)
            t["local"] += int(30_000 * wave) + 5_000 * cell - t["other"] % 97
        if ago in OUTAGE_AGO:
            continue
        store_cell_samples(
            host,
            now - timedelta(minutes=ago),
            SampleSource.PROBE,
            free_kib={
                0: int((48_000 - 6_000 * wave) * 1024),
                1: int((20_000 - 4_000 * wave) * 1024),
            },
            counters={
                cell: {
                    "numa_hit": t["hit"],
                    "numa_miss": t["miss"],
                    "numa_foreign": t["foreign"],
                    "interleave_hit": 0,
                    "local_node": t["local"],
                    "other_node": t["other"],
                }
                for cell, t in totals.items()
            },
            boot_time=1_700_100_000 if booted else 1_700_000_000,
        )


def log_in(browser, live_server, password: str, next_url: str) -> None:
    browser.get(f"{live_server.url}{reverse('login')}?next={next_url}")
    browser.find_element(By.ID, "id_username").send_keys("ops")
    browser.find_element(By.ID, "id_password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()


def drawn_charts(browser) -> dict[str, int]:
    """chart key -> canvases uPlot drew in its container, once every chart has one."""
    WebDriverWait(browser, 10).until(
        lambda b: (
            len(b.find_elements(By.CSS_SELECTOR, ".numastat-chart .plot canvas")) >= len(CHARTS)
        )
    )
    return {
        el.get_attribute("data-series"): len(el.find_elements(By.CSS_SELECTOR, ".uplot canvas"))
        for el in browser.find_elements(By.CSS_SELECTOR, ".numastat-chart .plot[data-series]")
    }


def js_errors(browser) -> list[str]:
    """Errors in the page's console since the last call."""
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_numastat_history_in_a_browser(browser, live_server, operator, admin_password):
    host = Host.objects.create(
        name="hv1",
        uri="qemu+ssh://root@hv1.example.net/system",
        worker_queue="host.hv1",
        hostname="hv1.example.net",
    )
    feed(host)
    page = reverse("hosts:numastat", args=[host.name])
    log_in(browser, live_server, admin_password, page)
    WebDriverWait(browser, 10).until(EC.url_contains(page))

    # default window (24 hours): every chart drawn, a legend entry per cell
    assert drawn_charts(browser) == dict.fromkeys(CHARTS, 1)
    legend = browser.find_element(By.CSS_SELECTOR, '[data-series="numa_hit"] .u-legend').text
    assert "node0" in legend and "node1" in legend
    current = browser.find_element(By.CSS_SELECTOR, "#window-select a.current")
    assert current.get_attribute("data-window") == "24h"
    # the canvas has the container's width, not a fixed default
    width = browser.execute_script(
        "var p = document.querySelector('[data-series=numa_hit]');"
        "return [p.clientWidth, p.querySelector('canvas').getBoundingClientRect().width]"
    )
    assert width[1] > 300 and abs(width[0] - width[1]) < 40
    # the numastat-like table under the charts
    assert browser.find_element(By.CSS_SELECTOR, '#numastat-latest tr[data-counter="numa_hit"]')
    assert js_errors(browser) == []

    # switch to 1 hour: a new page with the 1-hour data, drawn again
    browser.find_element(By.CSS_SELECTOR, '#window-select a[data-window="1h"]').click()
    WebDriverWait(browser, 10).until(EC.url_contains("window=1h"))
    assert drawn_charts(browser) == dict.fromkeys(CHARTS, 1)
    points = browser.execute_script(
        "return JSON.parse(document.getElementById('numastat-data').textContent).times.length"
    )
    assert points in (60, 61)
    assert js_errors(browser) == []

    # back to 24 hours for the picture: the sampling outage shows as a gap (the reboot is
    # one minute without a rate inside a five-minute point: visible only in the 1-hour view)
    browser.find_element(By.CSS_SELECTOR, '#window-select a[data-window="24h"]').click()
    WebDriverWait(browser, 10).until(EC.url_contains("window=24h"))
    drawn_charts(browser)
    screenshot(browser, "numastat-history")
    assert js_errors(browser) == []
