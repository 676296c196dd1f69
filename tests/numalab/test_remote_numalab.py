"""The lab's remote-on-purpose domain, numalab2-remote (vCPUs on node 0, memory restrictive on node
1), as the portal shows it after a sync: pinned to cell 0, memory bound to cell 1, flagged
cross-node on its VM page; while numalab2-node0 and numalab2-node1, local on purpose, are not."""

from __future__ import annotations

import re

import pytest

from tests.numalab import lab
from vms.memory import memory_bar
from vms.models import VirtualMachine, VmCellMemory

pytestmark = [pytest.mark.numalab, pytest.mark.django_db(transaction=True)]


def test_the_remote_domain_is_shown_as_remote(numalab_host, viewer_client) -> None:
    # The lab hypervisor's own word first: the domain is as the lab script made it.
    witness = lab.guest_tuning("numalab2-remote", "--live")
    assert witness.vcpupin == {0: {0}, 1: {1}}  # node 0's CPUs
    assert witness.numatune == {"numa_mode": "restrictive", "numa_nodeset": "1"}

    vms = {vm.name: vm for vm in VirtualMachine.objects.filter(host=numalab_host)}
    assert set(lab.LAB_DOMAINS) <= set(vms)
    remote = vms["numalab2-remote"]
    assert remote.state == "running"
    assert remote.pinning == VirtualMachine.Pinning.PINNED
    assert remote.cells == "0"  # where its vCPUs may run
    assert (remote.numatune_mode, remote.numatune_nodeset) == ("restrictive", "1")
    assert remote.memory_cells == "1"
    assert remote.cross_node
    assert {v.vcpu: v.pin_live for v in remote.vcpus.all()} == {0: "0", 1: "1"}

    # The local ones are not flagged: the flag tells remote from local, it is not always on.
    for name, cell in (("numalab2-node0", "0"), ("numalab2-node1", "1")):
        vm = vms[name]
        assert (vm.cells, vm.memory_cells, vm.cross_node) == (cell, cell, False), name

    page = viewer_client.get(remote.get_absolute_url())
    assert page.status_code == 200
    html = page.content.decode()
    notice = re.search(r'<div class="notice cross-node-notice"[^>]*>(.*?)</div>', html, re.S)
    assert notice, "the VM page of numalab2-remote has no cross-node notice"
    words = " ".join(re.sub(r"<[^>]+>", " ", notice.group(1)).split())
    assert "vCPUs may run on cells 0; memory is bound to cells 1" in words
    assert (
        '<span class="badge cross-node"' in html.split('<div class="flags">')[1].split("</div>")[0]
    )
    assert re.search(r'data-numatune="nodeset">\s*1\s*<', html)

    local = viewer_client.get(vms["numalab2-node0"].get_absolute_url()).content.decode()
    assert "cross-node-notice" not in local


def test_its_memory_on_cell_1_is_shown_remote_from_a_sample(
    worker_host, viewer_client, sample_on_host
) -> None:
    """Sampled in the guest by the on-host worker: the VM page's "Memory per cell" of
    numalab2-remote calls its memory on cell 1 remote, in the amounts numastat -p shows."""
    sample_on_host()
    remote = VirtualMachine.objects.get(host=worker_host, name="numalab2-remote")
    html = viewer_client.get(remote.get_absolute_url()).content.decode()
    witness = lab.guest_memory("numalab2-remote")
    segments = {
        int(cell): (float(mib), bool(is_remote))
        for is_remote, cell, mib in re.findall(
            r'<span class="seg cell-\d+( remote)?" data-cell="(\d+)" data-mib="([\d.]+)"', html
        )
    }
    shown = re.search(r'data-remote-mib="([\d.]+)"', html)
    seen = f"page {segments}, remote {shown and shown.group(1)}; guest {witness.describe()}"
    assert segments, f"no memory per cell on the VM page: {seen}"
    # cell 1 remote, cell 0 local (when it shows at all: its page cache may be on node 1 too)
    assert segments[1][1] and not segments.get(0, (0.0, False))[1], seen
    # The page counts the VM's own memory: numastat -p's total on node 1 less the page cache
    # of mapped files there (numa_maps' file-backed pages), i.e. its anonymous memory.
    on_node1 = witness.numastat[1]["total"] - witness.numa_maps["file"].get(1, 0.0)
    assert on_node1 == pytest.approx(witness.numa_maps["anon"].get(1, 0.0), abs=2.0), seen
    assert segments[1][0] == pytest.approx(on_node1, abs=2.0), seen
    assert float(shown.group(1)) == pytest.approx(on_node1, abs=2.0), seen
    assert on_node1 > 16, seen  # its QEMU heap and guest RAM: not a rounding error
    stored = {m.cell_id: m.total_mib for m in VmCellMemory.objects.filter(vm=remote)}
    for node, mib in witness.numastat.items():  # as numastat -p says, file pages included
        assert stored.get(node, 0.0) == pytest.approx(mib["total"], abs=2.0), seen
    # All of its own memory is remote: numastat's pages on node 0 are QEMU's binary and
    # libraries in the page cache (shown on the page, not counted as the VM's).
    assert "(100%)" in html, seen
    assert memory_bar(remote).remote_pct > 99.0, seen
    print(seen)
