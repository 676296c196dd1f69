"""Fixtures for the ``numalab`` tier: the NUMA lab guest (``scripts/numa-lab``), a real
multi-NUMA hypervisor (nodes 0 and 1 with 2 CPUs each, memory-only node 2) reached over
``qemu+tcp://127.0.0.1:16510/system``.

These tests never skip. The session first waits, up to ``NUMAPORTAL_NUMALAB_WAIT`` seconds
(600), for the lab's libvirtd to answer, for ``scripts/numa-lab exec`` to run commands in the
guest and for the lab's three domains to run; when they do not, every test fails with what
``scripts/numa-lab status`` and the background start said. `make test` starts the lab in the
background (scripts/test) and this tier runs last; the tests never start, stop or reset it.
They define domains of their own (``numalab2-t<hex>``, the lab's marker plus
``urn:numaportal:numalab-test``), removed afterwards, and leave the lab's own domains as the
lab script made them.

Workers: the host is registered as an operator registers it, with its on-host worker queue
``host.numalab``, where the lab guest's own worker (no database) listens on the default broker.
Syncs, changes and plans run on the central queue, which the ``worker_queue`` fixture points at
the test's embedded worker (``worker_host``); probes go to the guest's worker, whose answers come
back to that same central queue.
"""

from __future__ import annotations

import gc
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import pytest
from django.contrib.auth.models import Group

from hosts.models import Host
from numaportal.celery import app
from numaportal.roles import VIEWER_GROUP
from numaportal.virt.connection import VirtError, open_connection
from numaportal.virt.cpuset import parse_cpuset
from numaportal.virt.numatune import NUMATUNE_MODES
from tests.domains import remove_domain
from tests.numalab import lab
from vms import requests as host_requests
from vms import sync as host_sync

HOST_NAME = "numalab"
ON_HOST_QUEUE = "host.numalab"
#: `make test` boots the lab in the background and this tier runs last; libvirtd answers within
#: a minute, the guest's on-host worker (Django + Celery imported over 9p under TCG) takes one
#: to four more on a loaded machine.
WAIT = float(os.environ.get("NUMAPORTAL_NUMALAB_WAIT", "600"))
#: Seconds a worker task may take (a change, a sync, a plan) on the slow TCG lab.
TASK_WAIT = 180.0


def _start_log() -> str:
    """The last lines of the background start `make test` ran (scripts/test), if any."""
    path = Path(os.environ.get("NUMAPORTAL_NUMALAB_START_LOG", "/nonexistent"))
    if not path.is_file():
        return ""
    lines = path.read_text(errors="replace").splitlines()[-15:]
    return f"\nits start ({path}) said:\n" + "\n".join(lines)


def _start_gave_up() -> bool:
    """True when the background start of `make test` ended without a lab (scripts/test writes
    "the NUMA lab's start ended: exit N" when it is done)."""
    path = Path(os.environ.get("NUMAPORTAL_NUMALAB_START_LOG", "/nonexistent"))
    if not path.is_file():
        return False
    ended = re.findall(r"the NUMA lab's start ended: exit (\d+)", path.read_text(errors="replace"))
    return bool(ended) and ended[-1] != "0"


def _fail(what: str) -> None:
    pytest.fail(
        f"the NUMA lab is not usable: {what}\n"
        f"scripts/numa-lab status says:\n{lab.lab_status()}{_start_log()}\n"
        "(`make test` starts it in the background; by hand: scripts/numa-lab start)",
        pytrace=False,
    )


def _is_ours(dom: libvirt.virDomain) -> bool:
    if not dom.name().startswith(lab.TEST_PREFIX):
        return False
    try:
        return lab.TEST_MARKER_NS in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    except libvirt.libvirtError:
        return False


