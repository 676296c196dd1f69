"""numastat and VM memory per cell from the NUMA lab's own on-host worker.

The worker runs INSIDE the guest (started by scripts/numa-lab, queue host.numalab, no
database): it reads the guest's /sys and /proc and its local libvirt and hands the sample back
through the broker; this test's central worker stores it. The witnesses are the guest's own
files and ``numastat -p``, read with ``scripts/numa-lab exec``.
"""

from __future__ import annotations

import time

import pytest

from hosts.models import CellSample
from tests.numalab import lab
from vms.memory import memory_bar
from vms.models import VirtualMachine, VmCellMemory

pytestmark = [pytest.mark.numalab, pytest.mark.django_db(transaction=True)]

COUNTERS = ("numa_hit", "other_node", "local_node", "numa_miss")


def samples_of(host) -> list[list[CellSample]]:
    rows = list(CellSample.objects.filter(host=host).order_by("taken_at", "cell_id"))
    by_time: dict[object, list[CellSample]] = {}
    for row in rows:
        by_time.setdefault(row.taken_at, []).append(row)
    return list(by_time.values())


def test_numastat_of_two_nodes_and_the_memory_only_node(worker_host, sample_on_host) -> None:
    before = lab.guest_numastat()
    sample_on_host()
    time.sleep(2)
    sample_on_host()
    after = lab.guest_numastat()

    first, second = samples_of(worker_host)[-2:]
    assert [r.cell_id for r in first] == [0, 1, 2] and [r.cell_id for r in second] == [0, 1, 2]
    assert all(r.source == "probe" for r in first + second)
    assert worker_host.last_sample_error == ""
    for old, new in zip(first, second, strict=True):
        cell = new.cell_id
        for counter in COUNTERS:
            # As read in the guest, between two direct reads of the kernel's own file.
            assert before[cell][counter] <= getattr(old, counter) <= getattr(new, counter)
            assert getattr(new, counter) <= after[cell][counter]
            delta = getattr(new, f"{counter}_delta")
            assert delta == getattr(new, counter) - getattr(old, counter)
            assert delta <= after[cell][counter] - before[cell][counter]
        assert new.interval_s and new.interval_s > 1
    # Both CPU nodes allocate all the time (the guest's kernel, libvirtd, the worker).
    assert second[0].numa_hit_delta > 0 and second[1].numa_hit_delta > 0


def test_a_domain_on_node_1_keeps_its_memory_local(worker_host, sample_on_host) -> None:
    sample_on_host()
    vm = VirtualMachine.objects.get(host=worker_host, name="numalab2-node1")
    assert vm.cells == "1"
    witness = lab.guest_memory("numalab2-node1")
    stored = {m.cell_id: m.total_mib for m in VmCellMemory.objects.filter(vm=vm)}
    for node, mib in witness.numastat.items():
        assert stored.get(node, 0.0) == pytest.approx(mib["total"], abs=2.0), witness.describe()
    bar = memory_bar(vm)
    # numastat's ~13 MiB on node 0 is page cache of QEMU's files: not the VM's, not remote.
    assert bar is not None and bar.remote_mib < 2.0, witness.describe()
