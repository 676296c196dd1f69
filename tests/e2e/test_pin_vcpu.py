"""A real browser pins a vCPU through the form; a real Celery worker applies it over libvirt.

An operator (group "operator", not a superuser) logs in, opens the vCPU pinning form of a
throwaway ``numatest-*`` domain running on the lab daemon (qemu:///system), fills in vCPU 0,
previews, confirms, and watches the change page poll (htmx) until the record says
"succeeded". The host's ``worker_queue`` is the test's private queue, so the worker thread of
the ``worker_queue`` fixture runs it, not a ``make run`` worker. libvirt is then asked
directly: the live pin is what the form asked for. Screenshots go to ``test-output/e2e/``.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.backends.signals import connection_created
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from balancing.models import BalancingPolicy
from changes.models import Change
from numaportal.virt.cpuset import cpumap_to_cpuset
from tests.integration.conftest import (  # noqa: F401 - fixtures
    define_throwaway,
    qemu_conn,
    running_domain,
)
from tests.screenshots import screenshot
from vms import requests, sync
from vms.models import VirtualMachine

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "op-password-123"


def _read_uncommitted(sender=None, connection=None, **_kwargs) -> None:
    if connection is not None and connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA read_uncommitted = 1")


@pytest.fixture(autouse=True)
def sqlite_readers_do_not_lock():
    """On SQLite (the zero-setup test database: in memory, shared cache) the page polling the
    record (live server thread) and the worker thread writing it would take table locks on
    each other ("database table is locked"); readers that do not lock avoid that. PostgreSQL
    (CI) needs nothing."""
    connection_created.connect(_read_uncommitted)
    _read_uncommitted(connection=connection)
    yield
    connection_created.disconnect(_read_uncommitted)


@pytest.fixture
def operator_account(django_user_model):
    user = django_user_model.objects.create_user("op", password=PASSWORD)
    user.groups.add(Group.objects.get(name="operator"))
    return user


@pytest.fixture
def lab_host(settings, worker_queue):
    settings.NUMAPORTAL_LIBVIRT_TIMEOUT = 15
    host = requests.register_host(
        name="lab", uri="qemu:///system", worker_queue=worker_queue, queue_first_sync=False
    )
    host = sync.sync_host(host.pk)
    assert host.sync_status == "ok", host.last_error
    return host


def test_operator_pins_a_vcpu_through_the_form(
    browser,
    live_server,
    operator_account,
    running_domain,  # noqa: F811 - the integration tier's fixture, imported above
    lab_host,
    qemu_conn,  # noqa: F811
):
    # the domain started after registration: sync again so the portal knows it
    sync.sync_host(lab_host.pk)
    vm = VirtualMachine.objects.get(host=lab_host, uuid=running_domain.UUIDString())
    assert vm.is_running
    host_cpus = sorted(lab_host.cpus.values_list("cpu_id", flat=True))
    target = str(host_cpus[-1])  # the last CPU of the host (1 on the 2-CPU lab machine)

    # log in as the operator
    browser.get(live_server.url + "/login/")
    browser.find_element(By.ID, "id_username").send_keys("op")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    WebDriverWait(browser, 10).until(EC.url_changes(live_server.url + "/login/"))

    # the VM page offers the forms; open vCPU pinning
    browser.get(live_server.url + vm.get_absolute_url())
    browser.find_element(By.CSS_SELECTOR, '#change-actions a[data-change="vcpupin"]').click()
    WebDriverWait(browser, 10).until(EC.url_contains("/change/vcpupin/"))
    field = browser.find_element(By.ID, "id_vcpu_0")
    field.clear()
    field.send_keys(target)
    browser.find_element(By.CSS_SELECTOR, 'input[name="scope"][value="live"]').click()
    browser.find_element(By.ID, "id_reason").send_keys("e2e: pin vCPU 0 like the seed")
    browser.find_element(By.ID, "preview").click()

    # the preview: before -> after, then confirm
    preview = WebDriverWait(browser, 10).until(
        EC.presence_of_element_located((By.ID, "change-preview"))
    )
    assert "vCPU 0 (changed)" in preview.text
    assert "not pinned" in preview.text
    screenshot(browser, "pin-vcpu-preview")
    browser.find_element(By.ID, "confirm").click()

    # the change page polls until the worker has finished
    WebDriverWait(browser, 10).until(EC.url_contains("/changes/"))
    change = Change.objects.get(vm=vm)
    assert browser.current_url.endswith(change.get_absolute_url())
    WebDriverWait(browser, 90).until(
        lambda b: (
            b.find_element(By.ID, "change-status").get_attribute("data-status")
            in ("succeeded", "failed", "cancelled")
        )
    )
    change.refresh_from_db()
    assert change.status == "succeeded", (change.error, change.outcome)
    # HX-Refresh reloads the page once it ended: wait for the diffs to be there
    WebDriverWait(browser, 15).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "#change-diffs [data-diff]"))
    )
    status = browser.find_element(By.ID, "change-status").get_attribute("data-status")
    screenshot(browser, "pin-vcpu-change")
    assert status == "succeeded"
    assert change.status == "succeeded"
    assert (change.params, change.scope, change.actor_name) == (
        {"vcpu": 0, "cpuset": target},
        "live",
        "op",
    )
    assert change.before and change.after
    assert "vcpupin" in browser.find_element(By.ID, "change-diffs").text

    # libvirt agrees (virsh vcpupin --live)
    import libvirt

    pins = running_domain.vcpuPinInfo(libvirt.VIR_DOMAIN_AFFECT_LIVE)
    assert cpumap_to_cpuset(pins[0]) == {int(target)}

    # the VM page lists it among its recent changes
    browser.get(live_server.url + vm.get_absolute_url())
    row = browser.find_element(By.CSS_SELECTOR, f'#recent-changes tr[data-change="{change.pk}"]')
    assert "succeeded" in row.text
    screenshot(browser, "pin-vcpu-vm-page")


def _wait_all_ended(browser, timeout: float = 120) -> list[str]:
    """Statuses of the change table's rows once none is queued or running (htmx refreshes)."""

    def ended(b):
        statuses = [
            el.get_attribute("data-status")
            for el in b.find_elements(By.CSS_SELECTOR, "#change-table [data-status]")
        ]
        if statuses and not {"queued", "running"} & set(statuses):
            return statuses
        return False

    return WebDriverWait(browser, timeout).until(ended)


