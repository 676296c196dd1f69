"""Every kind of change end to end on the real lab daemon (qemu:///system), through a real
Celery worker (the ``worker_queue`` fixture) and the real Redis: request_change writes the
record, the worker applies it, and the record, ``virsh`` and the XML must agree.

Only throwaway ``numatest-*`` domains are changed (the lab's numalab-* VMs are left alone): the
diskless ones of tests/integration/conftest.py (no ACPI, no agent), and a throwaway guest booted
from the lab's kernel and initramfs (ACPI, qemu-guest-agent) for onlining CPUs in the guest.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import threading
import time
from pathlib import Path

import libvirt
import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import OperationalError, close_old_connections, connection
from django.utils import timezone

from changes import executor, locks, reconcile
from changes.kinds.base import snapshot_dict
from changes.kinds.hotadd import FLOATS
from changes.models import AppendOnlyError, Change
from changes.requests import request_change
from hosts.models import Host
from numaportal.roles import VIEWER_GROUP
from numaportal.virt.cpuset import parse_cpuset
from numaportal.virt.domains import Domain
from tests.change_wait import wait_for_change
from tests.virsh_cli import virsh, virsh_vcpupin
from vms import sync as host_sync
from vms.models import VirtualMachine

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

URI = "qemu:///system"
REPO = Path(__file__).resolve().parents[2]
GUEST_DIR = Path("/var/lib/numaportal-lab/guest")
TASK_WAIT = 120


def virsh_vcpucount(name: str) -> dict[tuple[str, str], int]:
    counts = {}
    for line in virsh("vcpucount", name).splitlines():
        parts = line.split()
        if len(parts) == 3:
            counts[(parts[0], parts[1])] = int(parts[2])
    return counts


def virsh_guest_online(name: str) -> frozenset[int]:
    for line in virsh("guestvcpus", name).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "online":
            return parse_cpuset(value.strip())
    raise AssertionError(f"no online line in `virsh guestvcpus {name}`")


@pytest.fixture
def actor(django_user_model):
    return django_user_model.objects.create_superuser("ops-int", "", "ops-int-password-123")


def vm_row(host: Host, dom: libvirt.virDomain) -> VirtualMachine:
    host_sync.sync_host(host.pk)
    return VirtualMachine.objects.get(host=host, uuid=dom.UUIDString())


def wait(change: Change) -> Change:
    """Until the worker has ended the record (succeeded or failed), then the record."""
    wait_for_change(change, TASK_WAIT)
    change.refresh_from_db()
    assert change.is_finished, change.status
    return change


def change(actor, vm, kind, params, scope="live+config", reason="integration test") -> Change:
    return request_change(
        actor=actor, target=vm, kind=kind, params=params, scope=scope, reason=reason
    )


# --- the diskless throwaway (no ACPI, no agent) -----------------------------------------------


def test_vcpupin_live_and_config(lab_host, actor, running_domain) -> None:
    vm = vm_row(lab_host, running_domain)
    name = running_domain.name()
    record = wait(change(actor, vm, "vcpupin", {"vcpu": 0, "cpuset": "1"}))
    assert record.status == Change.Status.SUCCEEDED, record.error
    assert record.started_at and record.finished_at and record.finished_at >= record.started_at
    assert record.before["live_tuning"]["vcpupin"] != record.after["live_tuning"]["vcpupin"]
    assert record.after["live_tuning"]["vcpupin"]["0"] == "1"
    assert record.after["config_tuning"]["vcpupin"]["0"] == "1"
    assert virsh_vcpupin(name)[0] == {1}
    assert virsh_vcpupin(name, "--config")[0] == {1}
    assert re.search(r"<vcpupin vcpu='0' cpuset='1'/>", virsh("dumpxml", "--inactive", name))
    assert "config: vcpupin of vCPU 0: none -> 1" in record.diff
    assert "+    <vcpupin vcpu='0' cpuset='1'/>" in record.diff
    assert record.outcome == "vCPU 0 pinned to 1 live and in the config"
    # The VM row was refreshed by the worker.
    vm.refresh_from_db()
    assert vm.vcpus.get(vcpu=0).pin_live == "1"


def test_emulatorpin_live(lab_host, actor, running_domain) -> None:
    vm = vm_row(lab_host, running_domain)
    record = wait(change(actor, vm, "emulatorpin", {"cpuset": "0"}, scope="live"))
    assert record.status == Change.Status.SUCCEEDED, record.error
    assert record.after["emulatorpin_live"] == "0"
    assert re.search(r"\*:\s+0\s*$", virsh("emulatorpin", running_domain.name()), re.M)
    # Live only: the config keeps no <emulatorpin>, and the drift says so after the refresh.
    assert "<emulatorpin" not in virsh("dumpxml", "--inactive", running_domain.name())
    vm.refresh_from_db()
    assert vm.drift and "emulator" in vm.drift_detail


def test_numatune_config_on_a_running_domain(lab_host, actor, running_domain) -> None:
    vm = vm_row(lab_host, running_domain)
    record = wait(change(actor, vm, "numatune", {"mode": "strict", "nodeset": "0"}, scope="config"))
    assert record.status == Change.Status.SUCCEEDED, record.error
    assert record.after["config_tuning"]["numatune_mode"] == "strict"
    config = virsh("numatune", running_domain.name(), "--config")
    assert re.search(r"numa_mode\s*:\s*strict", config)
    assert re.search(r"numa_nodeset\s*:\s*0", config)


def test_numatune_live_strict_is_refused_with_libvirts_message(
    lab_host, actor, running_domain
) -> None:
    vm = vm_row(lab_host, running_domain)
    record = wait(change(actor, vm, "numatune", {"mode": "strict", "nodeset": "0"}, scope="live"))
    assert record.status == Change.Status.FAILED
    assert "can't change nodeset for strict mode for running domain" in record.error
    assert record.outcome == "nothing was changed on the host"
    assert record.before is not None and record.after is not None


def test_setvcpus_hot_add_live(lab_host, actor, running_domain) -> None:
    vm = vm_row(lab_host, running_domain)
    record = wait(change(actor, vm, "setvcpus", {"count": 3}, scope="live"))
    assert record.status == Change.Status.SUCCEEDED, record.error
    assert record.params == {"count": 3, "placement": {"2": FLOATS}}
    assert virsh_vcpucount(running_domain.name())[("current", "live")] == 3
    assert record.before["vcpucount"]["current_live"] == 2
    assert record.after["vcpucount"]["current_live"] == 3
    # neither pinned nor bound to cells: it floats, as before, and the record says so
    assert record.outcome.startswith(
        f"vCPU 2 hot-added live; vCPU 2 {FLOATS}; the guest still has to online it"
    )
    assert "echo 1 > /sys/devices/system/cpu/cpu2/online" in record.outcome
    assert "2" not in record.after["live_tuning"]["vcpupin"]
    vm.refresh_from_db()
    assert vm.vcpu_current_live == 3


def test_unplug_without_acpi_fails_and_says_what_happened(lab_host, actor, running_domain) -> None:
    vm = vm_row(lab_host, running_domain)
    # Only hot-added vCPUs are hotpluggable (below 2 libvirt says "failed to find appropriate
    # hotpluggable vcpus"): add one, then take it away again.
    assert wait(change(actor, vm, "setvcpus", {"count": 3}, scope="live")).error == ""
    vm.refresh_from_db()
    record = wait(change(actor, vm, "setvcpus", {"count": 2}, scope="live"))
    assert record.status == Change.Status.FAILED
    assert "CPU hot unplug not supported without ACPI" in record.error
    assert (
        "not offlined in the guest: argument unsupported: QEMU guest agent is not configured"
        in (record.outcome)
    )
    assert "live unplug refused by QEMU: " in record.outcome
    assert record.outcome.endswith("the host still counts 3 vCPUs")
    assert virsh_vcpucount(running_domain.name())[("current", "live")] == 3


def test_raising_the_maximum_is_a_config_change(lab_host, actor, running_domain) -> None:
    vm = vm_row(lab_host, running_domain)
    # The throwaway's <topology> says 4 cores: libvirt refuses a maximum that contradicts it.
    record = wait(change(actor, vm, "setvcpus", {"maximum": 8}, scope="config"))
    assert record.status == Change.Status.FAILED
    assert record.error and "topology" in record.error.lower()
    assert virsh_vcpucount(running_domain.name())[("maximum", "config")] == 4


# --- serialisation, interruption, permissions, append-only ------------------------------------


def test_two_changes_to_one_vm_are_serialised(lab_host, actor, running_domain) -> None:
    vm = vm_row(lab_host, running_domain)
    first = change(actor, vm, "vcpupin", {"vcpu": 0, "cpuset": "0"}, reason="first")
    second = change(actor, vm, "vcpupin", {"vcpu": 1, "cpuset": "1"}, reason="second")

    # The worker takes `first` (then `second`); this thread races it for `second` at once and
    # waits on the VM's lock while `first` runs. Whoever gets `second` first applies it once.
    errors: list[BaseException] = []

    def apply_second() -> None:
        try:
            executor.apply_change(str(second.id))
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()

    racer = threading.Thread(target=apply_second)
    racer.start()
    racer.join(TASK_WAIT)
    if connection.vendor == "sqlite":
        # The test database is SQLite in memory, shared between threads: a write while the
        # worker thread holds a write transaction is refused instead of waiting (PostgreSQL, as
        # in CI, waits). Then the worker applies `second`; serialisation is checked below.
        assert all(isinstance(e, OperationalError) and "locked" in str(e) for e in errors)
    else:
        assert not errors, errors
    first, second = wait(first), wait(second)
    assert (first.status, second.status) == (Change.Status.SUCCEEDED,) * 2, (
        first.error,
        second.error,
    )
    spans = sorted([(first.started_at, first.finished_at), (second.started_at, second.finished_at)])
    assert spans[0][1] <= spans[1][0], f"changes interleaved: {spans}"
    pins = virsh_vcpupin(running_domain.name())
    assert (pins[0], pins[1]) == ({0}, {1}), "a lost update"
    config = virsh_vcpupin(running_domain.name(), "--config")
    assert (config[0], config[1]) == ({0}, {1})


def test_a_second_change_waits_for_the_lock_then_fails(
    lab_host, actor, running_domain, settings
) -> None:
    vm = vm_row(lab_host, running_domain)
    settings.NUMAPORTAL_CHANGE_LOCK_WAIT = 2
    holder = Change.objects.create(
        actor_name="someone",
        host=lab_host,
        vm=vm,
        target_name=vm.name,
        kind=Change.Kind.EMULATORPIN,
        params={"cpuset": "0"},
        reason="holds the lock",
        status=Change.Status.RUNNING,
        started_at=timezone.now(),
    )
    probe = locks.change_lock(holder)
    assert probe.acquire(blocking=False, token=str(holder.id))
    try:
        record = wait(change(actor, vm, "emulatorpin", {"cpuset": "1"}, scope="live"))
    finally:
        probe.release()
    assert record.status == Change.Status.FAILED
    assert record.error == f"another change to this VM is running: {holder.id}"
    assert record.started_at is None and record.before is None


def test_an_interrupted_change_is_reconciled_with_the_real_state(
    lab_host, actor, running_domain
) -> None:
    vm = vm_row(lab_host, running_domain)
    # What a worker killed mid-change leaves: running, the before state, no lock (expired).
    stale = Change.objects.create(
        actor_name=actor.username,
        actor=actor,
        host=lab_host,
        vm=vm,
        target_name=vm.name,
        kind=Change.Kind.VCPUPIN,
        params={"vcpu": 0, "cpuset": "1"},
        scope="live",
        reason="worker killed",
        status=Change.Status.RUNNING,
        started_at=timezone.now() - timezone.timedelta(hours=1),
    )
    before = snapshot_dict(Domain.of(running_domain))
    Change.objects.filter(pk=stale.pk).update(before=before)
    running_domain.pinVcpuFlags(0, (False, True), libvirt.VIR_DOMAIN_AFFECT_LIVE)  # half done
    assert reconcile.reconcile_stale_changes(older_than_s=60) == 1
    stale.refresh_from_db()
    assert stale.status == Change.Status.FAILED
    assert stale.error == reconcile.INTERRUPTED
    assert stale.finished_at is not None
    assert stale.after["live_tuning"]["vcpupin"]["0"] == "1"
    assert "live: vcpupin of vCPU 0: none -> 1" in stale.diff
    assert stale.outcome.startswith("changed on the host nevertheless")
    # Idempotent: nothing left to reconcile; a redelivered task does not apply it.
    assert reconcile.reconcile_stale_changes(older_than_s=60) == 0
    assert executor.apply_change(str(stale.id)).status == Change.Status.FAILED


def test_viewer_cannot_request_and_records_are_append_only(
    lab_host, actor, running_domain, django_user_model
) -> None:
    vm = vm_row(lab_host, running_domain)
    viewer = django_user_model.objects.create_user("viewer-int", password="viewer-password-123")
    viewer.groups.add(Group.objects.get(name=VIEWER_GROUP))
    with pytest.raises(PermissionDenied):
        change(viewer, vm, "vcpupin", {"vcpu": 0, "cpuset": "1"})
    record = wait(change(actor, vm, "emulatorpin", {"cpuset": "1"}, scope="live"))
    with pytest.raises(AppendOnlyError):
        record.delete()
    record.params = {"cpuset": "0"}
    with pytest.raises(AppendOnlyError):
        record.save()
    with pytest.raises(AppendOnlyError):
        Change.objects.filter(pk=record.pk).update(params={"cpuset": "0"})
    assert Change.objects.get(pk=record.pk).params == {"cpuset": "1"}


# --- a throwaway guest with ACPI and qemu-guest-agent -----------------------------------------


def _agent_answers(name: str) -> bool:
    done = subprocess.run(
        [
            "virsh",
            "-c",
            URI,
            "qemu-agent-command",
            "--timeout",
            "5",
            name,
            '{"execute":"guest-ping"}',
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def agent_guest(qemu_conn, tmp_path) -> libvirt.virDomain:
    """A ``numatest-guest-*`` domain booted from the lab's guest kernel, once its agent answers."""
    kernel, initrd = GUEST_DIR / "vmlinuz", GUEST_DIR / "initrd.gz"
    assert kernel.exists() and initrd.exists(), "run `scripts/libvirt-lab build-guest`"
    name = f"numatest-guest-{secrets.token_hex(3)}"
    xml = (REPO / "scripts" / "lab" / "guest.xml").read_text()
    xml = re.sub(r"<metadata>.*?</metadata>", "", xml, flags=re.S)  # not the lab's own
    xml = xml.replace("<name>numalab-guest</name>", f"<name>{name}</name>")
    console = Path("/var/log/libvirt/qemu") / f"{name}-console.log"
    xml = (
        xml.replace("@KERNEL@", str(kernel))
        .replace("@INITRD@", str(initrd))
        .replace("@CONSOLE_LOG@", str(console))
    )
    dom = qemu_conn.defineXML(xml)
    failed = False
    try:
        # Under TCG on a busy 2-CPU machine a boot can stall; a second boot is the operator's
        # own remedy, and the console log of both is kept when the agent stays silent.
        for _attempt in (1, 2):
            dom.create()
            deadline = time.monotonic() + 120
            while not _agent_answers(name) and time.monotonic() < deadline:
                time.sleep(1)
            if _agent_answers(name):
                break
            dom.destroy()
        else:
            failed = True
            tail = console.read_text(errors="replace")[-2000:] if console.exists() else ""
            pytest.fail(f"agent of {name} silent after two boots; console {console}:\n{tail}")
        yield dom
    finally:
        try:
            if dom.isActive():
                dom.destroy()
        finally:
            dom.undefine()
            if not failed:
                console.unlink(missing_ok=True)


