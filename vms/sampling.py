"""Storing one sample of a host: its cells' numastat (rows by :mod:`hosts.sampling`) and every
running VM's memory per cell from its QEMU's numa_maps (rows here) with its locality
(:mod:`vms.locality`, kept as history), in one transaction. What a sample reads, and the
message an on-host worker hands back, is :mod:`hosts.probing`.

It lives in ``vms`` because it writes VM rows; ``hosts`` is the layer below. Queueing the
samples of every host is :func:`vms.requests.sample_enabled_hosts`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from hosts.models import Cell, CellSample, Host, SampleSource
from hosts.probing import HostSample, MalformedSample, take_sample
from hosts.sampling import record_sample, store_cell_samples
from hosts.selectors import safe_nodeset
from numaportal.virt import hostprobe
from vms import locality
from vms.models import VirtualMachine, VmCellMemory, VmLocalitySample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleResult:
    host: str
    source: str
    cells: int
    vms: int
    error: str

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "source": self.source,
            "cells": self.cells,
            "vms": self.vms,
            "error": self.error,
        }


def sample_host(host_id: int, *, probe: bool) -> SampleResult:
    """Take one sample of a host in this process and store it (a failure is recorded on the
    host, not raised). ``probe`` true only where this process runs ON the host; the Celery
    path splits the two: the on-host worker takes (``hosts.tasks.probe_host``), a central
    worker stores (``vms.tasks.store_sample``)."""
    host = Host.objects.get(pk=host_id)
    return store_sample(host.pk, take_sample(host.name, host.uri, host.worker_queue, probe=probe))


def record_timeout(host_id: int, limit_s: float) -> SampleResult:
    """The sample task's soft time limit stopped it: the host's last sample says so."""
    host = Host.objects.get(pk=host_id)
    problem = f"sample timed out after {limit_s:g} s"
    record_sample(host, timezone.now(), SampleSource.LIBVIRT, [problem])
    return SampleResult(host.name, SampleSource.LIBVIRT, 0, 0, problem)


def store_sample(host_id: int, sample: HostSample) -> SampleResult:
    """Store a sample (taken here or handed back by an on-host worker) with its deltas."""
    host = Host.objects.get(pk=host_id)
    problems = list(sample.problems)
    if sample.host != host.name:
        # A worker answering for another host: its numbers are not this host's.
        problems = [f"a sample of host {sample.host[:64]!r} arrived for {host.name!r}: dropped"]
        record_sample(host, timezone.now(), sample.source, problems)
        return SampleResult(host.name, sample.source, 0, 0, "; ".join(problems))
    taken_at, source, probed = sample.taken_at, sample.source, sample.probe
    if sample.empty:
        # Nothing was read: keep the last good sample as the previous one for the next delta.
        record_sample(host, taken_at, source, problems)
        return SampleResult(host.name, source, 0, 0, "; ".join(problems))

    with transaction.atomic():
        # One sample of a host at a time: two overlapping samples would both take the same
        # previous sample and count its interval twice in the rollup.
        Host.objects.select_for_update().filter(pk=host.pk).first()
        if CellSample.objects.filter(host=host, taken_at__gte=taken_at).exists():
            problems.append("a newer sample was stored meanwhile: this one was dropped")
            record_sample(host, taken_at, source, problems)
            return SampleResult(host.name, source, 0, 0, "; ".join(problems))
        rows = store_cell_samples(
            host,
            taken_at,
            source,
            free_kib=sample.free_kib,
            counters=probed.numastat if probed else {},
            boot_time=probed.boot_time if probed else None,
        )
        vms = 0
        if probed is not None:
            vms = store_vm_memory(host, taken_at, list(sample.running), probed.vm_memory)
            if probed.numa_balancing is not None:
                host.numa_balancing = probed.numa_balancing
        record_sample(host, taken_at, source, problems)
    return SampleResult(host.name, source, len(rows), vms, "; ".join(problems))


def store_message(host_id: int, message: object) -> SampleResult:
    """Store an on-host worker's answer; a malformed one is recorded on the host as such."""
    try:
        sample = HostSample.from_message(message)
    except MalformedSample as exc:
        host = Host.objects.get(pk=host_id)
        problems = [f"the on-host worker's sample was malformed and dropped: {exc}"]
        record_sample(host, timezone.now(), SampleSource.PROBE, problems)
        return SampleResult(host.name, SampleSource.PROBE, 0, 0, problems[0])
    return store_sample(host_id, sample)


def store_vm_memory(
    host: Host,
    taken_at: datetime,
    running: list[tuple[str, str]],
    memory: dict[str, hostprobe.ProcessMemory],
) -> int:
    """Replace the host's VM memory per cell by this sample's, and add each VM's locality to
    its history; returns how many VMs. A fixed number of queries whatever the number of VMs
    (bulk inserts; SQLite splits one into batches of 999 parameters)."""
    uuids = {uuid: name for name, uuid in running if name in memory}
    vms = {str(vm.uuid): vm for vm in VirtualMachine.objects.filter(host=host, uuid__in=uuids)}
    # VMs not running now have no memory on any cell: their old rows would mislead.
    VmCellMemory.objects.filter(vm__host=host).delete()
    rows = []
    own: dict[int, dict[int, float]] = {}
    for uuid, name in uuids.items():
        vm = vms.get(uuid)
        if vm is None:  # a VM the next inventory sync will bring in
            continue
        for cell, mem in memory[name].cells.items():
            rows.append(
                VmCellMemory(
                    vm=vm,
                    cell_id=cell,
                    sampled_at=taken_at,
                    huge_mib=mem.huge,
                    heap_mib=mem.heap,
                    stack_mib=mem.stack,
                    private_mib=mem.private,
                    files_mib=mem.files,
                )
            )
            # What the bars count (VmCellMemory.own_mib): numastat's total minus page cache.
            own.setdefault(vm.pk, {})[cell] = mem.own
    VmCellMemory.objects.bulk_create(rows)
    _store_locality(host, taken_at, [vm for vm in vms.values() if vm.pk in own], own)
    return len({row.vm_id for row in rows})


def _rounded(mib: float | None) -> float | None:
    return None if mib is None else round(mib, 1)


def _store_locality(
    host: Host,
    taken_at: datetime,
    vms: list[VirtualMachine],
    own: dict[int, dict[int, float]],
) -> None:
    """One locality sample per VM with memory; the previous sample's rows stop being "now"
    (also those of VMs that stopped: a VM not running has no locality)."""
    distances = locality.parse_distances(
        Cell.objects.filter(host=host).order_by().values_list("cell_id", "distances")
    )
    VmLocalitySample.objects.filter(host=host, latest=True).update(latest=False)
    samples = []
    for vm in vms:
        cells = own[vm.pk]
        home = safe_nodeset(vm.cells)
        samples.append(
            VmLocalitySample(
                vm=vm,
                host=host,
                taken_at=taken_at,
                locality=locality.locality(cells, home, distances),
                # rounded to 0.1 MiB: what the pages show, and a smaller row
                own_mib={str(cell): round(max(mib, 0.0), 1) for cell, mib in sorted(cells.items())},
                home_cells=vm.cells if home else "",
                remote_mib=_rounded(locality.remote_mib(cells, home)),
                latest=True,
            )
        )
    VmLocalitySample.objects.bulk_create(samples)
