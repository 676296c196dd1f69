"""Moving a running VM's memory live on the NUMA lab (``memory_move``), through the real worker
path: the change runs on the test's central worker, which asks the lab's on-host worker (inside
the guest, no database) for the VM's numa_maps before and after, and for the page migration.

Each domain is the test's own: 96 MiB of guest RAM preallocated on node 0, vCPUs pinned to
node 1's CPUs 2-3 (its memory is remote), then moved to cell 1. Witnesses: ``numastat -p`` and
numa_maps of its QEMU process and ``virsh numatune`` inside the guest.
"""

from __future__ import annotations

import time

import libvirt
import pytest
from django.core.exceptions import ValidationError

from changes.models import Change
from changes.requests import request_change
from tests.change_wait import wait_for_change
from tests.numalab import lab
from tests.numalab.conftest import TASK_WAIT
from vms import sync as host_sync
from vms.memory import memory_bar
from vms.models import VirtualMachine, VmLocalitySample

pytestmark = [pytest.mark.numalab, pytest.mark.django_db(transaction=True)]

MEMORY_MIB = 96
REASON = "numalab: the memory follows the vCPUs to cell 1"


def started_on_node0(define_domain, worker_host, **numatune) -> tuple[libvirt.virDomain, object]:
    """A running test domain whose guest RAM is on node 0 and whose vCPUs run on node 1."""
    dom = define_domain(
        memory_mib=MEMORY_MIB,
        preallocate=True,
        vcpupin={0: "2", 1: "3"},
        # The emulator thread preallocates the RAM: on node 0's CPUs, first touch puts it there.
        emulatorpin="0-1",
        **numatune,
    )
    dom.create()
    lab.wait_state(dom, libvirt.VIR_DOMAIN_RUNNING)
    memory = lab.memory_once_allocated(dom.name(), at_least_mib=MEMORY_MIB)
    # Most of it: QEMU's preallocation threads are not all the emulator thread.
    assert memory.numa_maps["anon"].get(0, 0) >= 0.8 * MEMORY_MIB, memory.describe()
    host_sync.sync_host(worker_host.pk)
    vm = VirtualMachine.objects.get(host=worker_host, uuid=dom.UUIDString())
    assert vm.cells == "1" and vm.is_running
    return dom, vm


def move(vm, operator, cells: str = "1") -> tuple[Change, float]:
    started = time.monotonic()
    change = request_change(
        actor=operator,
        target=vm,
        kind="memory_move",
        params={"cells": cells},
        scope="live",
        reason=REASON,
    )
    wait_for_change(change, TASK_WAIT)
    change.refresh_from_db()
    return change, time.monotonic() - started


def check_moved(change: Change, name: str, seconds: float) -> lab.GuestMemory:
    """The record says it moved, and the guest agrees: its anonymous memory is on node 1."""
    witness = lab.guest_memory(name)
    seen = f"record before {change.before and change.before.get('memory_mib')}, after " + (
        f"{change.after and change.after.get('memory_mib')}; guest {witness.describe()}"
    )
    assert change.status == Change.Status.SUCCEEDED, f"{change.error}; {seen}"
    assert seconds < 60, seen  # "within a minute", the whole trip through both workers
    before, after = change.before["memory_mib"], change.after["memory_mib"]
    assert before.get("0", 0) >= 0.8 * MEMORY_MIB and after.get("1", 0) >= MEMORY_MIB, seen
    anon = witness.numa_maps["anon"]
    assert anon.get(1, 0) >= MEMORY_MIB and anon.get(0, 0) < 2.0, seen
    # The record's after is the VM's own memory (numastat -p less mapped files), per node.
    for node, numbers in witness.numastat.items():
        own = numbers["total"] - witness.numa_maps["file"].get(node, 0.0)
        assert after.get(str(node), 0.0) == pytest.approx(own, abs=2.0), seen
    assert "memory per cell (MiB): 0: " in change.diff
    print(f"{change.outcome} ({seconds:.1f} s end to end); {seen}")
    return witness


def test_a_restrictive_domain_moves_through_libvirt(
    worker_host, operator, define_domain, sample_on_host
) -> None:
    dom, vm = started_on_node0(define_domain, worker_host, nodeset="0", mode="restrictive")
    change, seconds = move(vm, operator)
    assert change.params == {"cells": "1", "method": "numatune"}
    check_moved(change, dom.name(), seconds)
    assert change.outcome.startswith("moved ") and "by a live numatune (restrictive)" in (
        change.outcome
    )
    live = lab.guest_tuning(dom.name(), "--live")
    assert live.numatune == {"numa_mode": "restrictive", "numa_nodeset": "1"}
    config = lab.guest_tuning(dom.name(), "--config")
    assert config.numatune == {"numa_mode": "restrictive", "numa_nodeset": "0"}  # unchanged


def move_watching_progress(vm, operator, cells: str = "1") -> tuple[Change, float, list[dict]]:
    """:func:`move`, reading the record's progress every 0.1 s while the worker runs it: every
    distinct figure seen, the last one (written once the move returned) included."""
    started = time.monotonic()
    change = request_change(
        actor=operator,
        target=vm,
        kind="memory_move",
        params={"cells": cells},
        scope="live",
        reason=REASON,
    )
    seen: list[dict] = []
    while True:
        status, figure = Change.objects.values_list("status", "progress").get(pk=change.pk)
        if figure is not None and figure not in seen:
            seen.append(figure)
        if status in Change.FINISHED_STATUSES:
            break
        assert time.monotonic() - started < TASK_WAIT, f"still {status}; progress {seen}"
        time.sleep(0.1)
    change.refresh_from_db()
    if change.progress is not None and change.progress not in seen:
        seen.append(change.progress)
    return change, time.monotonic() - started, seen


