"""changes.kinds.validation.check_change: every refusal names its form field and the reason;
hypothesis over the cpuset field. Pure: a VmFacts and a topology from a capabilities fixture, no
database."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from hypothesis import example, given
from hypothesis import strategies as st

from changes.kinds.facts import VmFacts
from changes.kinds.hotadd import FLOATS
from changes.kinds.setvcpus import MAXIMUM_CONFIG_ONLY
from changes.kinds.validation import check_change
from numaportal.virt.cpuset import CpusetError, format_cpuset, parse_cpuset
from numaportal.virt.topology import parse_capabilities

pytestmark = pytest.mark.unit

CAPS = Path(__file__).parent.parent / "fixtures" / "capabilities"
# The seed's IBM 3650M4 shape: 2 cells, CPUs 0-23, cell 1 holds 6-11 and 18-23.
TOPOLOGY = parse_capabilities((CAPS / "x86_64-2node-24cpu-ht.xml").read_text())
RUNNING = VmFacts(
    name="vm1",
    running=True,
    vcpu_max_config=4,
    vcpu_current_config=2,
    vcpu_max_live=4,
    vcpu_current_live=2,
)
STOPPED = VmFacts(name="vm2", running=False, vcpu_max_config=4, vcpu_current_config=2)


def errors_of(*args, **kwargs) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        check_change(*args, **kwargs)
    return info.value.message_dict


def test_topology_is_the_seeds() -> None:
    assert TOPOLOGY.cpu_ids == frozenset(range(24))
    assert TOPOLOGY.cell_ids == frozenset({0, 1})


# --- accepted, normalised -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params", "scope", "expected"),
    [
        ("vcpupin", {"vcpu": 0, "cpuset": "22"}, "live+config", {"vcpu": 0, "cpuset": "22"}),
        ("vcpupin", {"vcpu": "3", "cpuset": "23,22"}, "live", {"vcpu": 3, "cpuset": "22-23"}),
        ("emulatorpin", {"cpuset": "18-23"}, "live", {"cpuset": "18-23"}),
        (
            "numatune",
            {"mode": "strict", "nodeset": "1"},
            "config",
            {"mode": "strict", "nodeset": "1"},
        ),
        (
            "numatune",
            {"mode": "interleave", "nodeset": "0-1"},
            "live",
            {"mode": "interleave", "nodeset": "0-1"},
        ),
        # RUNNING is neither pinned nor bound to cells: its new vCPU floats, and says so
        ("setvcpus", {"count": 3}, "live", {"count": 3, "placement": {"2": FLOATS}}),
        (
            "setvcpus",
            {"count": 3, "online_in_guest": True},
            "live",
            {"count": 3, "online_in_guest": True, "placement": {"2": FLOATS}},
        ),
        ("setvcpus", {"count": 3}, "config", {"count": 3}),
        ("setvcpus", {"maximum": 8}, "config", {"maximum": 8}),
        ("guest_vcpus", {"cpus": "1", "online": False}, "live", {"cpus": "1", "online": False}),
        (
            "guest_vcpus",
            {"cpus": "1", "online": True},
            "live+config",
            {"cpus": "1", "online": True},
        ),
    ],
)
def test_valid_changes_are_normalised(kind, params, scope, expected) -> None:
    assert check_change(RUNNING, TOPOLOGY, kind, params, scope) == expected


def test_config_change_of_a_stopped_vm() -> None:
    assert check_change(STOPPED, TOPOLOGY, "vcpupin", {"vcpu": 3, "cpuset": "0"}, "config") == {
        "vcpu": 3,
        "cpuset": "0",
    }


# --- refused, by field ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "kind", "params", "scope", "field", "fragment"),
    [
        (RUNNING, "vcpupin", {"vcpu": 4, "cpuset": "1"}, "live", "vcpu", "maximum is 4 vCPUs"),
        (RUNNING, "vcpupin", {"vcpu": -1, "cpuset": "1"}, "live", "vcpu", "at least 0"),
        (RUNNING, "vcpupin", {"vcpu": True, "cpuset": "1"}, "live", "vcpu", "whole number"),
        (
            RUNNING,
            "vcpupin",
            {"vcpu": 0, "cpuset": "24"},
            "live",
            "cpuset",
            "CPU 24 does not exist",
        ),
        (
            RUNNING,
            "vcpupin",
            {"vcpu": 0, "cpuset": "0-1,^0,^1"},
            "live",
            "cpuset",
            "excludes every CPU",
        ),
        (RUNNING, "vcpupin", {"vcpu": 0, "cpuset": ""}, "live", "cpuset", "required"),
        (RUNNING, "emulatorpin", {"cpuset": "x"}, "live", "cpuset", ""),
        (RUNNING, "numatune", {"mode": "bind", "nodeset": "0"}, "config", "mode", "unknown mode"),
        (
            RUNNING,
            "numatune",
            {"mode": "strict", "nodeset": "2"},
            "config",
            "nodeset",
            "node 2 does not exist",
        ),
        (RUNNING, "setvcpus", {"count": 5}, "live", "count", "exceeds the live maximum of 4"),
        (RUNNING, "setvcpus", {"count": 0}, "live", "count", "at least 1"),
        (RUNNING, "setvcpus", {"count": 2, "maximum": 8}, "config", "count", "either"),
        (RUNNING, "setvcpus", {"maximum": 8}, "live+config", "maximum", MAXIMUM_CONFIG_ONLY),
        (RUNNING, "guest_vcpus", {"cpus": "2", "online": True}, "live", "cpus", "not plugged in"),
        (RUNNING, "guest_vcpus", {"cpus": "0", "online": False}, "live", "cpus", "CPU 0 cannot"),
        (
            RUNNING,
            "guest_vcpus",
            {"cpus": "1", "online": "maybe"},
            "live",
            "online",
            "true or false",
        ),
        (RUNNING, "guest_vcpus", {"cpus": "1", "online": True}, "config", "scope", "choose live"),
        (RUNNING, "vcpupin", {"vcpu": 0, "cpuset": "1"}, "both", "scope", "unknown scope"),
        (STOPPED, "vcpupin", {"vcpu": 0, "cpuset": "1"}, "live+config", "scope", "not running"),
    ],
)
def test_refusals_name_the_field(facts, kind, params, scope, field, fragment) -> None:
    errors = errors_of(facts, TOPOLOGY, kind, params, scope)
    assert field in errors, errors
    assert fragment in " ".join(errors[field])


def test_unknown_kind_and_unsynced_host() -> None:
    assert "kind" in errors_of(RUNNING, TOPOLOGY, "reboot", {}, "live")
    errors = errors_of(RUNNING, None, "vcpupin", {"vcpu": 0, "cpuset": "0"}, "live")
    assert "never synced" in errors["__all__"][0]


def test_gone_vm_is_refused() -> None:
    gone = VmFacts(**{**RUNNING.__dict__, "gone": True})
    errors = errors_of(gone, TOPOLOGY, "emulatorpin", {"cpuset": "0"}, "live")
    assert "no longer on its host" in errors["__all__"][0]


# --- hypothesis over the cpuset field ---------------------------------------------------------


@given(st.text(alphabet="0123456789,-^ x", max_size=20))
@example("22")
@example("0-23")
@example("24")
@example("1-0")
@example(",")
def test_any_cpuset_text_is_accepted_iff_it_parses_to_host_cpus(text: str) -> None:
    try:
        parsed: frozenset[int] | None = parse_cpuset(text.strip())
    except CpusetError:
        parsed = None
    if not text.strip():
        parsed = None
    params = {"vcpu": 0, "cpuset": text}
    if parsed is not None and parsed <= TOPOLOGY.cpu_ids:
        result = check_change(RUNNING, TOPOLOGY, "vcpupin", params, "live+config")
        assert parse_cpuset(result["cpuset"]) == parsed
        assert result["cpuset"] == format_cpuset(parsed)
    else:
        errors = errors_of(RUNNING, TOPOLOGY, "vcpupin", params, "live+config")
        assert list(errors) == ["cpuset"]
        assert all(message for message in errors["cpuset"])


@given(st.frozensets(st.integers(min_value=0, max_value=40), min_size=1))
def test_cpus_outside_the_host_are_named(cpus: frozenset[int]) -> None:
    params = {"cpuset": format_cpuset(cpus)}
    missing = cpus - TOPOLOGY.cpu_ids
    if missing:
        errors = errors_of(RUNNING, TOPOLOGY, "emulatorpin", params, "live")
        assert format_cpuset(missing) in errors["cpuset"][0]
    else:
        assert check_change(RUNNING, TOPOLOGY, "emulatorpin", params, "live") == params