def test_hot_add_online_offline_and_remove_in_a_guest(lab_host, actor, agent_guest) -> None:
    name = agent_guest.name()
    vm = vm_row(lab_host, agent_guest)
    assert virsh_guest_online(name) == {0, 1}

    added = wait(change(actor, vm, "setvcpus", {"count": 3, "online_in_guest": True}, "live"))
    assert added.status == Change.Status.SUCCEEDED, added.error
    assert added.outcome == (
        f"vCPU 2 hot-added live; vCPU 2 {FLOATS}; onlined in the guest by the agent"
    )
    assert virsh_vcpucount(name)[("current", "live")] == 3
    assert virsh_guest_online(name) == {0, 1, 2}

    vm.refresh_from_db()
    off = wait(change(actor, vm, "guest_vcpus", {"cpus": "2", "online": False}, "live"))
    assert off.status == Change.Status.SUCCEEDED, off.error
    assert off.outcome == "vCPU 2 offlined in the guest by the agent"
    assert virsh_guest_online(name) == {0, 1}

    on = wait(change(actor, vm, "guest_vcpus", {"cpus": "2", "online": True}, "live"))
    assert on.status == Change.Status.SUCCEEDED, on.error
    assert virsh_guest_online(name) == {0, 1, 2}

    # Hot-remove: offline in the guest first, then the live unplug. With ACPI QEMU asks the
    # guest; whether it completes in time or libvirt reports a timeout, the record says so.
    removed = wait(change(actor, vm, "setvcpus", {"count": 2}, "live"))
    assert removed.outcome.startswith("vCPU 2 offlined in the guest by the agent; ")
    assert 2 not in virsh_guest_online(name)
    live_count = virsh_vcpucount(name)[("current", "live")]
    if removed.status == Change.Status.SUCCEEDED:
        assert live_count == 2
        assert "vCPU 2 unplugged live" in removed.outcome
    else:
        assert removed.error  # libvirt's text, e.g. "vcpu unplug request timed out..."
        assert removed.outcome.endswith(f"the host still counts {live_count} vCPUs")
