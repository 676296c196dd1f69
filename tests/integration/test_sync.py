"""Inventory sync against the real lab daemon (qemu:///system): the portal must say what virsh
says. Lab VMs (numalab-*) are only read; pins are tried on throwaway numatest-* domains."""

from __future__ import annotations

import time

import libvirt
import pytest

from hosts.models import Host
from numaportal.virt.cpuset import format_cpuset, parse_cpuset
from numaportal.virt.domains import Domain
from numaportal.virt.pinning import pin_vcpu
from tests.virsh_cli import virsh, virsh_vcpucount, virsh_vcpuinfo, virsh_vcpupin
from vms import sync
from vms.models import VirtualMachine

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

URI = "qemu:///system"
LAB_VMS = ("numalab-small1", "numalab-small2", "numalab-guest")


def strip_to_cpus(strip: str) -> frozenset[int]:
    return frozenset(i for i, c in enumerate(strip) if c == "y")


@pytest.fixture
def lab_host() -> Host:
    host = Host.objects.create(name="lab", uri=URI)
    synced = sync.sync_host(host.pk)
    assert synced.sync_status == Host.SyncStatus.OK, synced.last_error
    return synced


def test_lab_vms_appear_as_virsh_lists_them(lab_host):
    present = {vm.name: vm for vm in VirtualMachine.objects.filter(host=lab_host).present()}
    assert set(LAB_VMS) <= set(present)
    assert lab_host.cells.count() >= 1
    assert lab_host.cpus.count() == int(virsh("nodeinfo").split("CPU(s):")[1].split()[0])
    for name in LAB_VMS:
        vm = present[name]
        assert vm.state == "running"
        assert str(vm.uuid) == virsh("domuuid", name).strip()
        counts = virsh_vcpucount(name)
        assert (vm.vcpu_max_config, vm.vcpu_current_config) == (4, 2)
        assert vm.vcpu_max_config == counts[("maximum", "config")]
        assert vm.vcpu_current_config == counts[("current", "config")]
        assert vm.vcpu_max_live == counts[("maximum", "live")]
        assert vm.vcpu_current_live == counts[("current", "live")]


def test_lab_vcpus_match_vcpuinfo_and_vcpupin(lab_host):
    for name in LAB_VMS:
        vm = VirtualMachine.objects.get(host=lab_host, name=name)
        rows = {row.vcpu: row for row in vm.vcpus.all()}
        assert sorted(rows) == [0, 1, 2, 3]
        info = virsh_vcpuinfo(name)
        assert sorted(info) == [v for v, row in rows.items() if row.online] == [0, 1]
        for vcpu, seen in info.items():
            assert rows[vcpu].state == seen["State"]
            assert parse_cpuset(rows[vcpu].affinity) == strip_to_cpus(seen["CPU Affinity"])
            # Where it last ran moves while we look; it is one of the host's CPUs.
            assert rows[vcpu].last_cpu in range(lab_host.cpus.count())
        live, config = virsh_vcpupin(name), virsh_vcpupin(name, "--config")
        for vcpu, row in rows.items():
            assert parse_cpuset(row.affinity) == live[vcpu]
            # No <vcpupin> in the lab's definitions: virsh shows every host CPU.
            assert row.pin_config == "" and config[vcpu] == live[vcpu]
        assert vm.pinning == VirtualMachine.Pinning.UNPINNED
        assert not vm.cross_node  # one cell
        assert not vm.drift, vm.drift_detail


def test_a_pinned_throwaway_domain_shows_its_pins(running_domain: libvirt.virDomain):
    pin_vcpu(Domain.of(running_domain), 0, "1", "live")  # live only: lost at next shutdown
    pin_vcpu(Domain.of(running_domain), 1, "0", "live+config")
    host = Host.objects.create(name="lab", uri=URI)
    sync.sync_host(host.pk)
    vm = VirtualMachine.objects.get(host=host, uuid=running_domain.UUIDString())
    rows = {row.vcpu: row for row in vm.vcpus.all()}
    assert (rows[0].pin_live, rows[0].pin_config) == ("1", "")
    assert (rows[1].pin_live, rows[1].pin_config) == ("0", "0")
    live = virsh_vcpupin(running_domain.name())
    assert {v: parse_cpuset(r.affinity) for v, r in rows.items() if r.online} == {
        v: live[v] for v in (0, 1)
    }
    info = virsh_vcpuinfo(running_domain.name())
    assert format_cpuset(strip_to_cpus(info[0]["CPU Affinity"])) == rows[0].affinity == "1"
    assert vm.pinning == VirtualMachine.Pinning.PINNED
    assert vm.drift
    assert vm.drift_detail == "vCPU 0 pinned to 1 live, not pinned in config"


def test_drift_clears_when_the_pin_is_also_in_config(running_domain: libvirt.virDomain):
    pin_vcpu(Domain.of(running_domain), 0, "1", "live")
    host = Host.objects.create(name="lab", uri=URI)
    sync.sync_host(host.pk)
    vm = VirtualMachine.objects.get(host=host, uuid=running_domain.UUIDString())
    assert vm.drift and vm.pinning == VirtualMachine.Pinning.PARTLY
    pin_vcpu(Domain.of(running_domain), 0, "1", "config")
    sync.sync_host(host.pk)
    vm.refresh_from_db()
    assert not vm.drift and vm.drift_detail == ""


def test_a_destroyed_throwaway_is_shut_off_then_gone_when_undefined(define_throwaway):
    dom = define_throwaway()
    dom.create()
    host = Host.objects.create(name="lab", uri=URI)
    sync.sync_host(host.pk)
    vm = VirtualMachine.objects.get(host=host, uuid=dom.UUIDString())
    assert vm.state == "running" and vm.vcpu_current_live == 2
    dom.destroy()
    sync.sync_host(host.pk)
    vm.refresh_from_db()
    assert vm.state == "shut off" and vm.vcpu_current_live is None and vm.gone_at is None
    assert vm.vcpus.filter(online=True).count() == 2  # config: 2 of 4 at next boot
    dom.undefine()
    sync.sync_host(host.pk)
    vm.refresh_from_db()
    assert vm.gone_at is not None


def test_sync_cost_on_the_lab(lab_host, capsys):
    """Not a benchmark: records the wall time of a full sync for the README."""
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        sync.sync_host(lab_host.pk)
        timings.append(time.perf_counter() - start)
    domains = VirtualMachine.objects.filter(host=lab_host).present().count()
    with capsys.disabled():
        print(
            f"\nsync of {URI}: {domains} domains, "
            f"median {sorted(timings)[2] * 1000:.1f} ms, max {max(timings) * 1000:.1f} ms"
        )
    assert max(timings) < 10
