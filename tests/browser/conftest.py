"""The browser tier: Debian's headless Chromium at 1400 CSS pixels against a live server, on
data stored with the page tests' factories (no libvirt, no lab).

The driver fails a test on console errors after every page it opens (tests/chromium.py).
"""

from __future__ import annotations

from unittest import mock

import pytest
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.test import Client

from balancing import compute as plan_compute
from balancing import requests as plan_requests
from balancing.models import BalancingPlan, BalancingPolicy
from bench.dense_host import big_topology, capabilities_xml
from hosts.models import Host
from numaportal.virt.cpuset import format_cpuset
from numaportal.virt.topology import parse_capabilities
from tests.chromium import CheckedChrome, start_chromium
from tests.web.conftest import make_host, make_vm

VM_KIB = 64 * 1024  # small VMs, so that the fixtures' few GiB hold them all
#: The width of the issue's report.
WIDTH = 1400


@pytest.fixture
def browser():
    with start_chromium(WIDTH, 900) as driver:
        yield driver


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("ops", "", "browser-password-123")


def sign_in(browser: CheckedChrome, live_server, user) -> None:
    """A session for *user* as a cookie (the login form has tests of its own)."""
    client = Client()
    client.force_login(user)
    browser.get(live_server.url + "/login/")
    browser.add_cookie(
        {
            "name": settings.SESSION_COOKIE_NAME,
            "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            "path": "/",
        }
    )
    assert get_user_model().objects.filter(pk=user.pk).exists()
    assert SESSION_KEY in client.session


def crowd(host: Host, per_thread: float = 300 / 448, prefix: str = "vm") -> int:
    """Running VMs of 2 vCPUs on each CPU cell, as the issue's host has them: VM j of a cell
    pinned to threads 2j and 2j+1 of it (wrapping, so busy cells over-commit), its emulator on
    the whole cell; *per_thread* VMs per thread of the cell. Plus, on the first cell, a VM
    pinned to a range and one floating over the host. Returns how many VMs it made."""
    topology = parse_capabilities(host.capabilities_xml)
    made = 0
    for cell in topology.cells:
        if not cell.cpus:
            continue
        ids = sorted(cell.cpu_ids)
        whole = format_cpuset(ids)
        for j in range(max(2, round(len(ids) * per_thread))):
            pins = {v: str(ids[(2 * j + v) % len(ids)]) for v in range(2)}
            make_vm(
                host,
                f"{prefix}-n{cell.id}-{j:03d}-database",
                pins=pins,
                emulatorpin=whole,
                emulatorpin_config=whole,
                memory_cells=str(cell.id),
                memory_kib=VM_KIB,
                current_memory_kib=VM_KIB,
            )
            made += 1
    first = next(c for c in topology.cells if c.cpus)
    ids = sorted(first.cpu_ids)
    make_vm(
        host,
        f"{prefix}-range",
        vcpus=2,
        pins={0: format_cpuset(ids[:2]), 1: format_cpuset(ids[:2])},
        memory_kib=VM_KIB,
        current_memory_kib=VM_KIB,
    )
    make_vm(host, f"{prefix}-floater", vcpus=1, memory_kib=VM_KIB, current_memory_kib=VM_KIB)
    return made + 2


def dense_host(name: str = "dense") -> Host:
    """The issue's host: 448 threads in 8 CPU cells + 2 memory-only cells (10 cells), 300
    pinned VMs with their emulator threads pinned to their cell (bench.dense_host)."""
    host = make_host(name, xml=capabilities_xml(big_topology()))
    topology = parse_capabilities(host.capabilities_xml)
    cpu_cells = [cell for cell in topology.cells if cell.cpus]
    for i in range(300):
        cell = cpu_cells[i % len(cpu_cells)]
        ids = sorted(cell.cpu_ids)
        whole = format_cpuset(ids)
        pins = {v: str(ids[(2 * (i // len(cpu_cells)) + v) % len(ids)]) for v in range(2)}
        make_vm(
            host,
            f"dense-vm{i:03d}",
            pins=pins,
            emulatorpin=whole,
            emulatorpin_config=whole,
            memory_cells=str(cell.id),
        )
    return host


def computed_plan(host: Host) -> BalancingPlan:
    """A plan requested (the Celery hand-over skipped) and computed here by the real planner,
    under a policy that lets the crowded hosts' vCPUs share threads (4 per thread)."""
    BalancingPolicy.objects.create(host=host, cpu_overcommit=4.0, max_moves=1000)
    with mock.patch("balancing.tasks.compute_plan.apply_async"):
        plan = plan_requests.request_plan(host=host, actor=None)
    return plan_compute.compute_plan(plan.pk)
