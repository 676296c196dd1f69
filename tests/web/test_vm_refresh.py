"""After a change the worker refreshes that one VM from the change's "after" snapshot: no host
sync, no libvirt call of its own, the host's other VMs untouched — so a change costs the same
libvirt calls and queries on a host with 1 domain as on one with many.

Against libvirt's in-process test driver (``test:///default``): its state is shared by every
connection of this process while one stays open, which is how extra domains are added here.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterator

import libvirt
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from changes import executor
from changes.models import Change
from hosts.models import Host
from vms import sync
from vms.models import VcpuPin, VirtualMachine

pytestmark = [pytest.mark.web, pytest.mark.django_db(transaction=True)]

URI = "test:///default"


@pytest.fixture
def test_driver() -> Iterator[libvirt.virConnect]:
    """One open connection holds the driver's state; extra domains are undefined at the end."""
    conn = libvirt.open(URI)
    before = {d.UUIDString() for d in conn.listAllDomains()}
    yield conn
    for dom in conn.listAllDomains():
        if dom.UUIDString() not in before:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    conn.close()


def add_domains(conn: libvirt.virConnect, count: int, *, running: bool) -> None:
    for i in range(count):
        name = f"numatest-refresh-{uuid.uuid4().hex[:8]}-{i}"
        dom = conn.defineXML(
            f"<domain type='test'><name>{name}</name><memory>65536</memory>"
            "<vcpu placement='static'>2</vcpu><os><type>hvm</type></os></domain>"
        )
        if running:
            dom.create()


def synced_host() -> Host:
    host = Host.objects.create(name=f"td-{uuid.uuid4().hex[:6]}", uri=URI)
    sync.sync_host(host.pk)
    host.refresh_from_db()
    assert host.sync_status == Host.SyncStatus.OK, host.last_error
    return host


def pin_change(host: Host, cpuset: str) -> Change:
    """An emulatorpin of domain "test" (the test driver pins vCPUs only with flags 0, which no
    scope sends; it takes a live emulator pin)."""
    vm = VirtualMachine.objects.get(host=host, name="test")
    return Change.objects.create(
        actor_name="ops",
        host=host,
        vm=vm,
        target_name=vm.name,
        kind=Change.Kind.EMULATORPIN,
        params={"cpuset": cpuset},
        scope="live",
        reason="refresh test",
    )


class CallCounter:
    """Counts every call to a public method of libvirt's connection and domain classes, and
    libvirt.open*, for the duration of a test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        for cls in (libvirt.virConnect, libvirt.virDomain):
            for name in dir(cls):
                attr = getattr(cls, name)
                if name.startswith("_") or not callable(attr):
                    continue
                monkeypatch.setattr(cls, name, self._wrap(f"{cls.__name__}.{name}", attr))
        for name in ("open", "openReadOnly", "openAuth"):
            monkeypatch.setattr(libvirt, name, self._wrap(name, getattr(libvirt, name)))

    def _wrap(self, label: str, fn):
        def counted(*args, **kwargs):
            self.calls[label] += 1
            return fn(*args, **kwargs)

        return counted

    def reset(self) -> None:
        self.calls.clear()

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def test_a_change_refreshes_its_vm_from_the_snapshot_without_a_host_sync(test_driver) -> None:
    host = synced_host()
    vm = VirtualMachine.objects.get(host=host, name="test")
    synced_at = host.last_sync_at
    change = executor.apply_change(str(pin_change(host, "3").pk))
    assert change.status == Change.Status.SUCCEEDED, change.error
    vm.refresh_from_db()
    assert vm.emulatorpin == "3"
    assert vm.tuning_live["emulatorpin"] == "3"
    assert vm.last_seen_at >= change.finished_at
    assert VcpuPin.objects.filter(vm=vm).count() == vm.vcpu_max_config
    host.refresh_from_db()
    assert host.last_sync_at == synced_at  # no whole-host sync happened


def test_the_refresh_leaves_the_hosts_other_vms_alone(test_driver) -> None:
    add_domains(test_driver, 3, running=True)
    host = synced_host()
    others = {
        vm.pk: vm.last_seen_at
        for vm in VirtualMachine.objects.filter(host=host).exclude(name="test")
    }
    assert len(others) == 3
    executor.apply_change(str(pin_change(host, "2").pk))
    now = dict(VirtualMachine.objects.filter(pk__in=others).values_list("pk", "last_seen_at"))
    assert now == others


def _change_cost(monkeypatch, host: Host, cpuset: str) -> tuple[int, int, collections.Counter]:
    counter = CallCounter(monkeypatch)
    change = pin_change(host, cpuset)
    with CaptureQueriesContext(connection) as queries:
        result = executor.apply_change(str(change.pk))
    monkeypatch.undo()
    assert result.status == Change.Status.SUCCEEDED, result.error
    return counter.total, len(queries), counter.calls


def test_libvirt_calls_and_queries_per_change_do_not_grow_with_the_host(
    test_driver, monkeypatch
) -> None:
    small = synced_host()
    calls_small, queries_small, detail = _change_cost(monkeypatch, small, "1")
    add_domains(test_driver, 40, running=True)
    add_domains(test_driver, 20, running=False)
    big = synced_host()
    assert VirtualMachine.objects.filter(host=big).count() == 61
    calls_big, queries_big, detail_big = _change_cost(monkeypatch, big, "2")
    assert calls_big == calls_small, (detail, detail_big)
    assert queries_big == queries_small
    # Nothing in the change path asks for every domain.
    assert "virConnect.getAllDomainStats" not in detail_big
    assert "virConnect.listAllDomains" not in detail_big


def test_a_snapshot_of_another_domain_is_refused(test_driver) -> None:
    add_domains(test_driver, 1, running=True)
    host = synced_host()
    change = executor.apply_change(str(pin_change(host, "1").pk))
    other = VirtualMachine.objects.filter(host=host).exclude(name="test").get()
    with pytest.raises(ValueError, match="is not VM"):
        sync.refresh_vm(other.pk, change.after)