@pytest.fixture(scope="session")
def numalab_conn() -> Iterator[libvirt.virConnect]:
    """A connection to the lab's libvirtd once it answers and the guest runs commands; fails
    (never skips) after ``NUMAPORTAL_NUMALAB_WAIT`` seconds. Leftover test domains of crashed
    runs are removed."""
    deadline = time.monotonic() + WAIT
    conn, last = None, ""
    while conn is None:
        try:
            conn = open_connection(lab.URI, timeout=15)
        except VirtError as exc:
            last = str(exc)
            if _start_gave_up():
                _fail(f"its start gave up; {lab.URI} does not answer ({last})")
            if time.monotonic() > deadline:
                _fail(f"{lab.URI} did not answer within {WAIT:.0f} s ({last})")
            time.sleep(3)
    while True:
        try:
            if lab.lab_exec("echo", "ready", timeout=60).strip() == "ready":
                break
        except (AssertionError, OSError) as exc:
            last = str(exc)
        except Exception as exc:  # subprocess.TimeoutExpired
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            _fail(f"scripts/numa-lab exec does not run commands in the guest ({last})")
        time.sleep(3)
    lab_names = set(lab.LAB_DOMAINS)
    while True:
        running = {d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}
        states = {d.name(): d.state()[0] for d in conn.listAllDomains() if d.name() in lab_names}
        if lab_names <= running and all(s == libvirt.VIR_DOMAIN_RUNNING for s in states.values()):
            break
        if time.monotonic() > deadline:
            _fail(f"the lab's domains are not all running: {states}")
        time.sleep(3)
    for dom in conn.listAllDomains():
        if _is_ours(dom):
            remove_domain(dom)
    yield conn
    gc.collect()
    conn.close()


@pytest.fixture
def define_domain(numalab_conn) -> Iterator[Callable[..., libvirt.virDomain]]:
    """``define_domain(memory_mib=64, vcpupin=None, emulatorpin=None, nodeset=None,
    max_vcpus=2)``: a new, stopped ``numalab2-t<hex>`` domain in the lab (2 vCPUs, of
    *max_vcpus*; TCG, diskless); every one is destroyed and undefined after the test."""
    created: list[libvirt.virDomain] = []

    def define(**options) -> libvirt.virDomain:
        name = lab.throwaway_name()
        dom = numalab_conn.defineXML(lab.throwaway_xml(name, **options))
        created.append(dom)
        return dom

    yield define
    for dom in created:
        remove_domain(dom)


def _cpumap(cpus: frozenset[int], width: int) -> tuple[bool, ...]:
    return tuple(cpu in cpus for cpu in range(width))


def restore_lab_domain(conn: libvirt.virConnect, name: str) -> list[str]:
    """Put one of the lab's own domains back as scripts/numa-lab made it (vcpupin and
    emulatorpin live and in the config, numatune in the config); what had to be restored."""
    want = lab.LAB_DOMAINS[name]
    width = conn.getCPUMap()[0]
    dom = conn.lookupByName(name)
    scopes = [("config", libvirt.VIR_DOMAIN_AFFECT_CONFIG)]
    if dom.isActive():
        scopes.append(("live", libvirt.VIR_DOMAIN_AFFECT_LIVE))
    restored = []
    for scope, flags in scopes:
        for vcpu, cpus in want["vcpupin"].items():
            cpumap = _cpumap(parse_cpuset(cpus), width)
            if dom.vcpuPinInfo(flags)[vcpu] != cpumap:
                dom.pinVcpuFlags(vcpu, cpumap, flags)
                restored.append(f"{name}: vCPU {vcpu} -> {cpus} ({scope})")
        cpumap = _cpumap(parse_cpuset(want["emulatorpin"]), width)
        if dom.emulatorPinInfo(flags) != cpumap:
            dom.pinEmulator(cpumap, flags)
            restored.append(f"{name}: emulator -> {want['emulatorpin']} ({scope})")
    config = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    numa = dom.numaParameters(config)
    mode = want.get("mode", "strict")
    mode_value = NUMATUNE_MODES[mode]
    if (numa.get("numa_mode"), numa.get("numa_nodeset")) != (mode_value, want["nodeset"]):
        dom.setNumaParameters({"numa_mode": mode_value, "numa_nodeset": want["nodeset"]}, config)
        restored.append(f"{name}: numatune {mode} {want['nodeset']} (config)")
    return restored


