"""Pinning a new domain to node 1 of the NUMA lab through the portal's change service, run by a
real Celery worker, then starting it: inside the guest, ``virsh vcpupin / emulatorpin /
numatune`` agree with the change records and ``numastat -p`` of its QEMU process shows its
memory on node 1.

The domain is the test's own (``numalab2-t<hex>``, 96 MiB, 2 vCPUs, diskless, no tuning of its
own); it is shut off while it is changed, so every change takes the config scope, and it is
destroyed and undefined afterwards. Last, the portal's memory per cell of the running VM,
sampled in the guest by the lab's on-host worker, is compared with ``numastat -p`` there.
"""

from __future__ import annotations

import libvirt
import pytest

from changes.models import Change
from changes.requests import request_change
from tests.change_wait import wait_for_change
from tests.numalab import lab
from tests.numalab.conftest import TASK_WAIT
from vms import sync as host_sync
from vms.models import VirtualMachine, VmCellMemory

pytestmark = [pytest.mark.numalab, pytest.mark.django_db(transaction=True)]

NODE1_CPUS = frozenset({2, 3})
MEMORY_MIB = 96


def finished(change: Change) -> Change:
    """Until the worker has ended the record (succeeded or failed), then the record."""
    wait_for_change(change, TASK_WAIT)
    change.refresh_from_db()
    assert change.is_finished, change.status
    return change


def test_pins_and_strict_memory_on_node_1_hold_when_the_domain_runs(
    worker_host, operator, define_domain, sample_on_host
) -> None:
    dom = define_domain(memory_mib=MEMORY_MIB, preallocate=True)
    name = dom.name()
    host_sync.sync_host(worker_host.pk)
    vm = VirtualMachine.objects.get(host=worker_host, uuid=dom.UUIDString())
    assert vm.state == "shut off" and vm.pinning == "unpinned"

    reason = "numalab: put the VM on node 1"
    asked = [
        ("vcpupin", {"vcpu": 0, "cpuset": "2"}),
        ("vcpupin", {"vcpu": 1, "cpuset": "3"}),
        ("emulatorpin", {"cpuset": "2-3"}),
        ("numatune", {"mode": "strict", "nodeset": "1"}),
    ]
    records = [
        finished(
            request_change(
                actor=operator, target=vm, kind=kind, params=params, scope="config", reason=reason
            )
        )
        for kind, params in asked
    ]
    for record in records:
        assert record.status == Change.Status.SUCCEEDED, (record.kind, record.error)
        assert record.scope == "config"
    assert [r.outcome for r in records[:2]] == [
        "vCPU 0 pinned to 2 in the config",
        "vCPU 1 pinned to 3 in the config",
    ]
    after = records[-1].after["config_tuning"]
    assert after["vcpupin"] == {"0": "2", "1": "3"}
    assert after["emulatorpin"] == "2-3"
    assert (after["numatune_mode"], after["numatune_nodeset"]) == ("strict", "1")

    # The stopped domain's config, as the lab hypervisor itself reads it.
    config = lab.guest_tuning(name, "--config")
    assert config.vcpupin == {0: {2}, 1: {3}}
    assert config.emulatorpin == NODE1_CPUS
    assert config.numatune == {"numa_mode": "strict", "numa_nodeset": "1"}

    dom.create()  # through libvirt over TCP, as an operator's `virsh start` would
    lab.wait_state(dom, libvirt.VIR_DOMAIN_RUNNING)

    # Live, inside the guest: libvirt applied the config at start.
    live = lab.guest_tuning(name, "--live")
    assert live.vcpupin == {0: {2}, 1: {3}}
    assert live.emulatorpin == NODE1_CPUS
    assert live.numatune == {"numa_mode": "strict", "numa_nodeset": "1"}

    # Its memory, inside the guest. All of the guest's RAM (preallocated at start) and QEMU's
    # own heap are anonymous memory, which the strict binding puts on node 1. numastat -p also
    # counts the page cache of the QEMU binary and its libraries, shared with the lab's other
    # QEMUs and left wherever the first of them read it (node 0): not the binding's to move.
    memory = lab.memory_once_allocated(name, at_least_mib=MEMORY_MIB)
    seen = memory.describe()
    anon, file = memory.numa_maps["anon"], memory.numa_maps["file"]
    assert anon.get(1, 0) >= MEMORY_MIB, seen  # the whole guest RAM is on node 1
    assert anon.get(1, 0) > 0.9 * sum(anon.values()), seen
    heap = {node: n["heap"] for node, n in memory.numastat.items()}
    assert heap[1] > 0.9 * sum(heap.values()), seen
    # numastat's own total less the shared file pages: more than 90 % on node 1.
    bound = {node: n["total"] - file.get(node, 0) for node, n in memory.numastat.items()}
    assert bound[1] > 0.9 * sum(bound.values()), seen
    print(seen)

    # The portal, after its next sync, sees the VM where it now is: on cell 1, not cross-node.
    host_sync.sync_host(worker_host.pk)
    vm.refresh_from_db()
    assert vm.state == "running"
    assert (vm.pinning, vm.cells, vm.memory_cells, vm.cross_node) == ("pinned", "1", "1", False)
    assert (vm.emulatorpin, vm.numatune_mode, vm.numatune_nodeset) == ("2-3", "strict", "1")
    assert not vm.drift, vm.drift_detail

    # The portal's memory per cell, read in the guest by the on-host worker and stored
    # centrally, is what numastat -p says there (within 2 MiB: read moments apart).
    sample_on_host()
    stored = {
        row.cell_id: row.total_mib for row in VmCellMemory.objects.filter(vm=vm).order_by("cell_id")
    }
    witness = lab.guest_memory(name)
    seen = f"portal {stored}; guest {witness.describe()}"
    assert stored.get(1, 0) >= MEMORY_MIB, seen
    for node, numbers in witness.numastat.items():
        assert stored.get(node, 0.0) == pytest.approx(numbers["total"], abs=2.0), seen
    print(seen)
