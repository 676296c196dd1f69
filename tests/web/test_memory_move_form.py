"""The "move memory to cell N" form of the VM page: how it moves for this VM, the preview of how
much would move (from the last sample), the refusal for a strict VM, and the queued record.
The on-commit enqueue is captured and not run: no worker touches anything here."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from changes.models import Change
from vms.models import VirtualMachine, VmCellMemory

pytestmark = [pytest.mark.web, pytest.mark.django_db]

REASON = "its vCPUs moved to cell 1 last week; the memory follows"


@pytest.fixture
def op_client(client, operator_user):
    client.force_login(operator_user)
    return client


@pytest.fixture
def vm(host_factory, vm_factory):
    """vCPUs on cell 1 (CPUs 6-7 of the 2-node fixture), memory on cell 0: remote, unbound."""
    host = host_factory("hv1", worker_queue="host.hv1")
    vm = vm_factory(host, "db01", pins={0: "6", 1: "7"})
    now = timezone.now()
    VmCellMemory.objects.create(vm=vm, cell_id=0, sampled_at=now, heap_mib=40, private_mib=920)
    VmCellMemory.objects.create(vm=vm, cell_id=1, sampled_at=now, private_mib=52, files_mib=12)
    return vm


def url(vm) -> str:
    return reverse("vms:change", args=[vm.host.name, vm.uuid, "memory"])


def test_the_form_says_how_the_memory_would_move(op_client, vm) -> None:
    page = op_client.get(url(vm)).content.decode()
    assert 'data-method="migratepages"' in page
    assert "page migration of the VM&#x27;s QEMU process" in page
    assert 'name="cells"' in page and 'value="live"' in page and 'value="config"' not in page


def test_the_preview_says_how_much_would_move(op_client, vm) -> None:
    response = op_client.post(url(vm), {"cells": "1", "scope": "live", "reason": REASON})
    assert response.context["step"] == "preview"
    notes = " ".join(response.context["preview"].notes)
    # 960 MiB on cell 0 would move; 40 MiB already on cell 1 (52 less 12 of mapped files).
    assert "About 960.0 of 1000.0 MiB would move to cell(s) 1" in notes
    assert response.context["preview"].rows == [("0", "960.0", "0.0"), ("1", "40.0", "1000.0")]
    # 960 MiB on the other socket (distance 21 counts nothing) and 40 at home: 0.04 now; all
    # home after.
    assert "Predicted locality (memory where its vCPUs run, by distance): 0.04 now -> 1.00" in (
        notes
    )
    assert Change.objects.count() == 0


def test_confirm_queues_one_live_memory_move(
    op_client, vm, operator_user, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = op_client.post(
            url(vm), {"cells": "1", "scope": "live", "reason": REASON, "confirm": "1"}
        )
    change = Change.objects.get()
    assert response["Location"] == change.get_absolute_url()
    assert (change.kind, change.params, change.scope) == (
        "memory_move",
        {"cells": "1", "method": "migratepages"},
        "live",
    )
    assert (change.status, change.actor_id, change.reason) == ("queued", operator_user.pk, REASON)
    assert len(callbacks) == 1


def test_a_strict_vm_is_refused_with_the_way_instead(op_client, vm) -> None:
    VirtualMachine.objects.filter(pk=vm.pk).update(numatune_mode="strict", numatune_nodeset="0")
    page = op_client.get(url(vm)).content.decode()
    assert 'data-method="refused"' in page and "cannot be moved live" in page
    response = op_client.post(
        url(vm), {"cells": "1", "scope": "live", "reason": REASON, "confirm": "1"}
    )
    errors = " ".join(response.context["form"].errors.get("cells", []))
    assert "its numatune is strict" in errors and "in config scope" in errors
    assert Change.objects.count() == 0


def test_a_host_without_its_own_worker_is_refused(op_client, vm) -> None:
    vm.host.worker_queue = ""
    vm.host.save(update_fields=["worker_queue"])
    response = op_client.post(
        url(vm), {"cells": "1", "scope": "live", "reason": REASON, "confirm": "1"}
    )
    errors = " ".join(e for es in response.context["form"].errors.values() for e in es)
    assert "host hv1 has no on-host worker (worker_queue)" in errors
    assert Change.objects.count() == 0


def test_vcpupin_preview_warns_when_the_memory_would_stay_behind(op_client, vm) -> None:
    """What-if: 960 of its 1000 MiB are on cell 0; vCPUs on cell 1's CPUs leave 96 % of it
    remote until moved."""
    response = op_client.post(
        reverse("vms:change", args=[vm.host.name, vm.uuid, "vcpupin"]),
        {"vcpu_0": "8", "vcpu_1": "9", "scope": "live", "reason": REASON},
    )
    warnings = " ".join(response.context["preview"].warnings)
    assert "vCPUs to cell(s) 1; 96 % of its 1000 MiB stays on cell(s) 0 until moved" in warnings
    notes = " ".join(response.context["preview"].notes)
    assert "Predicted locality (memory where its vCPUs run, by distance): 0.04 now -> 0.04" in (
        notes
    )
    # Back onto cell 0, where the memory is: no such warning.
    response = op_client.post(
        reverse("vms:change", args=[vm.host.name, vm.uuid, "vcpupin"]),
        {"vcpu_0": "0", "vcpu_1": "1", "scope": "live", "reason": REASON},
    )
    assert "stays on cell(s)" not in " ".join(response.context["preview"].warnings)
    # vCPUs to cell 0, where 960 of its 1000 MiB are: 0.96 (40 MiB on the other socket count 0).
    assert "0.04 now -> 0.96" in " ".join(response.context["preview"].notes)