@pytest.fixture
def restore_lab_domains(numalab_conn) -> Iterator[list[str]]:
    """After the test, the lab's own domains are re-pinned as the lab script made them, should
    the test have moved any; the list the test gets is what was restored (filled at teardown)."""
    restored: list[str] = []
    yield restored
    for name in lab.LAB_DOMAINS:
        restored += restore_lab_domain(numalab_conn, name)
    if restored:
        print("restored lab domains:", "; ".join(restored))


@pytest.fixture
def numalab_host(numalab_conn, db) -> Host:
    """The lab registered through the portal's own service, as an operator would register it
    (its on-host worker queue ``host.numalab``), and synced in-process."""
    host = host_requests.register_host(
        name=HOST_NAME, uri=lab.URI, worker_queue=ON_HOST_QUEUE, queue_first_sync=False
    )
    host = host_sync.sync_host(host.pk)
    assert host.sync_status == Host.SyncStatus.OK, host.last_error
    return host


@pytest.fixture
def worker_host(numalab_host: Host, worker_queue: str) -> Host:
    """:func:`numalab_host` with a real Celery worker as its central worker (the test's own
    embedded worker: ``worker_queue`` makes its queue the central one) for syncs, changes and
    plans; the host's on-host queue stays ``host.numalab``."""
    assert numalab_host.worker_queue == ON_HOST_QUEUE
    return numalab_host


def sync_through_worker(host: Host) -> Host:
    """Request a sync ("Sync now"), let the worker run it; the host as stored."""
    host_requests.request_sync(host)
    deadline = time.monotonic() + TASK_WAIT
    host.refresh_from_db()
    # The host record is the sync's result (the task keeps none).
    while host.sync_status in (Host.SyncStatus.QUEUED, Host.SyncStatus.RUNNING):
        assert time.monotonic() < deadline, f"the sync of {host.name} did not end"
        time.sleep(0.2)
        host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.OK, host.last_error
    return host


def wait_for_on_host_worker(timeout: float = WAIT) -> str:
    """The Celery hostname of the guest's on-host worker once it answers a ping; fails with
    the lab's status when it does not within *timeout* s (it takes 1.5-3.5 min to start on the
    loaded TCG guest, e.g. after `scripts/numa-lab restart-worker`)."""
    deadline = time.monotonic() + timeout
    while True:
        for reply in app.control.ping(timeout=3):
            for name in reply:
                if name.startswith(f"{HOST_NAME}@"):
                    return name
        if time.monotonic() > deadline:
            _fail(
                f"the on-host worker in the guest ({HOST_NAME}@…, queue {ON_HOST_QUEUE}) did not "
                f"answer a ping within {timeout:.0f} s"
            )
        time.sleep(2)


@pytest.fixture
def sample_on_host(worker_host: Host, settings) -> Callable[[], Host]:
    """``sample_on_host()``: one sample of the lab, read INSIDE the guest by its on-host worker
    (queue ``host.numalab``, no database) and stored by the test's central worker; the host
    once it is stored. Fails with the lab's status (its worker's last log line) otherwise."""
    # A probe expires after the sample interval: give it as long as the wait below.
    settings.NUMAPORTAL_SAMPLE_INTERVAL = TASK_WAIT

    def sample() -> Host:
        wait_for_on_host_worker()
        worker_host.refresh_from_db()
        before = worker_host.last_sample_at
        assert host_requests.sample_enabled_hosts() == 1
        deadline = time.monotonic() + TASK_WAIT
        while time.monotonic() < deadline:
            worker_host.refresh_from_db()
            if worker_host.last_sample_at != before:
                assert worker_host.last_sample_source == "probe", worker_host.last_sample_error
                return worker_host
            time.sleep(0.5)
        _fail(
            f"no sample of {worker_host.name} stored within {TASK_WAIT:.0f} s of asking the "
            f"on-host worker on {worker_host.worker_queue} (host says: "
            f"{worker_host.last_sample_error!r})"
        )
        raise AssertionError("unreachable")

    return sample


@pytest.fixture
def viewer_client(client, django_user_model):
    """A logged-in user of the "viewer" group (view permissions only)."""
    user = django_user_model.objects.create_user("viewer", password="viewer-password-123")
    user.groups.add(Group.objects.get(name=VIEWER_GROUP))
    client.force_login(user)
    return client
