"""VMs with hostile names on the lab daemon: the on-host sample finds each one's QEMU and its
memory per cell, as it does for the lab's own VMs.

One small domain (128 MiB, TCG, idling in firmware) at a time, always removed afterwards. The
names are ones libvirt accepts ('/' and newlines it refuses); their pid files are named by
libvirt's own escaping (tests/unit/test_hostprobe_names.py lists what appeared).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import libvirt
import pytest

from hosts.probing import take_sample
from numaportal.virt.hostprobe import pid_file_name, qemu_pid
from tests.domains import remove_domain
from tests.integration.conftest import DOMAIN_XML, THROWAWAY_PREFIX

pytestmark = pytest.mark.integration

RUN = Path("/run/libvirt/qemu")

HOSTILE_NAMES = [
    f"{THROWAWAY_PREFIX}a&b<c>\"d'e",
    f"{THROWAWAY_PREFIX}é日本語-ünïcødé-and-far-longer-than-twenty-characters",
    f"{THROWAWAY_PREFIX}a,b c;$(x)`y`|z*?",
    f"{THROWAWAY_PREFIX}..%2e\\t&amp;",
]


def _qemu_by_uuid(uuid: str) -> int:
    """The witness: the process whose command line carries ``-uuid <uuid>``, found directly."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"-uuid" in args and args[args.index(b"-uuid") + 1].decode() == uuid:
                return int(entry)
    pytest.fail(f"no QEMU process with -uuid {uuid}")


@pytest.fixture(params=HOSTILE_NAMES, ids=["xml-specials", "non-ascii-long", "shell", "dots"])
def hostile_vm(request, qemu_conn: libvirt.virConnect) -> Iterator[libvirt.virDomain]:
    """A running throwaway domain with a hostile name (removed whatever happens)."""
    xml = DOMAIN_XML.format(name=escape(request.param, {'"': "&quot;", "'": "&apos;"}))
    dom = qemu_conn.defineXML(xml)
    try:
        assert dom.name() == request.param  # libvirt keeps the name as given
        dom.create()
        yield dom
    finally:
        remove_domain(dom)


def test_qemu_pid_finds_a_hostile_names_process(hostile_vm):
    name, uuid = hostile_vm.name(), hostile_vm.UUIDString()
    witness = _qemu_by_uuid(uuid)
    # libvirt's own file, under its own escaping of the name:
    assert (RUN / pid_file_name(name)).read_text().strip() == str(witness)
    assert qemu_pid(name) == witness
    assert qemu_pid(name, uuid=uuid) == witness


def test_an_on_host_sample_has_the_memory_per_cell_of_a_hostile_name(hostile_vm, settings):
    settings.NUMAPORTAL_ON_HOST = "lab"
    settings.NUMAPORTAL_ON_HOST_URI = ""
    settings.NUMAPORTAL_PROBE_ROOT = "/"
    name = hostile_vm.name()
    sample = take_sample("lab", "qemu:///system", "host.lab", probe=True)
    assert (name, hostile_vm.UUIDString()) in sample.running
    assert sample.probe is not None, sample.problems
    assert not [p for p in sample.problems if f"VM {name!r}" in p], sample.problems
    memory = sample.probe.vm_memory[name]
    assert memory.pid == _qemu_by_uuid(hostile_vm.UUIDString())
    assert memory.cells and memory.total > 1  # a QEMU has megabytes on the lab's cell
