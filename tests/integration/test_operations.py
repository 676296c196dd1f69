"""Operations against the real daemon (qemu:///system, QEMU under TCG) on throwaway domains.

Each test gets its own ``numatest-<random>`` domain (see conftest.py): 2 of 4 vCPUs, no ACPI,
no guest agent, one NUMA node and two CPUs on this host. The failures the seed's workflow runs
into here must reach the portal as our exceptions carrying libvirt's exact text.
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET

import libvirt
import pytest

from numaportal.virt.connection import connect
from numaportal.virt.domain import parse_domain
from numaportal.virt.domains import Domain, lookup_domain
from numaportal.virt.errors import InvalidRequest, OperationUnsupported
from numaportal.virt.hostfacts import host_info
from numaportal.virt.numatune import set_numatune
from numaportal.virt.pinning import pin_emulator, pin_vcpu
from numaportal.virt.scope import Scope
from numaportal.virt.snapshot import snapshot
from numaportal.virt.vcpus import VcpuCount, set_guest_vcpus, set_vcpus, vcpu_info, vcpucount

pytestmark = pytest.mark.integration

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE


def _pins(dom: libvirt.virDomain, flags: int, vcpu: int) -> frozenset[int]:
    return frozenset(i for i, on in enumerate(dom.vcpuPinInfo(flags)[vcpu]) if on)


def test_open_connection_enables_keepalive(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="numaportal.virt.connection")
    with connect("qemu:///system") as conn:
        assert conn.isAlive()
    assert not caplog.records  # setKeepAlive succeeded (a failure is logged as a warning)


def test_host_info_of_the_lab(qemu_conn: libvirt.virConnect) -> None:
    info = host_info(qemu_conn)
    assert info.uri == "qemu:///system"
    assert info.hypervisor_type == "QEMU"
    assert info.cpu_count >= 1
    assert 0 in info.cells_free_memory_kib
    assert "<topology>" in info.capabilities_xml
    json.dumps(info.as_dict())


def test_lookup_throwaway_by_name_and_uuid(
    qemu_conn: libvirt.virConnect, running_domain: libvirt.virDomain
) -> None:
    name = running_domain.name()
    assert lookup_domain(qemu_conn, name).uuid == running_domain.UUIDString()
    assert lookup_domain(qemu_conn, running_domain.UUIDString()).name == name


def test_pin_vcpu_live_and_config(running_domain: libvirt.virDomain) -> None:
    pin_vcpu(Domain.of(running_domain), 0, {1}, Scope.BOTH)
    assert _pins(running_domain, LIVE, 0) == {1}
    assert _pins(running_domain, CONFIG, 0) == {1}
    persistent = running_domain.XMLDesc(INACTIVE)
    assert "<vcpupin vcpu='0' cpuset='1'/>" in persistent
    assert parse_domain(persistent).vcpupin[0] == {1}
    snap = snapshot(Domain.of(running_domain))
    assert snap.config_tuning.vcpupin[0] == {1}
    assert snap.live_tuning is not None and snap.live_tuning.vcpupin[0] == {1}
    assert next(v for v in snap.vcpu_info if v.vcpu == 0).affinity == {1}


def test_pin_vcpu_live_only_leaves_config_alone(running_domain: libvirt.virDomain) -> None:
    pin_vcpu(Domain.of(running_domain), 1, {0}, Scope.LIVE)
    assert _pins(running_domain, LIVE, 1) == {0}
    assert 1 not in parse_domain(running_domain.XMLDesc(INACTIVE)).vcpupin
    snap = snapshot(Domain.of(running_domain))
    assert snap.live_tuning is not None and snap.live_tuning.vcpupin[1] == {0}
    assert 1 not in snap.config_tuning.vcpupin


def test_pin_emulator_live(running_domain: libvirt.virDomain) -> None:
    pin_emulator(Domain.of(running_domain), {0}, Scope.LIVE)
    assert running_domain.emulatorPinInfo(LIVE)[:2] == (True, False)
    snap = snapshot(Domain.of(running_domain))
    assert snap.emulatorpin_live == {0}
    assert snap.live_tuning is not None and snap.live_tuning.emulatorpin == {0}
    assert snap.config_tuning.emulatorpin is None


def test_hot_add_vcpu_live(running_domain: libvirt.virDomain) -> None:
    assert vcpucount(Domain.of(running_domain)) == VcpuCount(
        max_config=4, max_live=4, current_config=2, current_live=2
    )
    set_vcpus(Domain.of(running_domain), 3, Scope.LIVE)
    count = vcpucount(Domain.of(running_domain))
    assert count.current_live == 3
    assert count.current_config == 2
    live = ET.fromstring(running_domain.XMLDesc(0))  # our own daemon's XML
    added = live.find("./vcpus/vcpu[@id='2']")
    assert added is not None
    assert added.get("enabled") == "yes"
    assert added.get("hotpluggable") == "yes"
    assert [v.vcpu for v in vcpu_info(Domain.of(running_domain))] == [0, 1, 2]


def test_numatune_strict_nodeset_on_running_domain_is_refused(
    running_domain: libvirt.virDomain,
) -> None:
    with pytest.raises(InvalidRequest) as info:
        set_numatune(Domain.of(running_domain), "strict", {0}, Scope.LIVE)
    assert "can't change nodeset for strict mode for running domain" in str(info.value)
    assert str(info.value) == (
        "Requested operation is not valid: can't change nodeset for strict mode for running domain"
    )
    assert info.value.code == libvirt.VIR_ERR_OPERATION_INVALID
    assert info.value.uri == "qemu:///system"


def test_numatune_in_config_of_running_domain(running_domain: libvirt.virDomain) -> None:
    set_numatune(Domain.of(running_domain), "strict", {0}, Scope.CONFIG)
    tuning = parse_domain(running_domain.XMLDesc(INACTIVE))
    assert (tuning.numatune_mode, tuning.numatune_nodeset) == ("strict", {0})


def test_vcpu_unplug_without_acpi_is_refused(running_domain: libvirt.virDomain) -> None:
    set_vcpus(Domain.of(running_domain), 3, Scope.LIVE)
    with pytest.raises(OperationUnsupported) as info:
        set_vcpus(Domain.of(running_domain), 2, Scope.LIVE)
    assert "CPU hot unplug not supported without ACPI" in str(info.value)
    assert str(info.value) == (
        "internal error: unable to execute QEMU command 'device_del': "
        "CPU hot unplug not supported without ACPI"
    )
    assert info.value.code == libvirt.VIR_ERR_INTERNAL_ERROR
    assert vcpucount(Domain.of(running_domain)).current_live == 3


def test_guest_vcpus_without_agent_is_refused(running_domain: libvirt.virDomain) -> None:
    set_vcpus(Domain.of(running_domain), 3, Scope.LIVE)
    with pytest.raises(OperationUnsupported) as info:
        set_guest_vcpus(Domain.of(running_domain), {2}, online=True)
    assert str(info.value) == "argument unsupported: QEMU guest agent is not configured"
    assert info.value.code == libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED


def test_pin_to_a_cpu_the_host_lacks_is_refused_before_libvirt(
    running_domain: libvirt.virDomain,
) -> None:
    with pytest.raises(InvalidRequest) as info:
        pin_vcpu(Domain.of(running_domain), 0, {64}, Scope.BOTH)
    assert "CPU 64 does not exist on this host" in str(info.value)
    assert info.value.code is None  # ours, not libvirt's ("Empty cpu list for pinning")
    assert _pins(running_domain, LIVE, 0) == _pins(running_domain, CONFIG, 0)


def test_set_vcpus_beyond_maximum_is_refused(running_domain: libvirt.virDomain) -> None:
    with pytest.raises(InvalidRequest) as info:
        set_vcpus(Domain.of(running_domain), 5, Scope.LIVE)
    assert str(info.value).startswith("5 vCPUs exceeds the live maximum of 4")
    assert info.value.code is None
    with pytest.raises(InvalidRequest, match="vCPU 4 does not exist"):
        pin_vcpu(Domain.of(running_domain), 4, {0})


def test_live_scope_on_shut_off_domain_is_libvirts_invalid_request(
    shutoff_domain: libvirt.virDomain,
) -> None:
    with pytest.raises(InvalidRequest) as info:
        pin_emulator(Domain.of(shutoff_domain), {0}, Scope.LIVE)
    assert str(info.value) == "Requested operation is not valid: domain is not running"
    assert info.value.code == libvirt.VIR_ERR_OPERATION_INVALID


def test_persistent_changes_on_a_shut_off_domain(shutoff_domain: libvirt.virDomain) -> None:
    before = snapshot(Domain.of(shutoff_domain))
    assert before.state == "shut off" and not before.active
    assert before.vcpucount == VcpuCount(
        max_config=4, max_live=None, current_config=2, current_live=None
    )

    pin_vcpu(Domain.of(shutoff_domain), 1, {0}, Scope.CONFIG)
    pin_emulator(Domain.of(shutoff_domain), {1}, Scope.CONFIG)
    set_numatune(Domain.of(shutoff_domain), "interleave", {0}, Scope.CONFIG)
    set_vcpus(Domain.of(shutoff_domain), 3, Scope.CONFIG)
    # With an explicit <topology> (1x1x4x1) the maximum must equal sockets*dies*cores*threads:
    # libvirt refuses any other maximum, and says so.
    with pytest.raises(InvalidRequest) as info:
        set_vcpus(Domain.of(shutoff_domain), 6, Scope.CONFIG, maximum=True)
    assert str(info.value) == "invalid argument: CPU topology doesn't match the desired vcpu count"
    assert info.value.code == libvirt.VIR_ERR_INVALID_ARG

    after = snapshot(Domain.of(shutoff_domain))
    tuning = after.config_tuning
    assert tuning.vcpupin == {1: frozenset({0})}
    assert tuning.emulatorpin == {1}
    assert (tuning.numatune_mode, tuning.numatune_nodeset) == ("interleave", {0})
    assert (tuning.vcpu_max, tuning.vcpu_current) == (4, 3)
    assert after.vcpucount == VcpuCount(
        max_config=4, max_live=None, current_config=3, current_live=None
    )
    assert after.emulatorpin_config == {1}
    json.dumps(after.as_dict())

    # The persistent config is what the next boot uses.
    shutoff_domain.create()
    booted = snapshot(Domain.of(shutoff_domain))
    assert booted.state == "running"
    assert booted.vcpucount.current_live == 3
    assert booted.live_tuning is not None
    assert booted.live_tuning.vcpupin[1] == {0}
    assert booted.emulatorpin_live == {1}
