"""vCPU counts, vcpuinfo, setvcpus and guest vCPUs against libvirt's test driver."""

from __future__ import annotations

import libvirt
import pytest

from numaportal.virt.domains import Domain
from numaportal.virt.errors import InvalidRequest, OperationUnsupported, ReadbackMismatch
from numaportal.virt.scope import Scope
from numaportal.virt.vcpus import (
    VcpuCount,
    VcpuInfo,
    set_guest_vcpus,
    set_vcpus,
    vcpu_info,
    vcpucount,
)

from .conftest import Lying

pytestmark = pytest.mark.libvirt

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


def test_vcpucount_running(dom: Domain) -> None:
    assert vcpucount(dom) == VcpuCount(max_config=2, max_live=2, current_config=2, current_live=2)


def test_vcpucount_shut_off_has_no_live_values(dom: Domain) -> None:
    dom.virdomain.destroy()
    assert vcpucount(dom) == VcpuCount(
        max_config=2, max_live=None, current_config=2, current_live=None
    )


def test_vcpu_info_running(dom: Domain) -> None:
    infos = vcpu_info(dom)
    assert [v.vcpu for v in infos] == [0, 1]
    for v in infos:
        assert isinstance(v, VcpuInfo)
        assert v.state == "running"
        assert v.affinity == frozenset(range(8))
        assert v.cpu_time_ns >= 0
        assert v.cpu >= -1


def test_vcpu_info_shut_off_is_empty(dom: Domain) -> None:
    dom.virdomain.destroy()
    assert vcpu_info(dom) == ()


def test_set_vcpus_live(dom: Domain) -> None:
    set_vcpus(dom, 1, Scope.LIVE)
    assert vcpucount(dom) == VcpuCount(max_config=2, max_live=2, current_config=2, current_live=1)


def test_set_vcpus_maximum_in_config(dom: Domain) -> None:
    set_vcpus(dom, 4, Scope.CONFIG, maximum=True)
    count = vcpucount(dom)
    assert count.max_config == 4
    assert count.max_live == 2


@pytest.mark.parametrize("scope", [Scope.LIVE, Scope.BOTH])
def test_set_vcpus_maximum_refuses_live(dom: Domain, scope: Scope) -> None:
    with pytest.raises(InvalidRequest) as info:
        set_vcpus(dom, 4, scope, maximum=True)
    assert str(info.value).startswith(
        "the maximum can only be changed in the config; it takes effect at next boot"
    )


def test_set_vcpus_beyond_maximum_is_refused_before_libvirt(dom: Domain) -> None:
    with pytest.raises(InvalidRequest) as info:
        set_vcpus(dom, 3, Scope.LIVE)
    assert str(info.value).startswith("3 vCPUs exceeds the live maximum of 2")
    assert info.value.code is None
    with pytest.raises(InvalidRequest, match="positive integer"):
        set_vcpus(dom, 0)


def test_set_vcpus_readback_mismatch(dom: Domain) -> None:
    lying = Lying.domain(
        dom,
        setVcpusFlags=lambda *_args: 0,
        vcpusFlags=lambda _flags: 2,  # maximum 2, and the count never changes
    )
    with pytest.raises(ReadbackMismatch, match=r"^vCPU count \(live\): asked for 1, libvirt"):
        set_vcpus(lying, 1, Scope.LIVE)


def test_set_guest_vcpus_unsupported_by_test_driver(dom: Domain) -> None:
    with pytest.raises(OperationUnsupported) as info:
        set_guest_vcpus(dom, {1}, online=True)
    assert str(info.value) == (
        "this function is not supported by the connection driver: virDomainSetGuestVcpus"
    )
    assert info.value.code == libvirt.VIR_ERR_NO_SUPPORT


def test_set_guest_vcpus_reads_back_the_guest(dom: Domain) -> None:
    agent = {"vcpus": "0-1", "online": "0", "offlinable": "1"}

    def set_guest(cpus: str, state: int, _flags: int) -> int:
        assert cpus == "1"
        agent["online"] = "0-1" if state else "0"
        return 0

    lying = Lying.domain(dom, setGuestVcpus=set_guest, guestVcpus=lambda *_a: dict(agent))
    set_guest_vcpus(lying, {1}, online=True)
    assert agent["online"] == "0-1"
    set_guest_vcpus(lying, {1}, online=False)
    assert agent["online"] == "0"

    stubborn = Lying.domain(dom, setGuestVcpus=lambda *_a: 0, guestVcpus=lambda *_a: dict(agent))
    with pytest.raises(ReadbackMismatch) as info:
        set_guest_vcpus(stubborn, {1}, online=True)
    assert str(info.value) == ("guest vCPUs (live): asked for 1 online, the guest reports online 0")


def test_set_guest_vcpus_refuses_vcpus_beyond_the_maximum(dom: Domain) -> None:
    with pytest.raises(InvalidRequest, match="guest vCPUs: 2-3 beyond the live maximum of 2"):
        set_guest_vcpus(dom, {1, 2, 3}, online=True)
