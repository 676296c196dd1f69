"""numastat and VM memory per cell from the NUMA lab's own on-host worker.

The worker runs INSIDE the guest (started by scripts/numa-lab, queue host.numalab, no
database): it reads the guest's /sys and /proc and its local libvirt and hands the sample back
through the broker; this test's central worker (the ``worker_queue`` fixture) stores it. The
witnesses are the guest's own files and ``numastat -p``, read with ``scripts/numa-lab exec``.
"""

from __future__ import annotations

import time

import pytest
from django.test import Client

from hosts.models import CellSample, Host
from tests.numalab.guest import guest_numastat, guest_numastat_p, qemu_pid_in_guest
from vms import requests, sync
from vms.memory import memory_bar
from vms.models import VirtualMachine, VmCellMemory

pytestmark = [pytest.mark.numalab, pytest.mark.django_db(transaction=True)]

SAMPLE_WAIT = 180.0  # a task through the guest's TCG worker takes seconds, under load more


@pytest.fixture
def numalab(numalab_ready, worker_queue, settings) -> Host:
    """Host "numalab" registered and synced as `make run` does; this process is central only."""
    settings.NUMAPORTAL_ON_HOST = ""
    host = requests.register_host(
        name="numalab",
        uri=numalab_ready.uri,
        worker_queue=numalab_ready.queue,
        queue_first_sync=False,
    )
    synced = sync.sync_host(host.pk)
    assert synced.sync_status == Host.SyncStatus.OK, synced.last_error
    return synced


def sample(host: Host, samples: int) -> list[CellSample]:
    """Ask for one more sample and wait until *samples* samples of the host are stored."""
    assert requests.sample_enabled_hosts() == 1
    deadline = time.monotonic() + SAMPLE_WAIT
    while time.monotonic() < deadline:
        times = CellSample.objects.filter(host=host).values("taken_at").distinct().count()
        if times >= samples:
            return list(CellSample.objects.filter(host=host).order_by("taken_at", "cell_id"))
        time.sleep(0.5)
    host.refresh_from_db()
    pytest.fail(f"no sample {samples} within {SAMPLE_WAIT} s; host says {host.last_sample_error!r}")


def test_numastat_of_two_nodes_and_the_memory_only_node(numalab) -> None:
    before = guest_numastat()
    first = sample(numalab, 1)
    time.sleep(2)
    rows = sample(numalab, 2)
    after = guest_numastat()

    second = [r for r in rows if r.taken_at > first[0].taken_at]
    assert [r.cell_id for r in first] == [0, 1, 2] and [r.cell_id for r in second] == [0, 1, 2]
    assert all(r.source == "probe" for r in rows)
    numalab.refresh_from_db()
    assert numalab.last_sample_error == ""
    for old, new in zip(first, second, strict=True):
        cell = new.cell_id
        for counter in ("numa_hit", "other_node", "local_node", "numa_miss"):
            # As read in the guest between two direct reads of the kernel's own file.
            assert before[cell][counter] <= getattr(old, counter) <= getattr(new, counter)
            assert getattr(new, counter) <= after[cell][counter]
            delta = getattr(new, f"{counter}_delta")
            assert delta == getattr(new, counter) - getattr(old, counter)
            assert delta <= after[cell][counter] - before[cell][counter]
        assert new.interval_s and new.interval_s > 1
    # Both CPU nodes allocate all the time (the guest's kernel, libvirtd, the worker).
    assert second[0].numa_hit_delta > 0 and second[1].numa_hit_delta > 0


def test_the_remote_domain_has_all_of_its_memory_remote(numalab, operator) -> None:
    sample(numalab, 1)
    vm = VirtualMachine.objects.get(host=numalab, name="numalab2-remote")
    assert vm.cells == "0"  # its vCPUs may run on cell 0 only
    rows = {m.cell_id: m for m in VmCellMemory.objects.filter(vm=vm)}
    assert rows, "no memory per cell stored for numalab2-remote"

    witness = guest_numastat_p(qemu_pid_in_guest("numalab2-remote"))
    # Memory bound (strict) to node 1: numastat -p in the guest and the portal agree, per node.
    for node, mib in witness.items():
        stored = rows[node].total_mib if node in rows else 0.0
        assert stored == pytest.approx(mib["total"], abs=2.0), f"node {node}"
    # What numastat shows on node 0 is page cache of QEMU's binary and libraries (no heap, no
    # stack): the portal shows it, and counts none of it as the VM's memory.
    assert witness[0]["heap"] == 0 and witness[0]["stack"] == 0
    if 0 in rows:
        assert rows[0].own_mib < 1.0

    bar = memory_bar(vm)
    assert bar is not None and bar.remote_pct > 99.0
    client = Client()
    client.force_login(operator)
    page = client.get(vm.get_absolute_url()).content.decode()
    assert 'class="seg cell-' in page and " remote" in page
    assert f"({bar.remote_pct:.0f}%)" in page  # the memory table's remote share


def test_a_domain_on_node_1_keeps_its_memory_local(numalab) -> None:
    sample(numalab, 1)
    vm = VirtualMachine.objects.get(host=numalab, name="numalab2-node1")
    assert vm.cells == "1"
    witness = guest_numastat_p(qemu_pid_in_guest("numalab2-node1"))
    stored = {m.cell_id: m.total_mib for m in VmCellMemory.objects.filter(vm=vm)}
    for node, mib in witness.items():
        assert stored.get(node, 0.0) == pytest.approx(mib["total"], abs=2.0), f"node {node}"
    bar = memory_bar(vm)
    assert bar is not None and bar.remote_mib < 2.0
