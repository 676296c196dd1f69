"""Domain XML -> DomainTuning on hand-written and captured dumpxml fixtures, and broken input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from numaportal.virt.domain import (
    GUEST_AGENT_CHANNEL,
    DomainTuning,
    DomainXMLError,
    GuestNumaCell,
    MemNode,
    parse_domain,
    tuning_dict,
)

pytestmark = pytest.mark.unit

DOMAINS = Path(__file__).resolve().parent.parent / "fixtures" / "domains"


def load(name: str) -> DomainTuning:
    return parse_domain((DOMAINS / name).read_text())


def fs(*ids: int) -> frozenset[int]:
    return frozenset(ids)


def test_every_fixture_parses_pickles_and_serialises() -> None:
    files = sorted(DOMAINS.glob("*.xml"))
    assert len(files) >= 7
    for path in files:
        tuning = parse_domain(path.read_text())
        assert pickle.loads(pickle.dumps(tuning)) == tuning
        snapshot = tuning_dict(tuning)
        # Audit snapshots go through JSONField: a JSON round-trip must not change them.
        assert json.loads(json.dumps(snapshot)) == snapshot


def test_seed_pinned_live() -> None:
    t = load("seed-pinned-live.xml")
    assert t == DomainTuning(
        name="seed-vm01",
        uuid="5a0c6e8e-6a2b-4f38-9d31-0e6cbe1f9b27",
        vcpu_max=4,
        vcpu_current=2,
        vcpu_placement="static",
        vcpu_cpuset=None,
        vcpupin={0: fs(22), 1: fs(23)},
        emulatorpin=fs(18, 19, 20, 21, 22, 23),
        numatune_mode="strict",
        numatune_nodeset=fs(1),
        numatune_placement=None,
        memory_kib=8388608,
        current_memory_kib=8388608,
        vcpus_enabled={0: True, 1: True, 2: False, 3: False},
        has_acpi=True,
        has_guest_agent_channel=True,
        domain_type="kvm",
        vcpus_hotpluggable={0: False, 1: False, 2: True, 3: True},
        guest_numa_cells=(),
        numatune_memnodes={},
        domain_id=7,
        guest_agent_connected=True,
    )
    assert t.is_live_xml
    assert t.effective_vcpu_affinity(0) == fs(22)
    assert t.effective_vcpu_affinity(2) is None  # unpinned: may run anywhere


def test_seed_pinned_inactive_differs_from_live() -> None:
    live = load("seed-pinned-live.xml")
    persistent = load("seed-pinned-inactive.xml")
    assert not persistent.is_live_xml
    assert persistent.domain_id is None
    assert persistent.guest_agent_connected is None  # no state= in inactive XML
    assert persistent.has_guest_agent_channel
    assert persistent.vcpupin == {0: fs(22), 1: fs(21)}
    assert persistent.emulatorpin == fs(18, 19, 20, 21)
    before, after = tuning_dict(persistent), tuning_dict(live)
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {"vcpupin", "emulatorpin", "domain_id", "guest_agent_connected"}
    assert before["vcpupin"] == {"0": "22", "1": "21"}
    assert after["vcpupin"] == {"0": "22", "1": "23"}


def test_minimal_untuned() -> None:
    t = load("minimal-untuned.xml")
    assert t.name == "lab-minimal"
    assert t.uuid == "0f8e5c2a-3b1d-4c6e-8a7f-9d2b1e4c6a80"
    assert t.domain_type == "qemu"
    assert (t.vcpu_max, t.vcpu_current, t.vcpu_placement, t.vcpu_cpuset) == (1, 1, "static", None)
    assert t.vcpupin == {}
    assert t.emulatorpin is None
    assert (t.numatune_mode, t.numatune_nodeset, t.numatune_placement) == (None, None, None)
    assert t.numatune_memnodes == {}
    assert (t.memory_kib, t.current_memory_kib) == (131072, 131072)
    assert t.vcpus_enabled == {}
    assert t.vcpus_hotpluggable == {}
    assert t.has_acpi is False  # hot-unplug will fail: "CPU hot unplug not supported without ACPI"
    assert t.has_guest_agent_channel is False
    assert t.guest_agent_connected is None
    assert t.guest_numa_cells == ()
    assert t.domain_id is None


def test_vcpu_cpuset_with_exclusion() -> None:
    t = load("vcpu-cpuset-exclusion.xml")
    assert t.vcpu_cpuset == fs(0, 1, 3)
    assert (t.vcpu_max, t.vcpu_current) == (3, 3)
    assert t.vcpupin == {2: fs(8, 9)}
    assert t.effective_vcpu_affinity(0) == fs(0, 1, 3)  # default affinity
    assert t.effective_vcpu_affinity(2) == fs(8, 9)  # own pin wins
    assert (t.numatune_mode, t.numatune_nodeset) == ("interleave", fs(0, 1))
    assert t.memory_kib == 4 * 1024 * 1024  # 4 GiB
    assert t.current_memory_kib == 3072 * 1024  # 3072 MiB
    assert t.has_acpi is True
    assert t.has_guest_agent_channel is False
    assert tuning_dict(t)["vcpu_cpuset"] == "0-1,3"


def test_guest_agent_hotplug_live() -> None:
    t = load("guest-agent-hotplug-live.xml")
    assert t.domain_type == "qemu"
    assert t.domain_id == 3
    assert (t.vcpu_max, t.vcpu_current) == (4, 3)
    assert t.vcpus_enabled == {0: True, 1: True, 2: True, 3: False}
    assert t.vcpus_hotpluggable == {0: False, 1: False, 2: True, 3: True}
    assert t.has_acpi is True
    assert t.has_guest_agent_channel is True
    assert t.guest_agent_connected is False
    assert (t.memory_kib, t.current_memory_kib) == (262144, 262144)
    assert t.vcpupin == {}
    assert t.emulatorpin is None


def test_guest_numa_auto_placement() -> None:
    t = load("guest-numa-auto.xml")
    assert t.vcpu_placement == "auto"
    assert t.vcpu_cpuset is None
    assert t.numatune_mode == "strict"
    assert t.numatune_placement == "auto"
    assert t.numatune_nodeset is None
    assert t.numatune_memnodes == {
        0: MemNode(cell_id=0, mode="strict", nodeset=fs(0)),
        1: MemNode(cell_id=1, mode="preferred", nodeset=fs(1)),
    }
    assert t.guest_numa_cells == (
        GuestNumaCell(id=0, cpus=fs(0, 1), memory_kib=2097152),
        GuestNumaCell(id=1, cpus=fs(2, 3), memory_kib=2097152),  # given as 2 GiB
    )
    snapshot = tuning_dict(t)
    assert snapshot["numatune_memnodes"] == {
        "0": {"mode": "strict", "nodeset": "0"},
        "1": {"mode": "preferred", "nodeset": "1"},
    }
    assert snapshot["guest_numa_cells"] == [
        {"id": 0, "cpus": "0-1", "memory_kib": 2097152},
        {"id": 1, "cpus": "2-3", "memory_kib": 2097152},
    ]


def test_test_driver_domain() -> None:
    # Captured from libvirt's test:///default driver: what the libvirt test tier sees.
    t = load("test-driver-default.xml")
    assert (t.name, t.domain_type, t.domain_id) == ("test", "test", 1)
    assert t.uuid == "6695eb01-f6a4-8304-79aa-97f2502e193f"
    assert (t.vcpu_max, t.vcpu_current) == (2, 2)
    assert (t.memory_kib, t.current_memory_kib) == (8388608, 2097152)
    assert t.vcpupin == {}
    assert not t.has_acpi


def test_tuning_dict_of_seed_vm() -> None:
    assert tuning_dict(load("seed-pinned-live.xml")) == {
        "name": "seed-vm01",
        "uuid": "5a0c6e8e-6a2b-4f38-9d31-0e6cbe1f9b27",
        "domain_type": "kvm",
        "domain_id": 7,
        "vcpu_max": 4,
        "vcpu_current": 2,
        "vcpu_placement": "static",
        "vcpu_cpuset": None,
        "vcpupin": {"0": "22", "1": "23"},
        "emulatorpin": "18-23",
        "numatune_mode": "strict",
        "numatune_nodeset": "1",
        "numatune_placement": None,
        "numatune_memnodes": {},
        "memory_kib": 8388608,
        "current_memory_kib": 8388608,
        "vcpus_enabled": {"0": True, "1": True, "2": False, "3": False},
        "vcpus_hotpluggable": {"0": False, "1": False, "2": True, "3": True},
        "guest_numa_cells": [],
        "has_acpi": True,
        "has_guest_agent_channel": True,
        "guest_agent_connected": True,
    }


def test_vcpupin_keys_sort_numerically() -> None:
    pins = "".join(f"<vcpupin vcpu='{v}' cpuset='{v}'/>" for v in (10, 2, 1))
    t = parse_domain(_domain(f"<vcpu>11</vcpu><cputune>{pins}</cputune>"))
    assert list(t.vcpupin) == [1, 2, 10]
    assert list(tuning_dict(t)["vcpupin"]) == ["1", "2", "10"]


def test_defaults_when_optional_elements_absent() -> None:
    t = parse_domain(_domain(""))
    assert (t.vcpu_max, t.vcpu_current) == (1, 1)
    assert t.current_memory_kib == t.memory_kib == 1024
    assert t.guest_agent_connected is None


def test_agent_channel_must_have_the_agent_name() -> None:
    other = (
        "<devices><channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/>"
        "</channel></devices>"
    )
    assert not parse_domain(_domain(other)).has_guest_agent_channel
    agent = f"<devices><channel type='unix'><target type='virtio' name='{GUEST_AGENT_CHANNEL}'/>"
    assert parse_domain(_domain(agent + "</channel></devices>")).has_guest_agent_channel


def _domain(body: str, *, name: str = "<name>vm</name>", root: str = "type='kvm'") -> str:
    return (
        f"<domain {root}>{name}<uuid>11111111-2222-3333-4444-555555555555</uuid>"
        f"<memory unit='MiB'>1</memory>{body}</domain>"
    )


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("", "domain XML is empty"),
        ("<domain type='kvm'><name>x</name>", "domain XML is not well-formed XML"),
        ("<capabilities/>", "root element is <capabilities>, not <domain>"),
        (_domain("", root=""), "<domain> has no type="),
        (_domain("", name=""), "missing <name>"),
        (_domain("", name="<name>  </name>"), "missing <name>"),
        (
            "<domain type='kvm'><name>x</name><uuid>u</uuid></domain>",
            "missing <memory>",
        ),
        (_domain("<currentMemory unit='parsec'>1</currentMemory>"), "unknown memory unit"),
        (_domain("<vcpu>four</vcpu>"), "<vcpu> text is 'four'"),
        (_domain("<vcpu>0</vcpu>"), "maximum must be at least 1"),
        (_domain("<vcpu current='5'>4</vcpu>"), "<vcpu current='5'> is above the maximum 4"),
        (_domain("<vcpu cpuset='0-3,^9-'>4</vcpu>"), "invalid element '^9-'"),
        (
            _domain("<vcpu>2</vcpu><cputune><vcpupin vcpu='0' cpuset='3-1'/></cputune>"),
            "invalid range '3-1' in cpuset '3-1'",
        ),
        (
            _domain("<cputune><vcpupin vcpu='0'/></cputune>"),
            "<vcpupin vcpu='0'> has no cpuset",
        ),
        (
            _domain("<cputune><vcpupin cpuset='1'/></cputune>"),
            "missing attribute 'vcpu' of <vcpupin>",
        ),
        (
            _domain(
                "<cputune><vcpupin vcpu='0' cpuset='1'/><vcpupin vcpu='0' cpuset='2'/></cputune>"
            ),
            "vCPU 0 has more than one <vcpupin>",
        ),
        (_domain("<cputune><emulatorpin cpuset=''/></cputune>"), "empty cpuset"),
        (
            _domain("<numatune><memory mode='strict' nodeset='a'/></numatune>"),
            "in nodeset 'a': 'a' is not a decimal node id",
        ),
        (
            _domain("<numatune><memnode mode='strict' nodeset='0'/></numatune>"),
            "missing attribute 'cellid' of <memnode>",
        ),
        (_domain("<vcpus><vcpu id='0' enabled='maybe'/></vcpus>"), "is 'maybe', expected yes/no"),
        (_domain("<vcpus><vcpu id='0'/></vcpus>"), "<vcpu id='0'> in <vcpus> has no enabled="),
        (
            _domain("<vcpus><vcpu id='0' enabled='yes'/><vcpu id='0' enabled='no'/></vcpus>"),
            "<vcpus> lists vCPU 0 twice",
        ),
        (
            _domain("<cpu><numa><cell id='0' cpus='0' unit='KiB'/></numa></cpu>"),
            "missing attribute 'memory' of <cell>",
        ),
        (_domain("", root="type='kvm' id='x'"), "attribute 'id' of <domain> is 'x'"),
        (
            "<!DOCTYPE d [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><domain type='kvm'>"
            "<name>&e;</name></domain>",
            "DOCTYPE/ENTITY declaration; refusing to parse it",
        ),
    ],
)
def test_malformed_domain(xml: str, message: str) -> None:
    with pytest.raises(DomainXMLError) as excinfo:
        parse_domain(xml)
    assert message in str(excinfo.value)


def test_domain_error_is_value_error_and_non_str_rejected() -> None:
    assert issubclass(DomainXMLError, ValueError)
    with pytest.raises(DomainXMLError, match="must be a str"):
        parse_domain(None)  # type: ignore[arg-type]


def test_tuning_is_frozen() -> None:
    t = load("minimal-untuned.xml")
    with pytest.raises(AttributeError):
        t.vcpu_max = 8  # type: ignore[misc]


# --- libvirt's reading (tests/libvirt/test_oracle_domain.py checks these against libvirt) ---------


def _bare(body: str) -> str:
    return f"<domain type='kvm'><name>vm</name>{body}</domain>"


def test_uuid_is_optional() -> None:
    t = parse_domain(_bare("<memory>1024</memory>"))
    assert t.uuid is None
    assert tuning_dict(t)["uuid"] is None


def test_memory_from_guest_numa_cells_when_absent() -> None:
    cells = (
        "<cpu><numa><cell id='0' cpus='0' memory='512' unit='MiB'/>"
        "<cell id='1' cpus='1' memory='1' unit='MB'/></numa></cpu>"
    )
    t = parse_domain(_bare(f"<vcpu>2</vcpu>{cells}"))
    assert t.memory_kib == t.current_memory_kib == 512 * 1024 + 977
    # a <memory> of its own is kept, as libvirt keeps it
    assert parse_domain(_bare(f"<memory>4096</memory><vcpu>2</vcpu>{cells}")).memory_kib == 4096
    with pytest.raises(DomainXMLError, match="missing <memory>"):
        parse_domain(_bare("<vcpu>2</vcpu>"))


def test_current_memory_zero_or_above_is_the_total() -> None:
    for current in ("0", "9999"):
        t = parse_domain(_bare(f"<memory>4096</memory><currentMemory>{current}</currentMemory>"))
        assert t.current_memory_kib == 4096


def test_placement_auto_ignores_vcpu_cpuset() -> None:
    t = parse_domain(_domain("<vcpu placement='auto' cpuset='junk'>2</vcpu>"))
    assert t.vcpu_placement == "auto"
    assert t.vcpu_cpuset is None
    assert t.effective_vcpu_affinity(0) is None  # numad decides: not pinned
    # libvirt's implied memory binding of an auto-placed VM
    assert (t.numatune_mode, t.numatune_nodeset, t.numatune_placement) == ("strict", None, "auto")


def test_numatune_auto_places_unpinned_vcpus_too() -> None:
    auto = "<numatune><memory placement='auto' nodeset='0'/></numatune>"
    t = parse_domain(_domain(f"<vcpu placement='static'>2</vcpu>{auto}"))
    assert (t.vcpu_placement, t.numatune_nodeset, t.numatune_placement) == ("auto", None, "auto")
    pinned = parse_domain(
        _domain(f"<vcpu>2</vcpu><cputune><emulatorpin cpuset='1'/></cputune>{auto}")
    )
    assert pinned.vcpu_placement == "static"


def test_vcpu_cpuset_of_every_id_is_no_cpuset() -> None:
    assert parse_domain(_domain("<vcpu cpuset='0-16383'>2</vcpu>")).vcpu_cpuset is None
    assert parse_domain(_domain("<vcpu cpuset='0-16382'>2</vcpu>")).vcpu_cpuset is not None


def test_pin_of_a_missing_vcpu_is_ignored_unparsed() -> None:
    pins = "<cputune><vcpupin vcpu='5' cpuset='junk'/><vcpupin vcpu='1' cpuset='3'/></cputune>"
    assert parse_domain(_domain(f"<vcpu>2</vcpu>{pins}")).vcpupin == {1: fs(3)}


def test_numatune_defaults_as_libvirt() -> None:
    t = parse_domain(_domain("<numatune><memory placement='static' nodeset='1'/></numatune>"))
    assert (t.numatune_mode, t.numatune_nodeset, t.numatune_placement) == ("strict", fs(1), None)
    with pytest.raises(DomainXMLError, match="needs a nodeset"):
        parse_domain(_domain("<numatune><memory mode='interleave'/></numatune>"))
    with pytest.raises(DomainXMLError, match="is not one of strict"):
        parse_domain(_domain("<numatune><memory mode='STRICT' nodeset='1'/></numatune>"))
