"""What a worker reads for one sample of a host, as a message that crosses the broker.

An on-host worker (queue ``host.<name>``, ``NUMAPORTAL_ON_HOST=<name>``) has no database: it
runs :func:`take_sample` and returns :meth:`HostSample.to_message`; a central worker turns the
message back with :meth:`HostSample.from_message` and stores it
(:func:`vms.sampling.store_sample`). The same shape as nova-compute and nova-conductor: a
hypervisor holds no database credentials, and the worker inside the NUMA lab guest could not
reach the SQLite file of a `make run` anyway.

A message comes from a hypervisor, so it is read like any other input from a host: every field
is type-checked and bounded, and a malformed one is refused with :class:`MalformedSample`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from hosts.models import SampleSource
from numaportal.virt import connection as virt_connection
from numaportal.virt import hostfacts, hostprobe
from numaportal.virt.domains import list_domains
from numaportal.virt.errors import VirtError

__all__ = [
    "HostSample",
    "MalformedSample",
    "NotOnThisHost",
    "check_on_host",
    "process_memory_from",
    "process_memory_message",
    "take_sample",
]

#: A message names at most this many cells and VMs (the largest hosts have 16 cells and a
#: few hundred VMs); more is a broken or hostile worker, not a host.
_MAX_CELLS = 1024
_MAX_VMS = 10000
_MAX_TEXT = 4096


class NotOnThisHost(VirtError):
    """A probe reached a worker that does not run on the host it was meant for."""


class MalformedSample(ValueError):
    """An on-host worker's answer is not a sample this code writes."""


def check_on_host(host_name: str, worker_queue: str) -> None:
    """Raise :class:`NotOnThisHost` unless this worker runs ON *host_name*."""
    here = settings.NUMAPORTAL_ON_HOST
    if here == host_name:
        return
    start = (
        f"Start the worker for queue {worker_queue!r} on {host_name} with "
        f"NUMAPORTAL_ON_HOST={host_name}."
    )
    if here:
        raise NotOnThisHost(
            f"this worker runs on host {here!r} (NUMAPORTAL_ON_HOST), not on {host_name!r}: "
            f"its /sys and /proc are not {host_name}'s. {start}"
        )
    raise NotOnThisHost(
        "this worker is not an on-host worker (NUMAPORTAL_ON_HOST is unset), so it cannot "
        f"read {host_name}'s /sys and /proc. {start}"
    )


@dataclass(frozen=True)
class HostSample:
    """One sample of a host as read: libvirt's free memory per cell and, from an on-host worker,
    numastat, boot time, numa_balancing and each running VM's memory per cell."""

    host: str
    taken_at: datetime
    source: str  # SampleSource: "probe" (on the host) or "libvirt" (free memory only)
    free_kib: dict[int, int] = field(default_factory=dict)
    #: (name, uuid) of the domains running when the sample was taken (probe only).
    running: tuple[tuple[str, str], ...] = ()
    #: None: /sys and /proc were not read (not on the host, or the probe failed).
    probe: hostprobe.HostProbe | None = None
    problems: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.free_kib and self.probe is None

    def to_message(self) -> dict[str, Any]:
        """JSON for the broker (cell ids become strings: JSON object keys)."""
        probe = self.probe
        return {
            "host": self.host,
            "taken_at": self.taken_at.isoformat(),
            "source": self.source,
            "free_kib": {str(c): kib for c, kib in self.free_kib.items()},
            "running": [list(pair) for pair in self.running],
            "probe": None
            if probe is None
            else {
                "numastat": {str(c): v for c, v in probe.numastat.items()},
                "boot_time": probe.boot_time,
                "numa_balancing": probe.numa_balancing,
                "vm_memory": {
                    name: process_memory_message(mem) for name, mem in probe.vm_memory.items()
                },
                "problems": list(probe.problems),
            },
            "problems": list(self.problems),
        }

    @classmethod
    def from_message(cls, message: Any) -> HostSample:
        """The sample a message describes; :class:`MalformedSample` naming what is wrong."""
        if not isinstance(message, dict):
            raise MalformedSample(f"a sample is an object, not {type(message).__name__}")
        taken_at = parse_datetime(_text(message, "taken_at"))
        if taken_at is None or timezone.is_naive(taken_at):
            raise MalformedSample("taken_at is not a timestamp with a time zone")
        source = _text(message, "source")
        if source not in SampleSource.values:
            raise MalformedSample(f"source {source[:40]!r} is not one of {SampleSource.values}")
        running = message.get("running", [])
        if not isinstance(running, list) or len(running) > _MAX_VMS:
            raise MalformedSample("running is not a list of (name, uuid)")
        pairs = []
        for pair in running:
            if not (isinstance(pair, list) and len(pair) == 2 and all(_short(p) for p in pair)):
                raise MalformedSample("running is not a list of (name, uuid)")
            pairs.append((pair[0], pair[1]))
        raw_probe = message.get("probe")
        return cls(
            host=_text(message, "host"),
            taken_at=taken_at,
            source=source,
            free_kib={c: _count(v, "free_kib") for c, v in _cells(message, "free_kib").items()},
            running=tuple(pairs),
            probe=None if raw_probe is None else _probe_from(raw_probe),
            problems=_texts(message.get("problems", []), "problems"),
        )


