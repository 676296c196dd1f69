"""vcpupin and emulatorpin against libvirt's test driver (``test:///default``, domain ``test``).

The test driver's quirks (DESIGN.md) shape some expectations: ``pinVcpuFlags`` accepts only
flags 0, so every scope we send is refused as "unsupported flags"; ``pinEmulator`` takes LIVE
or CONFIG but calls LIVE|CONFIG "mutually exclusive" (operations then apply them one by one);
its CPU map is 8 wide.
"""

from __future__ import annotations

from typing import Any

import libvirt
import pytest

from numaportal.virt.domains import Domain
from numaportal.virt.errors import InvalidRequest, OperationUnsupported, ReadbackMismatch
from numaportal.virt.pinning import pin_emulator, pin_vcpu
from numaportal.virt.scope import Scope
from numaportal.virt.snapshot import snapshot
from numaportal.virt.vcpus import vcpu_info

from .conftest import Lying

pytestmark = pytest.mark.libvirt

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


@pytest.mark.parametrize(
    ("scope", "flags"), [(Scope.LIVE, "0x1"), (Scope.CONFIG, "0x2"), (Scope.BOTH, "0x3")]
)
def test_pin_vcpu_test_driver_refuses_scoped_flags(dom: Domain, scope: Scope, flags: str) -> None:
    with pytest.raises(OperationUnsupported) as info:
        pin_vcpu(dom, 0, {1}, scope)
    assert str(info.value) == f"unsupported flags ({flags}) in function testDomainPinVcpuFlags"
    assert info.value.code == libvirt.VIR_ERR_INVALID_ARG
    assert info.value.uri == "test:///default"


def test_pin_vcpu_validates_before_calling_libvirt(dom: Domain) -> None:
    with pytest.raises(InvalidRequest) as info:
        pin_vcpu(dom, 0, {8})
    assert str(info.value) == (
        "vcpupin of vCPU 0: CPU 8 does not exist on this host (it has 8 CPUs: 0-7)"
    )
    assert info.value.code is None
    with pytest.raises(InvalidRequest, match=r"vCPU 2 does not exist: the live maximum is 2"):
        pin_vcpu(dom, 2, {1})
    with pytest.raises(InvalidRequest, match="empty cpuset"):
        pin_vcpu(dom, 0, set())
    with pytest.raises(InvalidRequest, match="non-negative integer"):
        pin_vcpu(dom, -1, {1})
    with pytest.raises(InvalidRequest, match="negative CPU id"):
        pin_vcpu(dom, 0, {-1})
    with pytest.raises(InvalidRequest, match="vcpupin of vCPU 0: invalid element"):
        pin_vcpu(dom, 0, "1-")


def test_pin_vcpu_reads_back_every_scope(dom: Domain) -> None:
    # The test driver only pins with flags 0; drop the scope flags to exercise the read-back.
    calls: list[int] = []

    def pin_info(flags: int) -> Any:
        calls.append(flags)
        return dom.virdomain.vcpuPinInfo(LIVE)  # the flags-0 pin above only changed the live state

    lying = Lying.domain(
        dom,
        pinVcpuFlags=lambda vcpu, cpumap, _flags: dom.virdomain.pinVcpuFlags(vcpu, cpumap, 0),
        vcpuPinInfo=pin_info,
    )
    pin_vcpu(lying, 1, "2-3", Scope.BOTH)
    assert calls == [LIVE, CONFIG]
    assert vcpu_info(dom)[1].affinity == {2, 3}


def test_pin_vcpu_readback_mismatch_says_expected_and_actual(dom: Domain) -> None:
    lying = Lying.domain(
        dom,
        pinVcpuFlags=lambda *_args: 0,
        vcpuPinInfo=lambda _flags: [(True, True) + (False,) * 6] * 2,
    )
    with pytest.raises(ReadbackMismatch) as info:
        pin_vcpu(lying, 0, {1}, Scope.LIVE)
    assert str(info.value) == "vcpupin of vCPU 0 (live): asked for 1, libvirt reports 0-1"
    assert (info.value.expected, info.value.actual) == ("1", "0-1")
    assert info.value.code is None


def test_pin_emulator_live_reads_back(dom: Domain) -> None:
    pin_emulator(dom, {1}, Scope.LIVE)
    assert dom.virdomain.emulatorPinInfo(LIVE) == (False, True) + (False,) * 6
    assert snapshot(dom).emulatorpin_live == {1}


def test_pin_emulator_both_falls_back_to_one_call_per_scope(dom: Domain) -> None:
    # The test driver calls LIVE|CONFIG "mutually exclusive"; the operation then applies live
    # and config separately and reads both back.
    with pytest.raises(libvirt.libvirtError, match="mutually exclusive"):
        dom.virdomain.pinEmulator((True,) * 8, LIVE | CONFIG)
    pin_emulator(dom, "2-3,5")
    assert dom.virdomain.emulatorPinInfo(LIVE) == dom.virdomain.emulatorPinInfo(CONFIG)
    snap = snapshot(dom)
    assert snap.emulatorpin_live == snap.emulatorpin_config == {2, 3, 5}
    assert snap.as_dict()["emulatorpin_live"] == "2-3,5"


def test_pin_emulator_readback_mismatch(dom: Domain) -> None:
    lying = Lying.domain(dom, emulatorPinInfo=lambda _flags: (True,) * 8)
    with pytest.raises(ReadbackMismatch) as info:
        pin_emulator(lying, {0}, Scope.LIVE)
    assert str(info.value) == "emulatorpin (live): asked for 0, libvirt reports 0-7"


def test_pin_emulator_refuses_missing_cpus(dom: Domain) -> None:
    with pytest.raises(InvalidRequest, match="CPUs 8-9 do not exist on this host"):
        pin_emulator(dom, {0, 8, 9}, Scope.LIVE)
