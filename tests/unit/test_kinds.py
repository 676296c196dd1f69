"""The registry of change kinds: one module per ``Change.Kind``, each with every hook; the
pure parts of the kinds (validation, read-back) on a capabilities fixture, no database."""

from __future__ import annotations

import importlib
import inspect
from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError

from changes.kinds import registry
from changes.kinds import setvcpus as setvcpus_kind
from changes.kinds.base import HOOKS, ChangeKind, Requested, Target
from changes.kinds.facts import HostFacts
from changes.kinds.fields import Errors
from changes.kinds.validation import check_change, effective_scope
from changes.models import Change
from tests.unit.test_validation import RUNNING, TOPOLOGY

pytestmark = pytest.mark.unit


def change(kind: str, params: dict, scope: str = "live+config") -> SimpleNamespace:
    return SimpleNamespace(kind=kind, params=params, scope=scope)


# --- the registry -----------------------------------------------------------------------------


def test_the_registry_holds_exactly_the_kinds_of_the_model_in_its_order() -> None:
    assert [kind.name for kind in registry.all()] == list(Change.Kind.values)
    assert registry.choices() == list(Change.Kind.choices)


@pytest.mark.parametrize("name", Change.Kind.values)
def test_each_kind_is_its_own_module_with_every_hook(name: str) -> None:
    module = importlib.import_module(f"changes.kinds.{name}")
    kind = module.KIND
    assert registry.get(name) is kind and registry.find(name) is kind
    assert isinstance(kind, ChangeKind) and kind.name == name
    assert not inspect.isabstract(type(kind)), type(kind).__abstractmethods__
    assert kind.target in (Target.VM, Target.HOST)
    for hook in HOOKS:
        assert callable(getattr(kind, hook, None)), f"{name} lacks {hook}"


def test_unknown_kinds_are_not_found() -> None:
    assert registry.find("placement") is None and registry.find(None) is None
    with pytest.raises(KeyError, match="unknown kind of change 'reboot'"):
        registry.get("reboot")


def test_request_change_takes_the_vm_kinds_an_operator_asks_for() -> None:
    assert [k.name for k in registry.requestable()] == [
        "vcpupin",
        "emulatorpin",
        "numatune",
        "setvcpus",
        "guest_vcpus",
        "memory_move",
    ]
    assert registry.get("numa_balancing").target is Target.HOST
    assert registry.get("plan_move").target is Target.VM


