"""memory_move's validation: which VMs can have their memory moved live and how, and the
refusal (with the way instead) for the others. Pure: stored facts and a capabilities fixture."""

from __future__ import annotations

from dataclasses import replace

import pytest
from django.core.exceptions import ValidationError

from changes.kinds.memory_move import refusal
from changes.kinds.validation import check_change, effective_scope
from tests.unit.test_validation import RUNNING, STOPPED, TOPOLOGY

pytestmark = pytest.mark.unit

ON_HOST = replace(RUNNING, host_worker_queue="host.hv1", host_name="hv1")


def errors(facts, params, scope="live") -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        check_change(facts, TOPOLOGY, "memory_move", params, scope)
    return info.value.message_dict


def test_an_unbound_vm_moves_by_page_migration() -> None:
    assert check_change(ON_HOST, TOPOLOGY, "memory_move", {"cells": "1"}, "live") == {
        "cells": "1",
        "method": "migratepages",
    }


def test_a_restrictive_vm_moves_through_libvirt() -> None:
    facts = replace(ON_HOST, numatune_mode="restrictive")
    assert check_change(facts, TOPOLOGY, "memory_move", {"cells": "0-1"}, "live+config") == {
        "cells": "0-1",
        "method": "numatune",
    }
    assert effective_scope("memory_move", "config") == "live"  # memory moves now, or not


def test_a_strict_vm_is_refused_with_the_reason_and_the_way() -> None:
    got = errors(replace(ON_HOST, numatune_mode="strict"), {"cells": "1"})
    (message,) = got["cells"]
    assert message.startswith("vm1's memory cannot be moved live: its numatune is strict")
    assert "can't change nodeset for strict mode for running domain" in message
    assert "in config scope" in message and "restrictive" in message
    assert message.endswith(refusal("strict"))


@pytest.mark.parametrize("mode", ["preferred", "interleave"])
def test_preferred_and_interleave_are_refused(mode: str) -> None:
    (message,) = errors(replace(ON_HOST, numatune_mode=mode), {"cells": "1"})["cells"]
    assert f"its numatune is {mode}" in message and "Change its numatune first" in message


def test_it_needs_the_hosts_own_worker_and_cells_that_exist() -> None:
    got = errors(RUNNING, {"cells": "7"})
    assert got["worker_queue"] == [
        "moving memory reads the VM's numa_maps on its host: host  has no on-host worker "
        "(worker_queue)"
    ]
    assert got["cells"] and "7" in got["cells"][0]


def test_a_stopped_vm_has_no_memory_to_move() -> None:
    got = errors(replace(STOPPED, host_worker_queue="host.hv1"), {"cells": "1"})
    assert "vm2 is not running" in got["scope"][0]