def test_a_move_records_its_progress_on_the_way(
    worker_host, operator, define_domain, settings
) -> None:
    """A restrictive domain's move through libvirt (the on-host worker is free meanwhile, so it
    answers the readings): 0 of the MiB to move at the start, figures as the memory moves, and
    the last one all of it."""
    settings.NUMAPORTAL_MEMORY_MOVE_PROGRESS_S = 0.5
    dom, vm = started_on_node0(define_domain, worker_host, nodeset="0", mode="restrictive")
    change, seconds, seen = move_watching_progress(vm, operator)
    check_moved(change, dom.name(), seconds)
    print(f"progress seen: {seen}")
    # The MiB to move: its own memory outside cell 1 before the move.
    outside = sum(mib for cell, mib in change.before["memory_mib"].items() if cell != "1")
    total = seen[0]["total_mib"]
    assert total == pytest.approx(outside, abs=0.1) and total >= 0.8 * MEMORY_MIB, seen
    # The start figure (when the poll caught it before the first reading): 0 at 0 s.
    assert all(p["moved_mib"] == 0.0 for p in seen if p["elapsed_s"] == 0.0), seen
    assert all(p["total_mib"] == total and p["readings"] is True for p in seen), seen
    elapsed = [p["elapsed_s"] for p in seen]
    assert elapsed == sorted(elapsed), seen
    # Figures on the way depend on timing (a move of 1-2 s read every 0.5 s usually gets one
    # or more); each is within 0..total. The last one, read once the move returned, is all of
    # it (within verify's tolerance: the move succeeded), after the move's own duration.
    assert all(0 <= p["moved_mib"] <= total for p in seen), seen
    final = change.progress
    assert final["moved_mib"] >= total - max(2.0, 0.05 * total), seen
    assert 0 <= final["elapsed_s"] <= seconds, seen


def test_an_unbound_domain_moves_by_page_migration(worker_host, operator, define_domain) -> None:
    dom, vm = started_on_node0(define_domain, worker_host)
    change, seconds = move(vm, operator)
    assert change.params == {"cells": "1", "method": "migratepages"}
    check_moved(change, dom.name(), seconds)
    assert "by page migration of its QEMU on the host (migratepages)" in change.outcome
    assert lab.guest_tuning(dom.name(), "--live").numatune.get("numa_nodeset") in ("", None)


def test_a_strict_domain_is_refused_with_the_reason(worker_host, operator) -> None:
    remote = VirtualMachine.objects.get(host=worker_host, name="numalab2-node0")
    assert remote.numatune_mode == "strict"
    with pytest.raises(ValidationError) as info:
        request_change(
            actor=operator,
            target=remote,
            kind="memory_move",
            params={"cells": "1"},
            scope="live",
            reason=REASON,
        )
    (message,) = info.value.message_dict["cells"]
    assert "can't change nodeset for strict mode for running domain" in message
    assert not Change.objects.filter(kind="memory_move").exists()


def test_the_remote_domain_is_made_local_and_remote_again(
    worker_host, operator, sample_on_host
) -> None:
    """The lab's remote-on-purpose domain (vCPUs on node 0, memory restrictive on node 1):
    100 % of its memory remote; one memory_move to cell 0 makes it local; the move back leaves
    the lab as its script made it."""
    sample_on_host()
    vm = VirtualMachine.objects.get(host=worker_host, name="numalab2-remote")
    assert vm.numatune_mode == "restrictive" and vm.cells == "0"
    assert memory_bar(vm).remote_pct > 99.0
    # Locality, distance-weighted: all of it on the other node (distance 21, twice the local 10
    # or more) counts nothing, as does the memory-only node (30).
    now = VmLocalitySample.objects.get(vm=vm, latest=True)
    assert now.locality == pytest.approx(0.0, abs=0.02), now.own_mib
    try:
        change, seconds = move(vm, operator, cells="0")
        assert change.status == Change.Status.SUCCEEDED, change.error
        assert change.params == {"cells": "0", "method": "numatune"}
        witness = lab.guest_memory("numalab2-remote")
        anon = witness.numa_maps["anon"]
        assert anon.get(0, 0) >= 0.95 * sum(anon.values()), witness.describe()
        sample_on_host()
        assert memory_bar(vm).remote_pct < 5.0, witness.describe()
        after = VmLocalitySample.objects.get(vm=vm, latest=True)
        assert after.locality >= 0.95, (after.own_mib, witness.describe())
        # The history shows the jump: the sample before the move, and the one after.
        history = list(
            VmLocalitySample.objects.filter(vm=vm)
            .order_by("taken_at")
            .values_list("locality", flat=True)
        )
        assert history[-2] < 0.5 and history[-1] >= 0.95, history
        print(f"{change.outcome} ({seconds:.1f} s); locality {history}; {witness.describe()}")
    finally:
        back, _ = move(vm, operator, cells="1")
        assert back.status == Change.Status.SUCCEEDED, back.error
