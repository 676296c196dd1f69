"""Operations against libvirt's test driver (``test:///default``, domain ``test``).

The test driver's quirks (DESIGN.md) shape some expectations: ``pinVcpuFlags`` accepts only
flags 0, so every scope we send is refused as "unsupported flags"; ``pinEmulator`` takes LIVE
or CONFIG but calls LIVE|CONFIG "mutually exclusive" (operations then apply them one by one);
its CPU map is 8 wide.
"""

from __future__ import annotations

import json
from typing import Any

import libvirt
import pytest

from numaportal.virt.errors import (
    DomainNotFound,
    InvalidRequest,
    OperationUnsupported,
    ReadbackMismatch,
)
from numaportal.virt.operations import (
    NUMATUNE_MODES,
    DomainSnapshot,
    Scope,
    VcpuCount,
    VcpuInfo,
    domain_state_name,
    lookup_domain,
    pin_emulator,
    pin_vcpu,
    set_guest_vcpus,
    set_numatune,
    set_vcpus,
    snapshot,
    vcpu_info,
    vcpucount,
)

pytestmark = pytest.mark.libvirt

TEST_DOMAIN = "test"
TEST_DOMAIN_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG


class Lying:
    """A domain whose read-back calls return something else than what was set."""

    def __init__(self, dom: libvirt.virDomain, **overrides: Any) -> None:
        self._dom = dom
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._dom, name)


# --- Scope ----------------------------------------------------------------------------------


def test_scope_values_and_flags() -> None:
    assert [s.value for s in Scope] == ["live", "config", "live+config"]
    assert Scope.LIVE.flags == LIVE
    assert Scope.CONFIG.flags == CONFIG
    assert Scope.BOTH.flags == LIVE | CONFIG
    assert Scope.BOTH.parts == (Scope.LIVE, Scope.CONFIG)
    assert Scope.CONFIG.parts == (Scope.CONFIG,)
    assert json.dumps(Scope.BOTH) == '"live+config"'


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("live", Scope.LIVE),
        ("config", Scope.CONFIG),
        ("live+config", Scope.BOTH),
        (" LIVE+Config ", Scope.BOTH),
        (Scope.CONFIG, Scope.CONFIG),
    ],
)
def test_scope_parse(text: str, scope: Scope) -> None:
    assert Scope.parse(text) is scope


@pytest.mark.parametrize("text", ["", "both", "current", "live,config", None, 1])
def test_scope_parse_refuses_others(text: Any) -> None:
    with pytest.raises(InvalidRequest, match="unknown scope"):
        Scope.parse(text)


# --- lookup ---------------------------------------------------------------------------------


def test_lookup_by_name_and_uuid(conn: libvirt.virConnect) -> None:
    assert lookup_domain(conn, TEST_DOMAIN).UUIDString() == TEST_DOMAIN_UUID
    assert lookup_domain(conn, TEST_DOMAIN_UUID).name() == TEST_DOMAIN
    assert lookup_domain(conn, TEST_DOMAIN_UUID.upper()).name() == TEST_DOMAIN


@pytest.mark.parametrize("missing", ["nope", "00000000-0000-0000-0000-000000000000"])
def test_lookup_missing_domain(conn: libvirt.virConnect, missing: str) -> None:
    with pytest.raises(DomainNotFound) as info:
        lookup_domain(conn, missing)
    assert info.value.code == libvirt.VIR_ERR_NO_DOMAIN
    assert str(info.value).startswith("Domain not found")
    assert info.value.uri == "test:///default"


def test_lookup_refuses_empty_name(conn: libvirt.virConnect) -> None:
    with pytest.raises(InvalidRequest):
        lookup_domain(conn, "")


def test_operations_on_an_undefined_domain_raise_domain_not_found(
    conn: libvirt.virConnect, dom: libvirt.virDomain
) -> None:
    dom.destroy()
    dom.undefine()
    with pytest.raises(DomainNotFound, match="Domain not found"):
        vcpucount(dom)
    with pytest.raises(DomainNotFound):
        snapshot(dom)
    with pytest.raises(DomainNotFound):
        pin_emulator(dom, {0}, Scope.LIVE)


# --- reading state --------------------------------------------------------------------------


def test_vcpucount_running(dom: libvirt.virDomain) -> None:
    assert vcpucount(dom) == VcpuCount(max_config=2, max_live=2, current_config=2, current_live=2)


def test_vcpucount_shut_off_has_no_live_values(dom: libvirt.virDomain) -> None:
    dom.destroy()
    assert vcpucount(dom) == VcpuCount(
        max_config=2, max_live=None, current_config=2, current_live=None
    )


