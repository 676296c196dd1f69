"""VM memory per cell on the VM and host pages: stacked bars, remote cells, escaping."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from vms.models import VmCellMemory

pytestmark = [pytest.mark.web, pytest.mark.django_db]

# x86_64-2node-24cpu-ht.xml: cell 0 = CPUs 0-5,12-17, cell 1 = CPUs 6-11,18-23.


def add_memory(vm, **cells: tuple[float, float]) -> None:
    """cells: cell<N>=(heap MiB, private MiB)."""
    for key, (heap, private) in cells.items():
        VmCellMemory.objects.create(
            vm=vm,
            cell_id=int(key.removeprefix("cell")),
            sampled_at=timezone.now(),
            heap_mib=heap,
            private_mib=private,
        )


@pytest.fixture
def probe_host(host_factory):
    return host_factory("hv1", worker_queue="host.hv1")


def test_vm_page_shows_memory_per_cell_and_what_is_remote(viewer_client, probe_host, vm_factory):
    vm = vm_factory(probe_host, "db01", pins={0: "6", 1: "7"})  # vCPUs on cell 1 only
    add_memory(vm, cell0=(100.0, 300.0), cell1=(50.0, 50.0))
    page = viewer_client.get(vm.get_absolute_url()).content.decode()
    section = page[page.index('id="memory-per-cell"') :]
    assert 'data-remote-mib="400.0"' in section  # 400 MiB on cell 0, where it may not run
    assert "(80%)" in section
    seg0 = re.search(r'<span class="seg cell-0 remote" data-cell="0" data-mib="400.0"', section)
    seg1 = re.search(r'<span class="seg cell-1" data-cell="1" data-mib="100.0"', section)
    assert seg0 and seg1
    assert "width: 80.00%" in section and "width: 20.00%" in section


def test_mapped_files_are_shown_but_not_counted_as_the_vms_memory(
    viewer_client, probe_host, vm_factory
):
    """QEMU's binary and libraries sit in the page cache wherever the first reader put them:
    13 MiB of them on cell 0 must not make a VM bound to cell 1 look remote."""
    vm = vm_factory(probe_host, "bound1", pins={0: "6", 1: "7"})  # vCPUs on cell 1 only
    add_memory(vm, cell1=(10.0, 90.0))
    VmCellMemory.objects.create(
        vm=vm, cell_id=0, sampled_at=timezone.now(), private_mib=13.0, files_mib=13.0
    )
    page = viewer_client.get(vm.get_absolute_url()).content.decode()
    section = page[page.index('id="memory-per-cell"') :]
    assert 'data-remote-mib="0.0"' in section
    assert "of which 13.0 mapped files" in section  # shown, as numastat -p would count it
    assert re.search(r'<span class="seg cell-1" data-cell="1" data-mib="100.0"', section)


def test_unpinned_vm_on_every_cell_has_no_remote_memory(viewer_client, probe_host, vm_factory):
    vm = vm_factory(probe_host, "web01")  # floats over both cells
    add_memory(vm, cell0=(10.0, 10.0), cell1=(10.0, 10.0))
    page = viewer_client.get(vm.get_absolute_url()).content.decode()
    assert 'data-remote-mib="0.0"' in page
    assert " remote" not in page[page.index('id="memory-per-cell"') :].split("</section>")[0]


def test_host_page_lists_each_vms_bar_and_escapes_names(viewer_client, probe_host, vm_factory):
    evil = vm_factory(probe_host, '<img src=x onerror="alert(1)">', pins={0: "0", 1: "1"})
    add_memory(evil, cell1=(1.0, 1.0))
    quiet = vm_factory(probe_host, "quiet")
    add_memory(quiet, cell0=(5.0, 5.0))
    page = viewer_client.get(reverse("hosts:detail", args=[probe_host.name])).content.decode()
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert page.count("data-vm-memory=") == 2
    assert 'data-sample-source="probe"' in page


def test_a_libvirt_only_host_says_what_it_cannot_show(viewer_client, host_factory, vm_factory):
    host = host_factory("plain")
    vm = vm_factory(host, "v")
    page = viewer_client.get(reverse("hosts:detail", args=[host.name])).content.decode()
    assert 'data-sample-source="libvirt"' in page
    assert "needs an on-host worker" in page
    vm_page = viewer_client.get(vm.get_absolute_url()).content.decode()
    assert "libvirt does not report where a VM" in vm_page
