"""A balancing plan computed, approved and applied on the NUMA lab through a real Celery worker
moves a VM from cell 0 to cell 1, and the lab hypervisor agrees.

The VM that moves is the test's own (``numalab2-t<hex>``, 64 MiB preallocated, pinned to node 0's
CPUs, memory strict on node 0). With the lab's domains locked, cell 0 carries 6 vCPUs
(numalab2-node0, numalab2-remote and the test's) on its 2 CPUs while cell 1 carries 2: a policy
that spreads the load (over-commit 4) moves the test's VM to cell 1. The lab's domains are
left as the lab script made them (and re-pinned afterwards, should anything have moved them).
"""

from __future__ import annotations

import re
import time

import libvirt
import pytest
from django.test import Client

from balancing import requests as plan_requests
from balancing.models import BalancingPlan, BalancingPolicy
from changes.models import Change
from numaportal.virt.cpuset import parse_cpuset
from tests.numalab import lab
from tests.numalab.conftest import TASK_WAIT
from vms import sync as host_sync
from vms.models import VirtualMachine

pytestmark = [pytest.mark.numalab, pytest.mark.django_db(transaction=True)]

MEMORY_MIB = 64
REASON = "numalab: spread cell 0's load"


def wait_for(plan: BalancingPlan, statuses: set[str], timeout: float = TASK_WAIT) -> BalancingPlan:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plan.refresh_from_db()
        if plan.status in statuses:
            return plan
        time.sleep(0.5)
    pytest.fail(f"plan still {plan.status} after {timeout:.0f} s: {plan.error} {plan.outcome}")


def test_a_plan_moves_a_vm_to_the_other_cell(
    worker_host, operator, define_domain, restore_lab_domains
) -> None:
    dom = define_domain(
        memory_mib=MEMORY_MIB,
        vcpupin={0: "0", 1: "1"},
        emulatorpin="0-1",
        nodeset="0",
        preallocate=True,
    )
    name = dom.name()
    dom.create()
    lab.wait_state(dom, libvirt.VIR_DOMAIN_RUNNING)
    host = host_sync.sync_host(worker_host.pk)
    lab_vms = VirtualMachine.objects.filter(host=host, name__in=list(lab.LAB_DOMAINS))
    assert lab_vms.update(balancing_locked=True) == 3
    BalancingPolicy.objects.create(host=host, strategy="spread", cpu_overcommit=4.0)
    vm = VirtualMachine.objects.get(host=host, name=name)
    assert (vm.cells, vm.memory_cells) == ("0", "0")
    lab_before = lab.guest_tunings(list(lab.LAB_DOMAINS), "--config")

    plan = wait_for(plan_requests.request_plan(host, operator), {"ready", "not_needed", "error"})
    assert plan.status == "ready", (plan.error, plan.notes)
    moved = sorted(n for n, a in plan.after.items() if a["moved"])
    assert moved == [name], plan.after  # the locked lab domains stay
    proposal = plan.after[name]
    assert proposal["cells"] == "1" and proposal["nodeset"] == "1", proposal
    assert plan.improvement_pct and plan.improvement_pct > 0

    plan_requests.approve_plan(plan, operator, REASON)
    plan = wait_for(plan, {"applied", "apply_failed"})
    assert plan.status == "applied", plan.outcome

    records = list(Change.objects.filter(group_id=plan.id))
    assert [(r.target_name, r.kind, r.status) for r in records] == [
        (name, "plan_move", "succeeded")
    ], [(r.target_name, r.error, r.outcome) for r in records]
    record = records[0]
    assert record.reason == REASON and record.scope == "live+config"
    assert "memory bound to node(s) 1 from the next boot" in record.outcome

    # Inside the guest: what the plan said, live and in the config; memory binding in the
    # config (libvirt refuses a new strict nodeset for a running domain).
    want_pins = {int(v): parse_cpuset(c) for v, c in proposal["vcpupin"].items()}
    want_emulator = parse_cpuset(proposal["emulatorpin"])
    assert all(cpus <= {2, 3} for cpus in want_pins.values()) and want_emulator <= {2, 3}
    live, config = lab.guest_tuning(name, "--live"), lab.guest_tuning(name, "--config")
    assert live.vcpupin == config.vcpupin == want_pins
    assert live.emulatorpin == config.emulatorpin == want_emulator
    assert config.numatune == {"numa_mode": "strict", "numa_nodeset": proposal["nodeset"]}
    assert live.numatune == {"numa_mode": "strict", "numa_nodeset": "0"}  # until the next boot
    # The locked lab domains were not touched.
    assert lab.guest_tunings(list(lab.LAB_DOMAINS), "--config") == lab_before

    # The portal sees the move at once (the worker refreshed the VM from its after state).
    vm.refresh_from_db()
    assert vm.cells == "1"
    assert vm.drift  # live numatune 0, config 1: "live-only: lost at next shutdown"

    # At the next boot the memory follows: all of the guest's RAM on node 1.
    dom.destroy()
    dom.create()
    lab.wait_state(dom, libvirt.VIR_DOMAIN_RUNNING)
    memory = lab.memory_once_allocated(name, at_least_mib=MEMORY_MIB)
    assert memory.numa_maps["anon"].get(1, 0) >= MEMORY_MIB, memory.describe()
    print(memory.describe())