def _fill_and_confirm(browser, live_server, vm, kind: str, fields: dict, scope: str) -> None:
    browser.get(live_server.url + f"{vm.get_absolute_url()}change/{kind}/")
    for name, value in fields.items():
        element = browser.find_element(By.ID, f"id_{name}")
        if element.get_attribute("type") == "checkbox":
            if element.is_selected() != bool(value):
                element.click()
            continue
        element.clear()
        element.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, f'input[name="scope"][value="{scope}"]').click()
    browser.find_element(By.ID, "id_reason").send_keys(f"e2e seed walk: {kind}")
    browser.find_element(By.ID, "preview").click()
    WebDriverWait(browser, 10).until(EC.presence_of_element_located((By.ID, "change-preview")))
    screenshot(browser, f"seed-walk-{kind}-preview")
    browser.find_element(By.ID, "confirm").click()
    WebDriverWait(browser, 10).until(EC.url_contains("/changes/"))


def test_the_seed_walk_from_the_browser(
    browser,
    live_server,
    operator_account,
    running_domain,  # noqa: F811
    lab_host,
    qemu_conn,  # noqa: F811
):
    """The issue's "done when": vcpuinfo, emulatorpin live, pin vCPU 0 and 1 live+config,
    see it in the XML, hot-add one vCPU live; each step leaves a record that succeeded."""
    import libvirt

    sync.sync_host(lab_host.pk)
    vm = VirtualMachine.objects.get(host=lab_host, uuid=running_domain.UUIDString())
    browser.get(live_server.url + "/login/")
    browser.find_element(By.ID, "id_username").send_keys("op")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    WebDriverWait(browser, 10).until(EC.url_changes(live_server.url + "/login/"))

    # 1. vcpuinfo
    browser.get(live_server.url + vm.get_absolute_url())
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.vcpuinfo tbody tr[data-vcpu]")) == 4

    # 2. emulatorpin to a cpuset, live
    _fill_and_confirm(browser, live_server, vm, "emulatorpin", {"cpuset": "1"}, "live")
    WebDriverWait(browser, 90).until(
        lambda b: (
            b.find_element(By.ID, "change-status").get_attribute("data-status")
            in ("succeeded", "failed")
        )
    )
    emulator = Change.objects.get(vm=vm, kind="emulatorpin")
    assert emulator.status == "succeeded", emulator.error
    pins = running_domain.emulatorPinInfo(libvirt.VIR_DOMAIN_AFFECT_LIVE)
    assert cpumap_to_cpuset(pins) == {1}

    # 3. pin vCPU 0 and 1 to separate CPUs, live+config: two records, one group
    _fill_and_confirm(
        browser, live_server, vm, "vcpupin", {"vcpu_0": "0", "vcpu_1": "1"}, "live+config"
    )
    assert "group=" in browser.current_url
    assert _wait_all_ended(browser) == ["succeeded", "succeeded"]
    screenshot(browser, "seed-walk-vcpupin-group")
    for flags in (libvirt.VIR_DOMAIN_AFFECT_LIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG):
        pins = running_domain.vcpuPinInfo(flags)
        assert (cpumap_to_cpuset(pins[0]), cpumap_to_cpuset(pins[1])) == ({0}, {1})
    # ... and the persistent XML says so too (what `virsh edit` would show)
    xml = running_domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert "<vcpupin vcpu='0' cpuset='0'/>" in xml and "<vcpupin vcpu='1' cpuset='1'/>" in xml

    # 4. hot-add one vCPU live (no guest agent in this domain: the command is shown). Its vCPUs
    # are pinned to the cell's two CPUs, so the new one goes to that cell's shared pool; a
    # third shared vCPU on two CPUs needs the host's policy to allow over-commit (the default,
    # none, refuses the hot-add at validation).
    BalancingPolicy.objects.create(host=lab_host, cpu_overcommit=8.0)  # the lab is shared
    browser.get(live_server.url + f"{vm.get_absolute_url()}change/hot-add/")
    _fill_and_confirm(
        browser, live_server, vm, "hot-add", {"count": "3", "online_in_guest": False}, "live"
    )
    WebDriverWait(browser, 90).until(
        lambda b: (
            b.find_element(By.ID, "change-status").get_attribute("data-status")
            in ("succeeded", "failed")
        )
    )
    hot_add = Change.objects.get(vm=vm, kind="setvcpus")
    assert hot_add.status == "succeeded", hot_add.error
    assert running_domain.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 3
    assert hot_add.params["vcpupin"] == {"2": "0-1"}  # within its pins, not floating
    pins = running_domain.vcpuPinInfo(libvirt.VIR_DOMAIN_AFFECT_LIVE)
    assert cpumap_to_cpuset(pins[2]) == {0, 1}

    # every step is a reviewable record
    browser.get(live_server.url + f"/changes/?vm={vm.pk}")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.changes tbody tr[data-change]")
    assert len(rows) == 4
    assert all("succeeded" in row.text for row in rows)
    screenshot(browser, "seed-walk-history")
