"""A real browser on the inventory: dashboard, a host's topology diagram (and the drawings of
collapsed cells, loaded when opened), a VM page.

Hosts are synced in-process (``sync.sync_host``) from libvirt's test driver (2 cells x 8
CPUs) and from the lab daemon (qemu:///system with its numalab-* VMs). Screenshots go to
``test-output/screenshots/`` (:mod:`tests.screenshots`).
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.screenshots import screenshot
from tests.web.conftest import make_host, make_vm
from tests.web.test_host_page import five_cell_xml
from vms import requests, sync
from vms.models import VirtualMachine

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def log_in(browser, live_server, password: str) -> None:
    browser.get(live_server.url + "/hosts/")
    assert "/login/" in browser.current_url
    browser.find_element(By.ID, "id_username").send_keys("ops")
    browser.find_element(By.ID, "id_password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    # "/login/?next=/hosts/" contains "/hosts/" too: wait for the dashboard itself.
    WebDriverWait(browser, 10).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "table.hosts"))
    )


@pytest.fixture
def synced_hosts(settings):
    settings.NUMAPORTAL_LIBVIRT_TIMEOUT = 15
    hosts = {}
    for name, uri in (("testdrv", "test:///default"), ("lab", "qemu:///system")):
        host = requests.register_host(name=name, uri=uri, queue_first_sync=False)
        hosts[name] = sync.sync_host(host.pk)
        assert hosts[name].sync_status == "ok", hosts[name].last_error
    return hosts


def test_dashboard_and_host_topology_in_a_browser(
    browser, live_server, operator, admin_password, synced_hosts
):
    log_in(browser, live_server, admin_password)

    # dashboard: both hosts, their cell/CPU counts, a link to each host page
    rows = {
        row.get_attribute("data-host"): row
        for row in browser.find_elements(By.CSS_SELECTOR, "table.hosts tbody tr[data-host]")
    }
    assert set(rows) == {"testdrv", "lab"}
    cells = rows["testdrv"].find_elements(By.CSS_SELECTOR, "td.num")
    assert [c.text.split()[0] for c in cells[:2]] == ["2", "16"]
    assert "in sync" in rows["lab"].text
    screenshot(browser, "hosts")

    # the test driver's host page: summary, diagram with every CPU, distances
    rows["testdrv"].find_element(By.LINK_TEXT, "testdrv").click()
    WebDriverWait(browser, 10).until(EC.url_contains("/hosts/testdrv/"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "testdrv"
    diagram = browser.find_element(By.CSS_SELECTOR, ".numa-diagram")
    assert diagram.is_displayed()
    drawn = browser.find_elements(By.CSS_SELECTOR, ".numa-diagram g.thread[data-cpu]")
    assert len(drawn) == 16
    assert browser.find_element(By.CSS_SELECTOR, '[data-lscpu="cpus"]').text == "16"
    # choosing another cell re-labels the distance matrix through htmx, without a reload
    browser.execute_script("window.__same_page = true")
    select = browser.find_element(By.ID, "id_cell")
    select.find_element(By.CSS_SELECTOR, "option[value='1']").click()
    WebDriverWait(browser, 10).until(
        EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#distances p.kinds"), "From cell 1")
    )
    assert browser.execute_script("return window.__same_page") is True
    screenshot(browser, "host-testdrv")

    # the lab host: its VMs in the table, one VM's vcpuinfo page
    browser.get(live_server.url + synced_hosts["lab"].get_absolute_url())
    assert browser.find_elements(By.CSS_SELECTOR, ".numa-diagram g.thread[data-cpu]")
    lab_vm = (
        VirtualMachine.objects.filter(host=synced_hosts["lab"], name__startswith="numalab-")
        .order_by("name")
        .first()
    )
    assert lab_vm is not None
    assert browser.find_element(By.CSS_SELECTOR, f'tr[data-vm="{lab_vm.uuid}"]')
    screenshot(browser, "host-lab")

    browser.find_element(By.LINK_TEXT, lab_vm.name).click()
    WebDriverWait(browser, 10).until(EC.url_contains(str(lab_vm.uuid)))
    strips = browser.find_elements(By.CSS_SELECTOR, "table.vcpuinfo td.strip code")
    assert strips and all(set(s.text) <= {"y", "-"} for s in strips)
    screenshot(browser, "vm-lab")


def test_the_dashboard_shows_the_lab_hosts_state(
    browser, live_server, operator, admin_password, synced_hosts
):
    """The landing page after a sync of the test driver and the lab daemon: both in sync, and
    the figure links to the hosts list filtered by that state."""
    log_in(browser, live_server, admin_password)
    browser.get(live_server.url + "/")
    figures = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('[data-host-state]')]"
        ".map(a => [a.dataset.hostState, [a.querySelector('.dash-count').textContent,"
        " a.getAttribute('href')]]))"
    )
    assert figures["in sync"] == ["2", "/hosts/?state=in_sync"]
    assert figures["sync failed"][0] == "0"
    screenshot(browser, "dashboard")
    browser.find_element(By.CSS_SELECTOR, "[data-host-state='in sync']").click()
    WebDriverWait(browser, 10).until(EC.url_contains("state=in_sync"))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.hosts tbody tr[data-host]")
    assert {r.get_attribute("data-host") for r in rows} == {"testdrv", "lab"}


def test_add_host_form_shows_libvirts_refusal(browser, live_server, operator, admin_password):
    log_in(browser, live_server, admin_password)
    browser.find_element(By.LINK_TEXT, "Add host").click()
    browser.find_element(By.ID, "id_name").send_keys("evil")
    browser.find_element(By.ID, "id_uri").send_keys("qemu+ext:///system?command=/bin/true")
    browser.find_element(By.CSS_SELECTOR, "form.stacked button[type=submit]").click()
    error = browser.find_element(By.CSS_SELECTOR, "#field-uri .field-errors")
    assert "transport 'ext' is not allowed" in error.text
    screenshot(browser, "add-host-refused")


def test_vm_list_filters_in_a_browser(browser, live_server, operator, admin_password, synced_hosts):
    log_in(browser, live_server, admin_password)
    browser.get(live_server.url + "/vms/")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.vms tbody tr[data-vm]")
    assert len(rows) >= 4  # the test driver's VM and the lab's three
    browser.find_element(By.CSS_SELECTOR, "#id_host option[value='testdrv']").click()
    browser.find_element(By.CSS_SELECTOR, "#vm-filters button[type=submit]").click()
    WebDriverWait(browser, 10).until(EC.url_contains("host=testdrv"))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.vms tbody tr[data-vm]")
    assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == ["test"]
    browser.get(live_server.url + "/vms/")
    screenshot(browser, "vm-list")


def test_collapsed_cells_draw_when_opened(browser, live_server, operator, admin_password):
    host = make_host("fivecell", xml=five_cell_xml())
    make_vm(host, "pinned", pins={0: "4", 1: "5"}, emulatorpin="4-7")
    log_in(browser, live_server, admin_password)
    browser.get(live_server.url + host.get_absolute_url())
    diagram = browser.find_element(By.CSS_SELECTOR, ".numa-diagram")
    assert diagram.get_attribute("data-cpus") == "16"
    browser.implicitly_wait(0)  # counting what is absent must not wait for it
    assert not browser.find_elements(By.CSS_SELECTOR, ".numa-diagram g.thread")

    # opening one cell fetches its drawing (htmx), once
    browser.find_element(By.CSS_SELECTOR, 'details[data-cell="1"] > summary').click()
    WebDriverWait(browser, 10).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, 'details[data-cell="1"] g.thread')) == 4
    )
    chips = browser.find_elements(By.CSS_SELECTOR, 'details[data-cell="1"] g.chip')
    assert len(chips) == 2
    # "expand all" opens and draws the others; the memory-only cell has nothing to load
    browser.find_element(By.CSS_SELECTOR, '.numa-toolbar button[data-action="expand"]').click()
    WebDriverWait(browser, 10).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, ".numa-diagram g.thread[data-cpu]")) == 16
    )
    assert browser.find_element(By.CSS_SELECTOR, 'details[data-cell="4"] .cell-body').is_displayed()
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    screenshot(browser, "host-cells-on-expand")