def test_a_plan_moves_an_unbound_vms_memory_with_its_vcpus_without_a_reboot(
    worker_host, operator, define_domain, restore_lab_domains, sample_on_host
) -> None:
    """No numatune: the plan's memory_move right after its plan_move migrates its pages, so its
    vCPUs and its memory end on the same cell while it keeps running."""
    dom = define_domain(
        memory_mib=MEMORY_MIB, vcpupin={0: "0", 1: "1"}, emulatorpin="0-1", preallocate=True
    )
    name = dom.name()
    dom.create()
    lab.wait_state(dom, libvirt.VIR_DOMAIN_RUNNING)
    assert lab.memory_once_allocated(name, at_least_mib=MEMORY_MIB).numa_maps["anon"].get(0, 0)
    host = host_sync.sync_host(worker_host.pk)
    lab_vms = VirtualMachine.objects.filter(host=host, name__in=list(lab.LAB_DOMAINS))
    assert lab_vms.update(balancing_locked=True) == 3
    BalancingPolicy.objects.create(host=host, strategy="spread", cpu_overcommit=4.0)
    sample_on_host()  # its memory per cell, for the plan page's before -> after

    plan = wait_for(plan_requests.request_plan(host, operator), {"ready", "not_needed", "error"})
    assert plan.status == "ready", (plan.error, plan.notes)
    assert plan.after[name]["cells"] == "1", plan.after
    viewer = Client()
    viewer.force_login(operator)
    page = viewer.get(plan.get_absolute_url()).content.decode()
    assert 'data-memory-live="yes"' in page and "moves live to node 1" in page
    # Its memory per cell before (the sample) and predicted after: all of it on cell 1.
    assert re.search(r"MiB per cell: 0: \d+.*1: \d+", page), page[page.find(name) :][:2000]

    plan_requests.approve_plan(plan, operator, REASON)
    plan = wait_for(plan, {"applied", "apply_failed"})
    assert plan.status == "applied", plan.outcome
    records = sorted(
        Change.objects.filter(group_id=plan.id), key=lambda r: (r.params["step"], r.kind)
    )
    assert [(r.target_name, r.kind, r.status) for r in records] == [
        (name, "memory_move", "succeeded"),
        (name, "plan_move", "succeeded"),
    ], [(r.kind, r.error, r.outcome) for r in records]
    memory = next(r for r in records if r.kind == "memory_move")
    assert memory.params["method"] == "migratepages" and memory.finished_at > next(
        r.finished_at for r in records if r.kind == "plan_move"
    )

    # Still the same QEMU (no reboot): its vCPUs on node 1, and now its memory too.
    witness = lab.guest_memory(name)
    anon = witness.numa_maps["anon"]
    assert anon.get(1, 0) >= 0.95 * sum(anon.values()), witness.describe()
    assert all(cpus <= {2, 3} for cpus in lab.guest_tuning(name, "--live").vcpupin.values())
    print(memory.outcome, witness.describe())
