"""Every main page that needs no lab, opened in Chromium on stored data: each loads without a
console error (a JavaScript error, a resource that did not load, the favicon included) and is
the page asked for, not an error page.

The driver checks the console after every page it opens (tests/chromium.py); this test also
waits for the page's own requests (htmx) to finish and checks again.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from hosts.models import SampleSource
from hosts.sampling import store_cell_samples
from tests.browser.conftest import computed_plan, crowd, sign_in
from tests.web.changes_helpers import make_change
from tests.web.conftest import make_host, make_vm

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sampled(host) -> None:
    """Two hours of one-minute numastat samples, so the history page has charts to draw."""
    now = timezone.now().replace(second=0, microsecond=0)
    for ago in range(120, 0, -1):
        n = 120 - ago
        store_cell_samples(
            host,
            now - timedelta(minutes=ago),
            SampleSource.PROBE,
            free_kib={0: 40_000_000 - n * 1000, 1: 30_000_000},
            counters={
                cell: {
                    "numa_hit": 1000 * n,
                    "numa_miss": 10 * n,
                    "numa_foreign": 10 * n,
                    "interleave_hit": 0,
                    "local_node": 990 * n,
                    "other_node": 10 * n,
                }
                for cell in (0, 1)
            },
            boot_time=1_700_000_000,
        )


def settled(browser) -> None:
    """Wait for the page's htmx requests, then read its console."""
    WebDriverWait(browser, 10).until(
        lambda b: b.execute_script(
            "return document.readyState === 'complete' && !document.querySelector('.htmx-request')"
        )
    )
    browser.check_console()


def test_every_main_page_loads_without_console_errors(
    browser, live_server, superuser, settings
) -> None:
    # The status page asks libvirt: its in-process test driver here, never the lab.
    settings.NUMAPORTAL_LAB_URI = "test:///default"
    host = make_host("hv01", worker_queue="host.hv01", last_sample_at=timezone.now())
    crowd(host, per_thread=0.25)
    vm = make_vm(host, "db01", pins={0: "0", 1: "1"}, emulatorpin="0-5")
    sampled(host)
    change = make_change(vm, actor=superuser, status="succeeded")
    plan = computed_plan(host)
    AuthToken.objects.create(user=superuser)

    browser.get(live_server.url + reverse("login"))
    assert browser.find_element(By.ID, "id_username")
    settled(browser)
    sign_in(browser, live_server, superuser)
    pages = {
        reverse("home"): "dashboard",
        reverse("status"): "running",
        reverse("hosts:list"): "Hosts",
        host.get_absolute_url(): "hv01",
        reverse("hosts:numastat", args=[host.name]): "hv01",
        reverse("vms:list"): "Virtual machines",
        vm.get_absolute_url(): "db01",
        reverse("changes:list"): "Changes",
        reverse("changes:detail", args=[change.pk]): "db01",
        reverse("balancing:list"): "Balancing",
        reverse("balancing:plan", args=[plan.pk]): "hv01",
        reverse("tokens:list"): "token",
    }
    for url, words in pages.items():
        browser.get(live_server.url + url)
        settled(browser)
        assert browser.current_url == live_server.url + url  # not sent to the login page
        heading = browser.find_element(By.CSS_SELECTOR, "main h1").text
        assert words.casefold() in heading.casefold(), (url, heading)
    # The icon each page names is there (a 404 would have been a console error above).
    icons = browser.find_elements(By.CSS_SELECTOR, "link[rel=icon]")
    assert {i.get_attribute("type") for i in icons} >= {"image/svg+xml"}