@pytest.mark.parametrize("kind", ["reboot", "placement", "plan_move", "numa_balancing"])
def test_an_unknown_kind_is_refused_with_the_same_message_as_before(kind: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_change(RUNNING, TOPOLOGY, kind, {}, "live")
    assert info.value.message_dict == {
        "kind": [
            f"unknown kind of change {kind!r}: expected one of vcpupin, emulatorpin, numatune, "
            "setvcpus, guest_vcpus, memory_move"
        ]
    }


def test_effective_scope() -> None:
    assert effective_scope("guest_vcpus", "live+config") == "live"
    assert effective_scope("guest_vcpus", "config") == "config"
    assert effective_scope("vcpupin", "live+config") == "live+config"
    assert registry.get("numa_balancing").effective_scope("live+config") == "live"


# --- read-back (verify) -----------------------------------------------------------------------


def tuning(pin: str | None, mode: str = "strict", nodeset: str = "1") -> dict:
    return {"vcpupin": {"0": pin}, "numatune_mode": mode, "numatune_nodeset": nodeset}


def test_verify_names_each_part_that_differs() -> None:
    after = {"live_tuning": tuning("1"), "config_tuning": tuning("2")}
    vcpupin = registry.get("vcpupin")
    assert vcpupin.verify(change("vcpupin", {"vcpu": 0, "cpuset": "1"}), after) == [
        "vCPU 0 is pinned to 2 config, not 1"
    ]
    assert vcpupin.verify(change("vcpupin", {"vcpu": 0, "cpuset": "1"}, "live"), after) == []
    numatune = registry.get("numatune")
    wanted = {"mode": "interleave", "nodeset": "0-1"}
    assert numatune.verify(change("numatune", wanted, "config"), after) == [
        "numatune is strict 1 config, not interleave 0-1"
    ]


def test_verify_of_a_plan_move_checks_numatune_in_the_config_only() -> None:
    params = {"vcpupin": {"0": "1"}, "emulatorpin": "1", "mode": "strict", "nodeset": "0"}
    after = {
        "live_tuning": tuning("1", nodeset="1"),
        "config_tuning": tuning("1", nodeset="1"),
        "emulatorpin_live": "1",
        "emulatorpin_config": "0-23",
    }
    assert registry.get("plan_move").verify(change("plan_move", params), after) == [
        "emulator affinity is 0-23 config, not 1",
        "numatune is strict 1 config, not strict 0",
    ]


def test_verify_of_setvcpus_and_numa_balancing() -> None:
    after = {"vcpucount": {"current_live": 3, "current_config": 2, "max_config": 4}}
    setvcpus = registry.get("setvcpus")
    assert setvcpus.verify(change("setvcpus", {"count": 3}), after) == ["2 vCPUs config, not 3"]
    assert setvcpus.verify(change("setvcpus", {"maximum": 8}, "config"), after) == [
        "maximum is 4 in the config, not 8"
    ]
    balancing = registry.get("numa_balancing")
    assert balancing.verify(change("numa_balancing", {"value": 0}), {"numa_balancing": 0}) == []
    assert balancing.verify(change("numa_balancing", {"value": 0}), {"numa_balancing": 1}) == [
        "numa_balancing is 1, not 0 as requested"
    ]


def test_verify_of_a_hot_add_reads_the_new_vcpus_pins_back_in_each_part() -> None:
    setvcpus = registry.get("setvcpus")
    params = {"count": 3, "vcpupin": {"2": "3"}, "placement": {"2": "dedicated, ..."}}
    counts = {"current_live": 3, "current_config": 3}
    right = {"vcpucount": counts, "live_tuning": tuning("3"), "config_tuning": tuning("3")}
    right["live_tuning"]["vcpupin"] = {"2": "3"}
    right["config_tuning"]["vcpupin"] = {"2": "3"}
    assert setvcpus.verify(change("setvcpus", params), right) == []
    floating = {**right, "config_tuning": {**right["config_tuning"], "vcpupin": {}}}
    assert setvcpus.verify(change("setvcpus", params), floating) == [
        "vCPU 2 is pinned to none config, not 3"
    ]
    assert setvcpus.verify(change("setvcpus", params, "live"), floating) == []


def test_a_hot_add_placed_for_another_live_count_changes_nothing() -> None:
    setvcpus = registry.get("setvcpus")
    params = {"count": 3, "vcpupin": {"2": "3"}, "placement": {"2": "dedicated, ..."}}
    before = {"vcpucount": {"current_live": 3}}  # someone hot-added one outside the portal
    assert setvcpus.apply(None, change("setvcpus", params), before) == (
        "the VM has 3 vCPUs live, not 2 as when the change was validated: where the new vCPUs "
        "go was decided for 2; sync the host and ask again",
        "nothing was changed on the host",
    )


def test_the_outcome_words_of_a_placement_group_vcpus_placed_alike() -> None:
    params = {
        "count": 5,
        "vcpupin": {"2": "6-11", "3": "6-11", "4": "7"},
        "placement": {"2": "shared pool of cell 1", "3": "shared pool of cell 1", "4": "d"},
    }
    assert setvcpus_kind.placement_words(params, "live+config") == [
        "vCPUs 2-3 pinned to CPUs 6-11 (shared pool of cell 1) live and in the config",
        "vCPU 4 pinned to CPU 7 (d) live and in the config",
    ]
    assert setvcpus_kind.placement_words(params, "live", frozenset({4})) == [
        "vCPU 4 pinned to CPU 7 (d) live"
    ]
    floats = {"count": 3, "placement": {"2": "not pinned: why"}}
    assert setvcpus_kind.placement_words(floats, "live") == ["vCPU 2 not pinned: why"]


# --- validation of the kinds with their own entry point ---------------------------------------


def validate(name: str, facts, params: dict, scope: str = "live+config") -> tuple[dict, dict]:
    errors = Errors()
    out = registry.get(name).validate(Requested(facts, TOPOLOGY, params, scope), errors)
    return out, errors.errors


def test_a_plan_move_is_checked_against_the_topology() -> None:
    params = {
        "plan": "p",
        "step": 1,
        "cells": "1",
        "vcpupin": {"0": "7,6", "1": "8"},
        "emulatorpin": "9",
        "mode": "strict",
        "nodeset": "1",
    }
    out, errors = validate("plan_move", RUNNING, params)
    assert errors == {}
    assert out == {**params, "vcpupin": {"0": "6-7", "1": "8"}}
    bad = {**params, "vcpupin": {"7": "1", "0": "99"}, "emulatorpin": "", "nodeset": "4"}
    out, errors = validate("plan_move", RUNNING, {**bad, "mode": "bind"})
    assert out == {}
    assert set(errors) == {"vcpupin", "emulatorpin", "mode", "nodeset"}
    assert "vCPU 7 does not exist" in errors["vcpupin"][0]
    assert "CPU 99 does not exist" in errors["vcpupin"][1]


def test_numa_balancing_is_refused_by_field() -> None:
    host = HostFacts(name="hv1", is_removed=False, worker_queue="host.hv1")
    assert validate("numa_balancing", host, {"value": 0}) == ({"value": 0}, {})
    plain = HostFacts(name="plain", is_removed=False, worker_queue="")
    out, errors = validate("numa_balancing", plain, {"value": 2})
    assert out == {} and set(errors) == {"worker_queue", "value"}
    gone = HostFacts(name="old", is_removed=True, worker_queue="host.old")
    assert set(validate("numa_balancing", gone, {"value": True})[1]) == {"host", "value"}
