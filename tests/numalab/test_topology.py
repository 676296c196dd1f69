"""The NUMA lab's topology as the portal stores it after "Sync now" equals ``numactl -H``
inside the guest: the same nodes, the same CPUs on each, the memory-only node with no CPUs,
the same sizes, the same distance matrix."""

from __future__ import annotations

import re

import pytest

from hosts.models import Cell, Host, PhysicalCpu
from tests.numalab import lab
from tests.numalab.conftest import sync_through_worker

pytestmark = [pytest.mark.numalab, pytest.mark.django_db(transaction=True)]


def page_distances(html: str) -> dict[int, dict[int, int]]:
    """The host page's "Node distances" table as {row node: {column node: distance}}."""
    table = re.search(r'<table class="grid distances">(.*?)</table>', html, re.S)
    assert table, "no distance table on the host page"
    columns = [int(c) for c in re.findall(r"<th>(\d+)</th>", table.group(1).split("</thead>")[0])]
    rows = {}
    for node, cells in re.findall(r"<tr[^>]*>\s*<th>(\d+)</th>(.*?)</tr>", table.group(1), re.S):
        values = [int(v) for v in re.findall(r"<td[^>]*>\s*(\d+)\s*</td>", cells)]
        rows[int(node)] = dict(zip(columns, values, strict=True))
    return rows


def test_stored_topology_is_what_numactl_shows_in_the_guest(
    worker_host: Host, viewer_client
) -> None:
    # Start from nothing stored, so the rows below can only come from the worker's sync.
    PhysicalCpu.objects.filter(host=worker_host).delete()
    Cell.objects.filter(host=worker_host).delete()
    host = sync_through_worker(worker_host)
    numactl = lab.guest_numactl_hardware()

    cells = {c.cell_id: c for c in Cell.objects.filter(host=host)}
    stored_cpus = {cell_id: frozenset() for cell_id in cells}
    for cell_id, cpu_id in PhysicalCpu.objects.filter(host=host).values_list(
        "cell__cell_id", "cpu_id"
    ):
        stored_cpus[cell_id] |= {cpu_id}

    # The lab as its script describes it, so that a lab that came up differently fails here
    # instead of making the comparison trivially true.
    assert numactl.cpus == {0: {0, 1}, 1: {2, 3}, 2: frozenset()}
    assert stored_cpus == numactl.cpus
    assert stored_cpus[2] == frozenset()  # node 2: memory only (CXL-like), no CPUs

    # numactl prints whole MiB (truncated) of the same per-node total libvirt reports in KiB.
    assert {i: c.memory_kib // 1024 for i, c in cells.items()} == pytest.approx(
        numactl.size_mib, abs=1
    )
    assert cells[2].memory_kib > 400 * 1024  # the 512 MiB memory-only node has memory

    stored_distances = {i: {int(k): v for k, v in c.distances.items()} for i, c in cells.items()}
    assert stored_distances == numactl.distances
    assert numactl.distances == {
        0: {0: 10, 1: 21, 2: 30},
        1: {0: 21, 1: 10, 2: 30},
        2: {0: 30, 1: 30, 2: 10},
    }

    # The host page says the same as numactl (what an operator compares by eye).
    page = viewer_client.get(host.get_absolute_url())
    assert page.status_code == 200
    html = page.content.decode()
    assert re.search(r'data-lscpu="numa_nodes">\s*3\s*<', html)
    for node, cpus in {0: "0-1", 1: "2-3", 2: "(memory only)"}.items():
        assert re.search(
            rf'data-lscpu-cell="{node}"><span class="cpuset">{re.escape(cpus)}</span>', html
        ), f"node {node} is not shown as {cpus}"
    assert page_distances(html) == numactl.distances

    # Each CPU is its own core (no SMT in the lab): siblings are the CPU itself.
    assert dict(PhysicalCpu.objects.filter(host=host).values_list("cpu_id", "siblings")) == {
        0: "0",
        1: "1",
        2: "2",
        3: "3",
    }
