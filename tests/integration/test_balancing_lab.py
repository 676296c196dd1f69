"""A balancing plan computed, approved and applied on the real lab host through Celery.

Two throwaway ``numatest-*`` domains (running under QEMU) are the VMs that move; the lab's own
``numalab-*`` VMs are marked locked, so the plan leaves them alone (and the test checks that).
The policy reserves CPU 0 for the host, so the plan pins the throwaways' vCPUs and emulator to
CPU 1 and binds their memory to node 0: a real move on this one-cell, two-CPU machine.
"""

from __future__ import annotations

import time

import pytest

from balancing import apply as plan_apply
from balancing import compute as plan_compute
from balancing import requests as plan_requests
from balancing.models import BalancingPlan, BalancingPolicy
from changes.models import Change
from tests.virsh_cli import virsh, virsh_vcpupin
from vms import requests as host_requests
from vms import sync as host_sync
from vms.models import VirtualMachine

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for(plan: BalancingPlan, statuses: set[str], timeout: float = 120.0) -> BalancingPlan:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plan.refresh_from_db()
        if plan.status in statuses:
            return plan
        time.sleep(0.3)
    pytest.fail(f"plan still {plan.status} after {timeout} s: {plan.error} {plan.outcome}")


def lab_host(queue: str, domains):
    for dom in domains:
        dom.create()
    host = host_requests.register_host(
        name="lab", uri="qemu:///system", worker_queue=queue, queue_first_sync=False
    )
    host = host_sync.sync_host(host.pk)
    assert host.sync_status == "ok", host.last_error
    VirtualMachine.objects.filter(host=host, name__startswith="numalab-").update(
        balancing_locked=True
    )
    # Locked lab VMs keep their 6 vCPUs on the pool; the two throwaways add 4: 10 on 1 CPU.
    BalancingPolicy.objects.create(host=host, reserved="0", cpu_overcommit=16.0)
    return host


def test_a_plan_is_applied_with_one_record_per_vm(define_throwaway, worker_queue, operator):
    doms = [define_throwaway(), define_throwaway()]
    names = sorted(d.name() for d in doms)
    host = lab_host(worker_queue, doms)
    lab_pins_before = virsh_vcpupin("numalab-small1", "--config")

    plan = plan_requests.request_plan(host, operator)
    plan = wait_for(plan, {"ready", "not_needed", "error"})
    assert plan.status == "ready", plan.error
    moved = sorted(name for name, a in plan.after.items() if a["moved"])
    assert moved == names  # the locked lab VMs stay where they are

    plan_requests.approve_plan(plan, operator, "integration: keep CPU 0 for the host")
    plan = wait_for(plan, {"applied", "apply_failed"})
    assert plan.status == "applied", plan.outcome

    records = Change.objects.filter(group_id=plan.id)
    assert sorted(records.values_list("target_name", flat=True)) == names
    assert {r.kind for r in records} == {"plan_move"}
    assert {r.status for r in records} == {"succeeded"}, [r.error for r in records]
    assert all(r.reason == "integration: keep CPU 0 for the host" for r in records)
    for name in names:
        # Independent witness: virsh, live and in the persistent config.
        live, config = virsh_vcpupin(name, "--live"), virsh_vcpupin(name, "--config")
        # The two online vCPUs moved; the two offline ones (of 4) keep floating.
        assert live[0] == live[1] == config[0] == config[1] == frozenset({1})
        assert virsh("emulatorpin", name, "--live").split()[-1] == "1"
        numatune = {
            k.strip(): v.strip()
            for k, _, v in (
                line.partition(":") for line in virsh("numatune", name, "--config").splitlines()
            )
            if v
        }
        assert numatune == {"numa_mode": "strict", "numa_nodeset": "0"}
    assert virsh_vcpupin("numalab-small1", "--config") == lab_pins_before


def test_applying_stops_at_the_first_failure(define_throwaway, operator):
    doms = [define_throwaway(), define_throwaway()]
    # No worker consumes this queue: the test runs the worker path itself, in order.
    host = lab_host("host.nobody-listens", doms)
    plan = plan_requests.request_plan(host, operator)
    plan_compute.compute_plan(str(plan.pk))
    plan.refresh_from_db()
    assert plan.status == "ready", plan.error
    plan_requests.approve_plan(plan, operator, "integration: first one fails")
    plan.refresh_from_db()
    first, second = plan.apply_order
    next(d for d in doms if d.name() == first).destroy()  # shut off under the plan's feet

    plan = plan_apply.apply_plan(str(plan.pk))
    assert plan.status == "apply_failed"
    by_vm = {c.target_name: c for c in Change.objects.filter(group_id=plan.id)}
    assert by_vm[first].status == "failed" and by_vm[first].error
    assert by_vm[second].status == "cancelled"
    assert f"VM {first}" in by_vm[second].outcome
    assert f"not attempted: {second}" in plan.outcome
    # The second VM was not touched: still free to float over both CPUs.
    assert set(virsh_vcpupin(second, "--config").values()) == {frozenset({0, 1})}
