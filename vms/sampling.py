"""Taking one sample of a host: its cells' numastat (stored by :mod:`hosts.sampling`) and every
running VM's memory per cell from its QEMU's numa_maps (stored here), in one transaction.

It lives in ``vms`` because it writes VM rows; ``hosts`` is the layer below. Queueing the
samples of every host is :func:`vms.requests.sample_enabled_hosts`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from hosts.models import CellSample, Host, SampleSource
from hosts.sampling import check_on_host, probe_root, record_sample, store_cell_samples
from numaportal.virt import connection as virt_connection
from numaportal.virt import hostfacts, hostprobe
from numaportal.virt.domains import list_domains
from numaportal.virt.errors import VirtError
from vms.models import VirtualMachine, VmCellMemory

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
    """Take one sample of a host and store it; a failure is recorded on the host, not raised.

    ``probe`` is true on the host's own worker (the task routed to ``host.<name>``).
    """
    host = Host.objects.get(pk=host_id)
    taken_at = timezone.now()
    source = SampleSource.PROBE if probe else SampleSource.LIBVIRT
    problems: list[str] = []
    free: dict[int, int] = {}
    running: list[tuple[str, str]] = []  # (name, uuid) of active domains
    try:
        with virt_connection.connect(host.uri, readonly=True) as conn:
            free = hostfacts.cells_free_memory_kib(conn)
            if probe:
                running = [(d.name, d.uuid) for d in list_domains(conn) if d.active]
    except VirtError as exc:
        problems.append(f"libvirt: {exc}")

    probed: hostprobe.HostProbe | None = None
    if probe:
        try:
            check_on_host(host)
            probed = hostprobe.probe_host([name for name, _ in running], probe_root())
            problems.extend(probed.problems)
        except VirtError as exc:  # HostProbeError, NotOnThisHost
            problems.append(str(exc))

    if not free and probed is None:
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
            # What was really read: a failed probe leaves libvirt's free memory only.
            source if probed is not None else SampleSource.LIBVIRT,
            free_kib=free,
            counters=probed.numastat if probed else {},
            boot_time=probed.boot_time if probed else None,
        )
        vms = 0
        if probed is not None:
            vms = store_vm_memory(host, taken_at, running, probed.vm_memory)
            if probed.numa_balancing is not None:
                host.numa_balancing = probed.numa_balancing
        record_sample(host, taken_at, source, problems)
    return SampleResult(host.name, source, len(rows), vms, "; ".join(problems))


def store_vm_memory(
    host: Host,
    taken_at: datetime,
    running: list[tuple[str, str]],
    memory: dict[str, hostprobe.ProcessMemory],
) -> int:
    """Replace the host's VM memory per cell by this sample's; returns how many VMs."""
    uuids = {uuid: name for name, uuid in running if name in memory}
    vms = {str(vm.uuid): vm for vm in VirtualMachine.objects.filter(host=host, uuid__in=uuids)}
    # VMs not running now have no memory on any cell: their old rows would mislead.
    VmCellMemory.objects.filter(vm__host=host).delete()
    rows = []
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
                )
            )
    VmCellMemory.objects.bulk_create(rows)
    return len({row.vm_id for row in rows})
