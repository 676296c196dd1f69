"""Hot-add keeps placement on the NUMA lab: a vCPU hot-added to a running domain pinned to node 1
is pinned to node 1's CPUs (2-3), live and in the config, in the same change, as the record's
params say, and the lab hypervisor's own ``virsh vcpupin`` (inside the guest) agrees.

The domain is the test's own (``numalab2-t<hex>``, 2 of 3 vCPUs, vCPUs on CPUs 2 and 3, memory
strict on node 1), destroyed and undefined afterwards. Cell 1's shared pool (CPUs 2-3) also holds
the lab's own ``numalab2-node1`` (2 vCPUs pinned there), so the host's default policy (no
over-commit) refuses the hot-add at validation; the test gives the host a policy with over-commit
4 and the hot-add goes through.
"""

from __future__ import annotations

import libvirt
import pytest
from django.core.exceptions import ValidationError

from balancing.models import BalancingPolicy
from changes.models import Change
from changes.requests import request_change
from tests.change_wait import wait_for_change
from tests.numalab import lab
from tests.numalab.conftest import TASK_WAIT
from vms import sync as host_sync
from vms.models import VirtualMachine

pytestmark = [pytest.mark.numalab, pytest.mark.django_db(transaction=True)]

NODE1_CPUS = frozenset({2, 3})
REASON = "numalab: one more vCPU, on node 1 like the others"


def finished(change: Change) -> Change:
    """Until the worker has ended the record (succeeded or failed), then the record."""
    wait_for_change(change, TASK_WAIT)
    change.refresh_from_db()
    assert change.is_finished, change.status
    return change


def hot_add(operator, vm: VirtualMachine) -> Change:
    return request_change(
        actor=operator,
        target=vm,
        kind="setvcpus",
        params={"count": 3},
        scope="live+config",
        reason=REASON,
    )


def test_a_vcpu_hot_added_to_a_domain_on_node_1_is_pinned_to_node_1(
    worker_host, operator, define_domain
) -> None:
    dom = define_domain(vcpupin={0: "2", 1: "3"}, emulatorpin="2-3", nodeset="1", max_vcpus=3)
    name = dom.name()
    dom.create()
    lab.wait_state(dom, libvirt.VIR_DOMAIN_RUNNING)
    host_sync.sync_host(worker_host.pk)
    vm = VirtualMachine.objects.get(host=worker_host, uuid=dom.UUIDString())
    assert (vm.vcpu_current_live, vm.vcpu_max_live, vm.pinning, vm.cells) == (
        2,
        3,
        "pinned",
        "1",
    )

    # No policy yet: cell 1's pool of 2 CPUs would hold more shared vCPUs than it has CPUs.
    with pytest.raises(ValidationError) as refused:
        hot_add(operator, vm)
    (message,) = refused.value.message_dict["count"]
    assert message.startswith("the shared pool of cell 1 (CPUs 2-3) would hold "), message
    assert "CPU over-commit 1 x 2 CPUs allows 2" in message, message
    assert not Change.objects.filter(vm=vm, kind="setvcpus").exists()

    BalancingPolicy.objects.create(host=worker_host, cpu_overcommit=4.0)
    record = finished(hot_add(operator, vm))
    assert record.status == Change.Status.SUCCEEDED, (record.error, record.outcome)
    assert record.params == {
        "count": 3,
        "vcpupin": {"2": "2-3"},
        "placement": {"2": "shared pool of cell 1"},
    }
    assert (
        "vCPU 2 pinned to CPUs 2-3 (shared pool of cell 1) live and in the config" in record.outcome
    ), record.outcome
    for part in ("live", "config"):
        assert record.after[f"{part}_tuning"]["vcpupin"]["2"] == "2-3"
        assert record.after["vcpucount"][f"current_{part}"] == 3

    # Inside the guest, the lab hypervisor's own view: live and in the config.
    live = lab.guest_tuning(name, "--live")
    config = lab.guest_tuning(name, "--config")
    assert live.vcpupin == {0: {2}, 1: {3}, 2: NODE1_CPUS}, live
    assert config.vcpupin[2] == NODE1_CPUS, config
    assert config.vcpupin[0] == {2} and config.vcpupin[1] == {3}, config

    # The portal, after the worker's refresh, sees the new vCPU on cell 1: still one cell.
    vm.refresh_from_db()
    assert vm.vcpu_current_live == 3
    assert vm.vcpus.get(vcpu=2).pin_live == "2-3"
    host_sync.sync_host(worker_host.pk)
    vm.refresh_from_db()
    assert (vm.pinning, vm.cells, vm.cross_node) == ("pinned", "1", False)