def test_vcpu_info_running(dom: libvirt.virDomain) -> None:
    infos = vcpu_info(dom)
    assert [v.vcpu for v in infos] == [0, 1]
    for v in infos:
        assert isinstance(v, VcpuInfo)
        assert v.state == "running"
        assert v.affinity == frozenset(range(8))
        assert v.cpu_time_ns >= 0
        assert v.cpu >= -1


def test_vcpu_info_shut_off_is_empty(dom: libvirt.virDomain) -> None:
    dom.destroy()
    assert vcpu_info(dom) == ()


def test_snapshot_running(dom: libvirt.virDomain) -> None:
    snap = snapshot(dom)
    assert isinstance(snap, DomainSnapshot)
    assert (snap.name, snap.uuid, snap.state) == (TEST_DOMAIN, TEST_DOMAIN_UUID, "running")
    assert snap.active and snap.persistent
    assert snap.live_xml is not None and "<domain type='test' id=" in snap.live_xml
    assert "<name>test</name>" in snap.persistent_xml
    assert snap.config_tuning.name == TEST_DOMAIN
    assert snap.config_tuning.vcpu_max == 2
    assert snap.live_tuning is not None and snap.live_tuning.vcpu_current == 2
    assert snap.vcpucount == vcpucount(dom)
    assert len(snap.vcpu_info) == 2
    assert snap.emulatorpin_live == frozenset(range(8))
    assert snap.emulatorpin_config == frozenset(range(8))
    data = snap.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["state"] == "running"
    assert data["vcpucount"] == {
        "max_config": 2,
        "max_live": 2,
        "current_config": 2,
        "current_live": 2,
    }
    assert data["vcpu_info"][0]["affinity"] == "0-7"
    assert data["emulatorpin_live"] == "0-7"
    assert data["live_tuning"]["name"] == TEST_DOMAIN


def test_snapshot_shut_off(dom: libvirt.virDomain) -> None:
    dom.destroy()
    snap = snapshot(dom)
    assert snap.state == "shut off"
    assert not snap.active
    assert snap.live_xml is None and snap.live_tuning is None
    assert snap.vcpu_info == ()
    assert snap.emulatorpin_live is None
    assert snap.emulatorpin_config is not None
    assert snap.vcpucount.current_live is None
    data = snap.as_dict()
    json.dumps(data)
    assert data["live_tuning"] is None and data["active"] is False


def test_snapshot_paused(dom: libvirt.virDomain) -> None:
    dom.suspend()
    snap = snapshot(dom)
    assert snap.state == "paused"
    assert snap.active


def test_domain_state_names() -> None:
    assert domain_state_name(libvirt.VIR_DOMAIN_SHUTOFF) == "shut off"
    assert domain_state_name(libvirt.VIR_DOMAIN_RUNNING) == "running"
    assert domain_state_name(99) == "unknown (99)"


# --- pin_vcpu -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "flags"), [(Scope.LIVE, "0x1"), (Scope.CONFIG, "0x2"), (Scope.BOTH, "0x3")]
)
def test_pin_vcpu_test_driver_refuses_scoped_flags(
    dom: libvirt.virDomain, scope: Scope, flags: str
) -> None:
    with pytest.raises(OperationUnsupported) as info:
        pin_vcpu(dom, 0, {1}, scope)
    assert str(info.value) == f"unsupported flags ({flags}) in function testDomainPinVcpuFlags"
    assert info.value.code == libvirt.VIR_ERR_INVALID_ARG
    assert info.value.uri == "test:///default"


def test_pin_vcpu_validates_before_calling_libvirt(dom: libvirt.virDomain) -> None:
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


def test_pin_vcpu_reads_back_every_scope(dom: libvirt.virDomain) -> None:
    # The test driver only pins with flags 0; drop the scope flags to exercise the read-back.
    calls: list[int] = []

    def pin_info(flags: int) -> Any:
        calls.append(flags)
        return dom.vcpuPinInfo(LIVE)  # the flags-0 pin above only changed the live state

    lying = Lying(
        dom,
        pinVcpuFlags=lambda vcpu, cpumap, _flags: dom.pinVcpuFlags(vcpu, cpumap, 0),
        vcpuPinInfo=pin_info,
    )
    pin_vcpu(lying, 1, "2-3", Scope.BOTH)  # type: ignore[arg-type]
    assert calls == [LIVE, CONFIG]
    assert vcpu_info(dom)[1].affinity == {2, 3}


