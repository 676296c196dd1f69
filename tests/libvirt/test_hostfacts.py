"""Host facts read from libvirt's test driver (2 NUMA cells x 8 CPUs)."""

from __future__ import annotations

import json

import libvirt
import pytest

from numaportal.virt.hostfacts import HostInfo, format_version, host_info

pytestmark = pytest.mark.libvirt


# --- host_info ------------------------------------------------------------------------------


def test_host_info_on_the_test_driver(conn: libvirt.virConnect) -> None:
    info = host_info(conn)
    assert isinstance(info, HostInfo)
    assert info.uri == "test:///default"
    assert info.hypervisor_type == "TEST"
    assert info.hostname
    assert info.libvirt_version >= 9_000_000
    assert info.cpu_count == 8
    assert info.cpus_online <= frozenset(range(8))
    assert "<cells num='2'>" in info.capabilities_xml
    # The test driver reports 2 cells; getCellsFreeMemory returns bytes and we keep KiB.
    assert set(info.cells_free_memory_kib) == {0, 1}
    assert all(v > 0 for v in info.cells_free_memory_kib.values())
    data = info.as_dict()
    json.dumps(data)
    assert data["libvirt_version"] == format_version(info.libvirt_version)


def test_format_version() -> None:
    assert format_version(9_000_000) == "9.0.0"
    assert format_version(7_002_022) == "7.2.22"
    assert format_version(12_008_001) == "12.8.1"
