"""Factories for the page tests: hosts from capabilities fixtures and VMs, without libvirt."""

from __future__ import annotations

import uuid as uuid_module
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from hosts.models import Cell, Host, PhysicalCpu
from numaportal.celery import app as celery_app
from numaportal.roles import OPERATOR_GROUP, VIEWER_GROUP
from numaportal.virt.cpuset import format_cpuset, format_nodeset, parse_cpuset
from numaportal.virt.topology import parse_capabilities
from vms.models import VcpuPin, VirtualMachine

CAPABILITIES = Path(__file__).parent.parent / "fixtures" / "capabilities"
CAPABILITY_FIXTURES = sorted(p.name for p in CAPABILITIES.glob("*.xml"))


def make_host(
    name: str, fixture: str = "x86_64-2node-24cpu-ht.xml", *, xml: str | None = None, **fields
) -> Host:
    """A synced-looking host whose topology rows come from a capabilities fixture file.

    *xml* overrides the fixture. Free memory per cell is a quarter of the cell's memory.
    """
    if xml is None:
        xml = (CAPABILITIES / fixture).read_text()
    topology = parse_capabilities(xml)
    now = timezone.now()
    defaults = {
        "uri": f"qemu+ssh://root@{name}.example.net/system",
        "sync_status": Host.SyncStatus.OK,
        "last_sync_at": now,
        "last_sync_ok_at": now,
        "arch": topology.arch,
        "cpu_model": topology.cpu_model or "",
        "cpu_vendor": topology.cpu_vendor or "",
        "capabilities_xml": xml,
        "hostname": f"{name}.example.net",
    }
    host = Host.objects.create(name=name, **{**defaults, **fields})
    for cell in topology.cells:
        row = Cell.objects.create(
            host=host,
            cell_id=cell.id,
            memory_kib=cell.memory_kib,
            free_kib=cell.memory_kib // 4,
            distances={str(k): v for k, v in cell.distances.items()},
        )
        PhysicalCpu.objects.bulk_create(
            PhysicalCpu(
                host=host,
                cell=row,
                cpu_id=cpu.id,
                socket_id=cpu.socket_id,
                die_id=cpu.die_id,
                core_id=cpu.core_id,
                siblings=format_cpuset(cpu.siblings),
            )
            for cpu in cell.cpus
        )
    return host


def make_vm(
    host: Host,
    name: str,
    *,
    pins: dict[int, str] | None = None,
    vcpus: int = 2,
    vcpu_max: int | None = None,
    running: bool = True,
    last_cpus: dict[int, int] | None = None,
    **fields,
) -> VirtualMachine:
    """A VM with *vcpus* online vCPUs; *pins* vCPU -> cpuset (live and config alike).

    ``cells`` and ``pinning`` follow from the pins and the host's stored CPUs unless given.
    """
    pins = pins or {}
    vcpu_max = vcpu_max or vcpus
    cell_of = dict(PhysicalCpu.objects.filter(host=host).values_list("cpu_id", "cell__cell_id"))
    all_cpus = frozenset(cell_of)
    affinity = {v: parse_cpuset(pins[v]) if v in pins else all_cpus for v in range(vcpu_max)}
    cells = {cell_of[c] for v in range(vcpus) for c in affinity[v] if c in cell_of}
    pinned = sum(1 for v in range(vcpus) if v in pins)
    pinning = (
        VirtualMachine.Pinning.PINNED
        if pinned == vcpus
        else VirtualMachine.Pinning.PARTLY
        if pinned
        else VirtualMachine.Pinning.UNPINNED
    )
    defaults = {
        "uuid": uuid_module.uuid4(),
        "state": "running" if running else "shut off",
        "last_seen_at": timezone.now(),
        "vcpu_max_config": vcpu_max,
        "vcpu_current_config": vcpus,
        "vcpu_max_live": vcpu_max if running else None,
        "vcpu_current_live": vcpus if running else None,
        "memory_kib": 2 * 1024 * 1024,
        "current_memory_kib": 2 * 1024 * 1024,
        "pinning": pinning,
        "cells": format_nodeset(cells) if cells else "",
        "cross_node": len(cells) > 1,
    }
    vm = VirtualMachine.objects.create(host=host, name=name, **{**defaults, **fields})
    last_cpus = last_cpus or {}
    VcpuPin.objects.bulk_create(
        VcpuPin(
            vm=vm,
            vcpu=v,
            online=v < vcpus,
            pin_live=pins.get(v, "") if running else "",
            pin_config=pins.get(v, ""),
            affinity=format_cpuset(affinity[v]) if affinity[v] else "",
            last_cpu=last_cpus.get(v, min(affinity[v], default=None)) if running else None,
            state=("running" if v < vcpus else "offline") if running else "",
        )
        for v in range(vcpu_max)
    )
    return vm


@pytest.fixture
def viewer_group() -> Group:
    """The "viewer" group that `migrate` ensures (numaportal.roles)."""
    return Group.objects.get(name=VIEWER_GROUP)


@pytest.fixture
def viewer(django_user_model, viewer_group):
    """A user in the "viewer" group: view permissions only."""
    user = django_user_model.objects.create_user("viewer", password="viewer-password-123")
    user.groups.add(viewer_group)
    return user


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def ops_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def host_factory():
    """``host_factory(name, fixture="...xml", xml=None, **fields)``: see :func:`make_host`."""
    return make_host


@pytest.fixture
def vm_factory():
    """``vm_factory(host, name, pins={vcpu: cpuset}, vcpus=2, ...)``: see :func:`make_vm`."""
    return make_vm


@pytest.fixture
def operator_user(django_user_model):
    """A user of the "operator" group (view permissions + changes.add_change)."""
    user = django_user_model.objects.create_user("op", password="op-password-123")
    user.groups.add(Group.objects.get(name=OPERATOR_GROUP))
    return user


@pytest.fixture
def enqueued():
    """apply_change's apply_async, captured: the record is written and the task handed over,
    but no worker runs it (tests that need one use ``worker_queue``)."""
    from changes import tasks as change_tasks

    with mock.patch.object(change_tasks.apply_change, "apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def inventory(host_factory, vm_factory):
    """Two hosts (2 and 4 cells) with a VM each, for the change-history pages."""
    hv1 = host_factory("hv01")
    hv2 = host_factory("hv02", "x86_64-4node-basic.xml")
    return {
        "hv01": hv1,
        "hv02": hv2,
        "db01": vm_factory(hv1, "db01", vcpus=2, vcpu_max=4),
        "web01": vm_factory(hv2, "web01"),
    }


@pytest.fixture
def quick_status(settings):
    """The home page's checks, kept off the shared lab daemon; workers are read from the
    cache (numaportal.liveness), and a broadcast ping, which waits its timeout, fails."""
    settings.NUMAPORTAL_LAB_URI = settings.NUMAPORTAL_FALLBACK_URI
    refuse = AssertionError("the status page pinged the workers")
    with mock.patch.object(celery_app.control, "ping", side_effect=refuse):
        yield
