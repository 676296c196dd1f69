"""Hot-add keeps placement, end to end on the real lab daemon (qemu:///system, one cell of two
CPUs without SMT), through a real Celery worker: a vCPU hot-added to a pinned or cell-bound VM
is pinned where validation placed it (the record's ``vcpupin``), live and in the config, in the
same change, and ``virsh vcpupin`` (live and ``--config``) and the persistent XML agree; what
the cell has no room for is refused at validation and never queued.

The domains are the diskless throwaways of tests/integration/conftest.py (2 of 4 vCPUs); the
helpers and fixtures are those of tests/integration/test_changes.py. The lab is shared: other
domains on it may be pinned too, so counts of other VMs' vCPUs are matched, not spelled out.
"""

from __future__ import annotations

import re

import libvirt
import pytest
from django.core.exceptions import ValidationError

from balancing.models import BalancingPolicy
from changes.models import Change
from numaportal.virt.cpuset import parse_cpuset
from numaportal.virt.numatune import NUMATUNE_MODES
from tests.integration.test_changes import change, virsh_vcpucount, vm_row, wait
from tests.virsh_cli import virsh, virsh_vcpupin
from vms.models import VirtualMachine

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def actor(django_user_model):
    return django_user_model.objects.create_superuser("ops-hotadd", "", "ops-hotadd-pass-123")


def pin_all(actor, vm, cpuset: str) -> VirtualMachine:
    """Pin vCPUs 0 and 1 to *cpuset*, live and in the config, through the portal; the row."""
    for vcpu in (0, 1):
        pinned = wait(change(actor, vm, "vcpupin", {"vcpu": vcpu, "cpuset": cpuset}))
        assert pinned.status == Change.Status.SUCCEEDED, pinned.error
    vm.refresh_from_db()
    return vm


def assert_pinned_live_and_in_config(name: str, record: Change, vcpu: int) -> None:
    """vCPU *vcpu* is pinned where the record's params say, by libvirt's own account (virsh
    vcpupin live and --config, the persistent XML) and the record's read-back."""
    cpuset = record.params["vcpupin"][str(vcpu)]
    assert virsh_vcpupin(name)[vcpu] == parse_cpuset(cpuset)
    assert virsh_vcpupin(name, "--config")[vcpu] == parse_cpuset(cpuset)
    assert f"<vcpupin vcpu='{vcpu}' cpuset='{cpuset}'/>" in virsh("dumpxml", "--inactive", name)
    assert record.after["live_tuning"]["vcpupin"][str(vcpu)] == cpuset
    assert record.after["config_tuning"]["vcpupin"][str(vcpu)] == cpuset


def test_a_hot_added_vcpu_of_a_pinned_shared_vm_stays_in_its_pins(
    lab_host, actor, running_domain
) -> None:
    """Without this the new vCPU would float over every CPU of the host (oVirt blocks the
    hot-add instead, Nova never shipped it): it may run where the VM's other vCPUs may, in the
    shared pool of its cell, live and in the config, in the same change."""
    name = running_domain.name()
    vm = pin_all(actor, vm_row(lab_host, running_domain), "1")
    # The host's default policy (no over-commit): 3 shared vCPUs on the 2 CPUs of cell 0 are
    # one too many; refused at validation, nothing queued.
    # (the lab is shared: other domains there may be pinned too, hence the pattern)
    with pytest.raises(ValidationError) as refused:
        change(actor, vm, "setvcpus", {"count": 3})
    (message,) = refused.value.message_dict["count"]
    assert re.fullmatch(
        r"the shared pool of cell 0 \(CPUs 0-1\) would hold \d+ shared vCPUs: \d+ of other VMs, "
        rf"2 of {name} and 1 new; CPU over-commit 1 x 2 CPUs allows 2: raise the over-commit "
        r"in the host's balancing policy, or move VMs off cell 0",
        message,
    ), message
    assert not Change.objects.filter(kind="setvcpus").exists()

    BalancingPolicy.objects.create(host=lab_host, cpu_overcommit=8.0)
    record = wait(change(actor, vm, "setvcpus", {"count": 3}))
    assert record.status == Change.Status.SUCCEEDED, record.error
    assert record.params == {
        "count": 3,
        "vcpupin": {"2": "1"},
        "placement": {"2": "its other vCPUs' CPUs in the shared pool of cell 0"},
    }
    assert record.outcome.startswith(
        "vCPU 2 hot-added live; vCPU 2 pinned to CPU 1 (its other vCPUs' CPUs in the shared "
        "pool of cell 0) live and in the config; the guest still has to online it"
    )
    assert virsh_vcpucount(name)[("current", "config")] == 3
    assert_pinned_live_and_in_config(name, record, 2)
    assert "config: vcpupin of vCPU 2: none -> 1" in record.diff
    vm.refresh_from_db()
    assert vm.vcpus.get(vcpu=2).pin_live == "1"


def test_a_hot_added_vcpu_of_a_dedicated_vm_gets_a_core_of_its_own(
    lab_host, actor, running_domain
) -> None:
    name = running_domain.name()
    vm = pin_all(actor, vm_row(lab_host, running_domain), "0")
    vm.dedicated = True
    vm.save(update_fields=["dedicated"])
    record = wait(change(actor, vm, "setvcpus", {"count": 3}))
    assert record.status == Change.Status.SUCCEEDED, record.error
    assert record.params["vcpupin"] == {"2": "1"}
    assert (
        "vCPU 2 pinned to CPU 1 (dedicated, whole core 1 of cell 0) live and in the config"
        in record.outcome
    )
    assert_pinned_live_and_in_config(name, record, 2)
    # and the host has no core left for a fourth
    vm.refresh_from_db()
    with pytest.raises(ValidationError) as refused:
        change(actor, vm, "setvcpus", {"count": 4})
    assert refused.value.message_dict["count"][0].startswith(
        f"cell 0 has no free core for vCPU 3 of dedicated VM {name}: CPUs 0-1 are held by "
        f"{name} itself; free a core"
    )


def test_a_hot_added_vcpu_of_a_cell_bound_vm_is_pinned_to_its_cell(
    lab_host, actor, define_throwaway
) -> None:
    dom = define_throwaway()
    config = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    dom.setNumaParameters({"numa_mode": NUMATUNE_MODES["strict"], "numa_nodeset": "0"}, config)
    dom.create()
    vm = vm_row(lab_host, dom)
    assert (vm.numatune_mode, vm.numatune_nodeset, vm.pinning) == ("strict", "0", "unpinned")
    record = wait(change(actor, vm, "setvcpus", {"count": 3}))
    assert record.status == Change.Status.SUCCEEDED, record.error
    assert record.params["vcpupin"] == {"2": "0-1"}
    assert (
        "vCPU 2 pinned to CPUs 0-1 (shared pool of cell 0, where its memory is bound) live and "
        "in the config" in record.outcome
    )
    assert_pinned_live_and_in_config(dom.name(), record, 2)
