"""Simulated hosts: libvirt's test driver reading one XML file per host, for the fleet bench.

The fleet benchmark (``bench/fleet/``) needs hundreds of hosts reached through real libvirt
connections on a machine that has one hypervisor. libvirt's test driver opens a host described
by a file (``test:///<dir>/<name>.xml``: CPUs, memory and domains with their vcpupin,
emulatorpin, numatune and run state), in-process, through the same API calls a remote host
answers. Two things such a file host lacks, and how they are filled in here:

- NUMA cells: ``testOpenFromFile`` sets none (its capabilities say ``<cells num='0'>``). The
  generator copies a real capabilities fixture next to the host file as
  ``<name>.capabilities.xml``; :func:`capabilities_xml` returns it in place of the driver's.
- Free memory per cell: ``getCellsFreeMemory`` answers "Range exceeds available cells". The
  generator writes ``<name>.freecell.json`` (``{"<cell id>": <free KiB>}``, the cell's memory
  minus what its domains are bound to); :func:`cells_free_memory_kib` returns it.

Everything else (host facts, domain XML, ``vcpus()``, domain stats) is the test driver's own
answer, but for the CPU map (8 CPUs wide in the test driver: the fixture's CPUs are reported
online instead). Known limit: ``vcpuinfo`` affinity of a vCPU pinned to
CPU 8 or above reads empty (the pins themselves come from the XML and are right).

This is off unless ``NUMAPORTAL_SIMULATED_HOSTS_DIR`` names a directory (read from the
environment, so connection tests in a child process see it too): a test driver file URI would
otherwise let a registered host make the worker read any file (see :mod:`numaportal.virt.uri`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

__all__ = [
    "ENV",
    "capabilities_xml",
    "cells_free_memory_kib",
    "host_file",
    "simulated_dir",
]

#: The environment variable naming the directory of simulated host files.
ENV = "NUMAPORTAL_SIMULATED_HOSTS_DIR"

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def simulated_dir() -> Path | None:
    """The directory of simulated host files, resolved; None when simulation is off."""
    value = os.environ.get(ENV, "")
    return Path(os.path.realpath(value)) if value else None


def host_file(uri: str) -> Path | None:
    """The host file of ``test:///<dir>/<name>.xml`` when *dir* is the simulated hosts'
    directory (resolved, no ``..``, a plain name); None for any other URI."""
    top = simulated_dir()
    if top is None or not uri.startswith("test:///"):
        return None
    path = Path(uri[len("test://") :])
    if path.suffix != ".xml" or not _NAME.fullmatch(path.stem):
        return None
    if Path(os.path.realpath(path.parent)) != top or os.path.normpath(path) != str(path):
        return None
    return path


def _sidecar(uri: str, suffix: str) -> Path | None:
    path = host_file(uri)
    if path is None:
        return None
    sidecar = path.with_suffix(suffix)
    return sidecar if sidecar.is_file() else None


def capabilities_xml(uri: str) -> str | None:
    """The capabilities a simulated host answers with (its fixture copy); None otherwise."""
    sidecar = _sidecar(uri, ".capabilities.xml")
    return sidecar.read_text() if sidecar else None


def cells_free_memory_kib(uri: str) -> dict[int, int] | None:
    """A simulated host's free memory per cell id, in KiB; None for other hosts."""
    sidecar = _sidecar(uri, ".freecell.json")
    if sidecar is None:
        return None
    return {int(cell): int(kib) for cell, kib in json.loads(sidecar.read_text()).items()}
