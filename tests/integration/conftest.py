"""Fixtures for the ``integration`` tier: the real libvirtd + QEMU (TCG) on qemu:///system.

These tests never skip: a daemon that does not answer is a failure that says how to start it.
They create their own throwaway domains named ``numatest-<random>`` and never touch anything
else, in particular not the lab's ``numalab-*`` VMs.
"""

from __future__ import annotations

import gc
import secrets
from collections.abc import Callable, Iterator

import libvirt
import pytest

from hosts.models import Host
from numaportal.virt.connection import VirtError, open_connection
from tests.domains import remove_domain
from vms import sync as host_sync

QEMU_URI = "qemu:///system"
THROWAWAY_PREFIX = "numatest-"
NOT_ANSWERING = "libvirtd is not answering on qemu:///system: run scripts/libvirt-lab start"

# DESIGN.md's diskless VM: boots to firmware and idles. 2 of 4 vCPUs online so that hot-add has
# room; no <acpi/> (so vCPU unplug is refused), no guest agent channel, no graphics.
DOMAIN_XML = """\
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu placement='static' current='2'>4</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <cpu mode='custom' match='exact'>
    <model fallback='allow'>qemu64</model>
    <topology sockets='1' dies='1' cores='4' threads='1'/>
  </cpu>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <serial type='pty'/>
  </devices>
</domain>
"""


def _open_or_fail() -> libvirt.virConnect:
    try:
        return open_connection(QEMU_URI, timeout=15)
    except VirtError as exc:
        pytest.fail(f"{NOT_ANSWERING} ({exc})", pytrace=False)


@pytest.fixture(scope="session")
def qemu_conn() -> Iterator[libvirt.virConnect]:
    """One connection to the real daemon for the session; leftovers of crashed runs removed."""
    conn = _open_or_fail()
    for dom in conn.listAllDomains():
        # Only our own prefix: lab VMs (numalab-*) and anything else are not ours to touch.
        if dom.name().startswith(THROWAWAY_PREFIX):
            remove_domain(dom)
    yield conn
    gc.collect()
    conn.close()


@pytest.fixture
def define_throwaway(
    qemu_conn: libvirt.virConnect,
) -> Iterator[Callable[[], libvirt.virDomain]]:
    """A factory of defined-but-stopped ``numatest-<random>`` domains, removed afterwards."""
    created: list[libvirt.virDomain] = []

    def define() -> libvirt.virDomain:
        name = f"{THROWAWAY_PREFIX}{secrets.token_hex(4)}"
        dom = qemu_conn.defineXML(DOMAIN_XML.format(name=name))
        created.append(dom)
        return dom

    yield define
    for dom in created:
        remove_domain(dom)


@pytest.fixture
def shutoff_domain(define_throwaway: Callable[[], libvirt.virDomain]) -> libvirt.virDomain:
    """A persistent throwaway domain that is defined but not running."""
    return define_throwaway()


@pytest.fixture
def running_domain(define_throwaway: Callable[[], libvirt.virDomain]) -> libvirt.virDomain:
    """A persistent throwaway domain, started (QEMU under TCG, idling in firmware)."""
    dom = define_throwaway()
    dom.create()
    return dom


@pytest.fixture
def lab_host(worker_queue: str) -> Host:
    """The lab registered as host "lab" whose changes go to the test's own worker, synced once
    (modules that need another shape of lab host define their own)."""
    host = Host.objects.create(name="lab", uri="qemu:///system", worker_queue=worker_queue)
    synced = host_sync.sync_host(host.pk)
    assert synced.sync_status == Host.SyncStatus.OK, synced.last_error
    return synced