def take_sample(host_name: str, uri: str, worker_queue: str, *, probe: bool) -> HostSample:
    """Read one sample; never raises for a host's failure (each lands in ``problems``).

    *probe* true is the on-host worker's sample: it must run ON the host (else
    :class:`NotOnThisHost` lands in ``problems``) and uses ``NUMAPORTAL_ON_HOST_URI`` when set
    (the NUMA lab's worker reaches its libvirtd locally, the portal over a forwarded port).
    """
    taken_at = timezone.now()
    source = SampleSource.PROBE if probe else SampleSource.LIBVIRT
    problems: list[str] = []
    free: dict[int, int] = {}
    running: list[tuple[str, str]] = []
    probed: hostprobe.HostProbe | None = None
    if probe:
        try:
            check_on_host(host_name, worker_queue)
        except NotOnThisHost as exc:
            # Not even libvirt: a URI like qemu:///system means another machine's daemon here.
            return HostSample(host_name, taken_at, source, problems=(str(exc),))
        uri = settings.NUMAPORTAL_ON_HOST_URI or uri
    try:
        with virt_connection.connect(uri, readonly=True) as conn:
            free = hostfacts.cells_free_memory_kib(conn)
            if probe:
                running = [(d.name, d.uuid) for d in list_domains(conn) if d.active]
    except VirtError as exc:
        problems.append(f"libvirt: {exc}")
    if probe:
        try:
            probed = hostprobe.probe_host(
                [name for name, _ in running], settings.NUMAPORTAL_PROBE_ROOT, dict(running)
            )
        except VirtError as exc:  # HostProbeError: numastat itself unreadable
            problems.append(str(exc))
        else:
            problems.extend(probed.problems)
    return HostSample(
        host_name,
        taken_at,
        # What was really read: a failed probe leaves libvirt's free memory only.
        source if probed is not None or not probe else SampleSource.LIBVIRT,
        free,
        tuple(running),
        probed,
        tuple(problems),
    )


# --- reading a message ---------------------------------------------------------------------


def process_memory_message(mem: hostprobe.ProcessMemory) -> dict[str, Any]:
    """One process's memory per cell as JSON for the broker."""
    cells = {str(c): {k: getattr(m, k) for k in _MEMORY_KINDS} for c, m in mem.cells.items()}
    return {"pid": mem.pid, "cells": cells}


def process_memory_from(item: Any) -> hostprobe.ProcessMemory:
    """:func:`process_memory_message`'s message read back; :class:`MalformedSample` if not."""
    if not isinstance(item, dict):
        raise MalformedSample("a process's memory is not an object")
    cells = {}
    for cell, mem in _cells(item, "cells").items():
        if not isinstance(mem, dict):
            raise MalformedSample(f"memory of cell {cell} is not an object")
        cells[cell] = hostprobe.CellMemory(
            **{k: _mib(mem.get(k, 0), f"memory {k}") for k in _MEMORY_KINDS}
        )
    return hostprobe.ProcessMemory(pid=_count(item.get("pid"), "pid"), cells=cells)


def _short(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_TEXT


def _text(message: dict[str, Any], key: str) -> str:
    value = message.get(key)
    if not _short(value):
        raise MalformedSample(f"{key} is not a short text")
    return value


def _texts(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > _MAX_VMS:
        raise MalformedSample(f"{key} is not a list of texts")
    if not all(isinstance(v, str) for v in value):
        raise MalformedSample(f"{key} is not a list of texts")
    return tuple(v[:_MAX_TEXT] for v in value)


def _count(value: Any, key: str) -> int:
    # bool is an int: True is not a count of anything.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise MalformedSample(f"{key}: {str(value)[:40]!r} is not a non-negative integer")
    return value


def _mib(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 2**53:
        raise MalformedSample(f"{key}: {str(value)[:40]!r} is not a size in MiB")
    return float(value)


def _cells(message: dict[str, Any], key: str) -> dict[int, Any]:
    """``{"0": x, "1": y}`` -> ``{0: x, 1: y}``; cell ids are small non-negative integers."""
    value = message.get(key, {})
    if not isinstance(value, dict) or len(value) > _MAX_CELLS:
        raise MalformedSample(f"{key} is not an object of cells")
    cells = {}
    for cell, item in value.items():
        if not (isinstance(cell, str) and cell.isascii() and cell.isdigit() and len(cell) < 6):
            raise MalformedSample(f"{key}: {cell[:20]!r} is not a cell id")
        cells[int(cell)] = item
    return cells


def _probe_from(raw: Any) -> hostprobe.HostProbe:
    if not isinstance(raw, dict):
        raise MalformedSample("probe is not an object")
    numastat = {}
    for cell, counters in _cells(raw, "numastat").items():
        if not isinstance(counters, dict) or len(counters) > 64:
            raise MalformedSample("numastat: counters are not an object")
        numastat[cell] = {
            name: _count(v, f"numastat {name}") for name, v in counters.items() if _short(name)
        }
    vm_memory = {}
    memory = raw.get("vm_memory", {})
    if not isinstance(memory, dict) or len(memory) > _MAX_VMS:
        raise MalformedSample("vm_memory is not an object")
    for name, item in memory.items():
        if not _short(name):
            raise MalformedSample("vm_memory: not an object of VM names")
        vm_memory[name] = process_memory_from(item)
    boot_time, balancing = raw.get("boot_time"), raw.get("numa_balancing")
    return hostprobe.HostProbe(
        numastat=numastat,
        boot_time=None if boot_time is None else _count(boot_time, "boot_time"),
        numa_balancing=None if balancing is None else _count(balancing, "numa_balancing"),
        vm_memory=vm_memory,
        problems=_texts(raw.get("problems", []), "probe problems"),
    )


_MEMORY_KINDS = ("huge", "heap", "stack", "private", "files")