def test_pin_vcpu_readback_mismatch_says_expected_and_actual(dom: libvirt.virDomain) -> None:
    lying = Lying(
        dom,
        pinVcpuFlags=lambda *_args: 0,
        vcpuPinInfo=lambda _flags: [(True, True) + (False,) * 6] * 2,
    )
    with pytest.raises(ReadbackMismatch) as info:
        pin_vcpu(lying, 0, {1}, Scope.LIVE)  # type: ignore[arg-type]
    assert str(info.value) == "vcpupin of vCPU 0 (live): asked for 1, libvirt reports 0-1"
    assert (info.value.expected, info.value.actual) == ("1", "0-1")
    assert info.value.code is None


# --- pin_emulator ---------------------------------------------------------------------------


def test_pin_emulator_live_reads_back(dom: libvirt.virDomain) -> None:
    pin_emulator(dom, {1}, Scope.LIVE)
    assert dom.emulatorPinInfo(LIVE) == (False, True) + (False,) * 6
    assert snapshot(dom).emulatorpin_live == {1}


def test_pin_emulator_both_falls_back_to_one_call_per_scope(dom: libvirt.virDomain) -> None:
    # The test driver calls LIVE|CONFIG "mutually exclusive"; the operation then applies live
    # and config separately and reads both back.
    with pytest.raises(libvirt.libvirtError, match="mutually exclusive"):
        dom.pinEmulator((True,) * 8, LIVE | CONFIG)
    pin_emulator(dom, "2-3,5")
    assert dom.emulatorPinInfo(LIVE) == dom.emulatorPinInfo(CONFIG)
    snap = snapshot(dom)
    assert snap.emulatorpin_live == snap.emulatorpin_config == {2, 3, 5}
    assert snap.as_dict()["emulatorpin_live"] == "2-3,5"


def test_pin_emulator_readback_mismatch(dom: libvirt.virDomain) -> None:
    lying = Lying(dom, emulatorPinInfo=lambda _flags: (True,) * 8)
    with pytest.raises(ReadbackMismatch) as info:
        pin_emulator(lying, {0}, Scope.LIVE)  # type: ignore[arg-type]
    assert str(info.value) == "emulatorpin (live): asked for 0, libvirt reports 0-7"


def test_pin_emulator_refuses_missing_cpus(dom: libvirt.virDomain) -> None:
    with pytest.raises(InvalidRequest, match="CPUs 8-9 do not exist on this host"):
        pin_emulator(dom, {0, 8, 9}, Scope.LIVE)


# --- set_numatune ---------------------------------------------------------------------------


def test_set_numatune_both_reads_back(dom: libvirt.virDomain) -> None:
    set_numatune(dom, "strict", {0, 1})
    for flags in (LIVE, CONFIG):
        assert dom.numaParameters(flags) == {
            libvirt.VIR_DOMAIN_NUMA_MODE: libvirt.VIR_DOMAIN_NUMATUNE_MEM_STRICT,
            libvirt.VIR_DOMAIN_NUMA_NODESET: "0-1",
        }


def test_set_numatune_mode_change_on_running_domain_is_refused(dom: libvirt.virDomain) -> None:
    # The test driver, like QEMU, lets a running domain get its first live numatune but not
    # change the mode afterwards.
    set_numatune(dom, "interleave", {1}, Scope.LIVE)
    with pytest.raises(InvalidRequest) as info:
        set_numatune(dom, "strict", {0, 1}, Scope.BOTH)
    assert str(info.value) == (
        "Requested operation is not valid: can't change numatune mode for running domain"
    )
    assert info.value.code == libvirt.VIR_ERR_OPERATION_INVALID
    # LIVE|CONFIG is "mutually exclusive" here, so live went first and its refusal left the
    # config untouched.
    assert dom.numaParameters(CONFIG) == {
        libvirt.VIR_DOMAIN_NUMA_MODE: libvirt.VIR_DOMAIN_NUMATUNE_MEM_STRICT,
        libvirt.VIR_DOMAIN_NUMA_NODESET: "",
    }


def test_set_numatune_validates(dom: libvirt.virDomain) -> None:
    with pytest.raises(InvalidRequest, match="unknown numatune mode 'bind'"):
        set_numatune(dom, "bind", {0})
    with pytest.raises(InvalidRequest, match="NUMA node 2 does not exist on this host"):
        set_numatune(dom, "strict", {0, 2})
    with pytest.raises(InvalidRequest, match="numatune nodeset"):
        set_numatune(dom, "strict", "")
    assert set(NUMATUNE_MODES) == {"strict", "preferred", "interleave", "restrictive"}


