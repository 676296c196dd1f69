"""Sampling the lab host through its on-host worker: a ``celery worker`` process without a
database (tests/onhost_worker.py) reads, a central worker (the ``worker_queue`` fixture) stores.

The lab's libvirtd + QEMU run on this machine, so a worker here reads the lab's real /sys and
/proc: numastat of the one real cell, numa_maps of the three lab QEMU processes. Witnesses are
the kernel's files read directly and numactl's `numastat -p`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hosts.models import CellSample
from numaportal.virt.hostprobe import qemu_pid
from tests.conftest import new_queue
from tests.onhost_worker import on_host_worker
from tests.virsh_cli import numastat_p
from vms import requests, sync
from vms.models import VmCellMemory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NODE0 = Path("/sys/devices/system/node/node0/numastat")


def kernel_numastat() -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in NODE0.read_text().splitlines())}


def wait_for_samples(host, count: int, timeout: float = 60.0) -> list[CellSample]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(CellSample.objects.filter(host=host).order_by("taken_at"))
        if len(rows) >= count:
            return rows
        time.sleep(0.2)
    host.refresh_from_db()
    pytest.fail(f"no sample within {timeout} s; host says: {host.last_sample_error!r}")


@pytest.fixture
def lab_host(worker_queue, settings):
    settings.NUMAPORTAL_ON_HOST = ""  # this process is central only
    host = requests.register_host(
        name="lab", uri="qemu:///system", worker_queue=new_queue(), queue_first_sync=False
    )
    synced = sync.sync_host(host.pk)
    assert synced.sync_status == "ok", synced.last_error
    return synced


def test_the_on_host_worker_samples_the_real_lab(lab_host):
    with on_host_worker(lab_host.worker_queue, "lab", probe_root="/"):
        sample_twice(lab_host)


def sample_twice(lab_host):
    before = kernel_numastat()
    assert requests.sample_enabled_hosts() == 1
    first = wait_for_samples(lab_host, 1)[0]
    time.sleep(1.5)
    assert requests.sample_enabled_hosts() == 1
    second = wait_for_samples(lab_host, 2)[1]
    after = kernel_numastat()

    assert first.source == "probe" and first.cell_id == 0
    # Counters as read: between two direct reads of the kernel's file.
    assert before["numa_hit"] <= first.numa_hit <= second.numa_hit <= after["numa_hit"]
    assert second.numa_hit_delta == second.numa_hit - first.numa_hit
    assert second.interval_s > 1
    assert first.free_kib and first.free_kib > 0  # libvirt's getCellsFreeMemory

    lab_host.refresh_from_db()
    assert lab_host.last_sample_error == ""
    real = int(Path("/proc/sys/kernel/numa_balancing").read_text())
    assert lab_host.numa_balancing == real

    memory = {m.vm.name: m for m in VmCellMemory.objects.select_related("vm")}
    assert {"numalab-small1", "numalab-small2", "numalab-guest"} <= set(memory)
    for name in ("numalab-small1", "numalab-guest"):
        witness = numastat_p(qemu_pid(name))[0]["total"]
        # Sampled moments ago; a running guest's memory moves a little meanwhile.
        assert memory[name].total_mib == pytest.approx(witness, abs=2.0)
        assert memory[name].total_mib > 1


def test_a_sample_on_the_wrong_worker_is_refused(lab_host):
    with on_host_worker(lab_host.worker_queue, "somewhere-else", probe_root="/"):
        assert requests.sample_enabled_hosts() == 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not lab_host.last_sample_error:
            time.sleep(0.2)
            lab_host.refresh_from_db()
    assert "this worker runs on host 'somewhere-else'" in lab_host.last_sample_error
    # Not even libvirt's free memory: qemu:///system there would be another machine's daemon.
    assert not CellSample.objects.filter(host=lab_host).exists()
    assert not VmCellMemory.objects.exists()
