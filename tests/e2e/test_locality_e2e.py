"""A real browser on a VM page's locality history: uPlot draws the locality and the memory per
cell charts from the page's data (charts.js shared with the numastat charts), without a script
error. A VM whose memory moved to its home cell an hour ago gets 6 hours of samples."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.test_numastat_e2e import js_errors, log_in
from tests.web.conftest import make_host, make_vm
from vms.models import VmLocalitySample

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_locality_history_in_a_browser(browser, live_server, operator, admin_password) -> None:
    host = make_host("hv1", worker_queue="host.hv1")
    vm = make_vm(host, "db01", pins={0: "6", 1: "7"})  # vCPUs on cell 1
    now = timezone.now()
    for minutes in range(6 * 60, 0, -5):
        moved = minutes <= 60  # the last hour: all of it on cell 1
        VmLocalitySample.objects.create(
            vm=vm,
            host=host,
            taken_at=now - timedelta(minutes=minutes),
            locality=1.0 if moved else 0.0,  # before: all of it on the other socket
            own_mib={"1": 4096.0} if moved else {"0": 4096.0},
            home_cells="1",
            latest=minutes == 5,
        )
    page = vm.get_absolute_url()
    log_in(browser, live_server, admin_password, page)
    WebDriverWait(browser, 10).until(EC.url_contains(page))
    WebDriverWait(browser, 10).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#locality-charts .plot canvas")) >= 2
    )
    drawn = {
        el.get_attribute("data-series"): len(el.find_elements(By.CSS_SELECTOR, ".uplot canvas"))
        for el in browser.find_elements(By.CSS_SELECTOR, "#locality-charts .plot[data-series]")
    }
    assert drawn == {"locality": 1, "own_mib": 1}
    assert js_errors(browser) == []