def test_set_numatune_readback_mismatch(dom: libvirt.virDomain) -> None:
    lying = Lying(
        dom,
        numaParameters=lambda _flags: {
            libvirt.VIR_DOMAIN_NUMA_MODE: libvirt.VIR_DOMAIN_NUMATUNE_MEM_INTERLEAVE,
            libvirt.VIR_DOMAIN_NUMA_NODESET: "0-1",
        },
    )
    with pytest.raises(ReadbackMismatch) as info:
        set_numatune(lying, "strict", {0}, Scope.CONFIG)  # type: ignore[arg-type]
    assert str(info.value) == (
        "numatune (config): asked for strict 0, libvirt reports interleave 0-1"
    )


# --- set_vcpus ------------------------------------------------------------------------------


def test_set_vcpus_live(dom: libvirt.virDomain) -> None:
    set_vcpus(dom, 1, Scope.LIVE)
    assert vcpucount(dom) == VcpuCount(max_config=2, max_live=2, current_config=2, current_live=1)


def test_set_vcpus_maximum_in_config(dom: libvirt.virDomain) -> None:
    set_vcpus(dom, 4, Scope.CONFIG, maximum=True)
    count = vcpucount(dom)
    assert count.max_config == 4
    assert count.max_live == 2


@pytest.mark.parametrize("scope", [Scope.LIVE, Scope.BOTH])
def test_set_vcpus_maximum_refuses_live(dom: libvirt.virDomain, scope: Scope) -> None:
    with pytest.raises(InvalidRequest) as info:
        set_vcpus(dom, 4, scope, maximum=True)
    assert str(info.value).startswith(
        "the maximum can only be changed in the config; it takes effect at next boot"
    )


def test_set_vcpus_beyond_maximum_is_refused_before_libvirt(dom: libvirt.virDomain) -> None:
    with pytest.raises(InvalidRequest) as info:
        set_vcpus(dom, 3, Scope.LIVE)
    assert str(info.value).startswith("3 vCPUs exceeds the live maximum of 2")
    assert info.value.code is None
    with pytest.raises(InvalidRequest, match="positive integer"):
        set_vcpus(dom, 0)


def test_set_vcpus_readback_mismatch(dom: libvirt.virDomain) -> None:
    lying = Lying(
        dom,
        setVcpusFlags=lambda *_args: 0,
        vcpusFlags=lambda _flags: 2,  # maximum 2, and the count never changes
    )
    with pytest.raises(ReadbackMismatch, match=r"^vCPU count \(live\): asked for 1, libvirt"):
        set_vcpus(lying, 1, Scope.LIVE)  # type: ignore[arg-type]


# --- set_guest_vcpus ------------------------------------------------------------------------


def test_set_guest_vcpus_unsupported_by_test_driver(dom: libvirt.virDomain) -> None:
    with pytest.raises(OperationUnsupported) as info:
        set_guest_vcpus(dom, {1}, online=True)
    assert str(info.value) == (
        "this function is not supported by the connection driver: virDomainSetGuestVcpus"
    )
    assert info.value.code == libvirt.VIR_ERR_NO_SUPPORT


def test_set_guest_vcpus_reads_back_the_guest(dom: libvirt.virDomain) -> None:
    agent = {"vcpus": "0-1", "online": "0", "offlinable": "1"}

    def set_guest(cpus: str, state: int, _flags: int) -> int:
        assert cpus == "1"
        agent["online"] = "0-1" if state else "0"
        return 0

    lying = Lying(dom, setGuestVcpus=set_guest, guestVcpus=lambda *_a: dict(agent))
    set_guest_vcpus(lying, {1}, online=True)  # type: ignore[arg-type]
    assert agent["online"] == "0-1"
    set_guest_vcpus(lying, {1}, online=False)  # type: ignore[arg-type]
    assert agent["online"] == "0"

    stubborn = Lying(dom, setGuestVcpus=lambda *_a: 0, guestVcpus=lambda *_a: dict(agent))
    with pytest.raises(ReadbackMismatch) as info:
        set_guest_vcpus(stubborn, {1}, online=True)  # type: ignore[arg-type]
    assert str(info.value) == ("guest vCPUs (live): asked for 1 online, the guest reports online 0")


def test_set_guest_vcpus_refuses_vcpus_beyond_the_maximum(dom: libvirt.virDomain) -> None:
    with pytest.raises(InvalidRequest, match="guest vCPUs: 2-3 beyond the live maximum of 2"):
        set_guest_vcpus(dom, {1, 2, 3}, online=True)
