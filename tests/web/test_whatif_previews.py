"""What-if before applying: the emulatorpin and numatune previews show the VM's predicted
locality after the change and warn when it would make memory remote, in the rendered page; the
plan page shows every moved VM's locality now and predicted after the plan.

The figures hold for any distance weighting in which memory on a home cell counts 1 and memory
whose distance is unknown counts 0: partial values are computed with ``vms.locality`` itself
from the host's stored distances, exact ones come from all memory home (1.00) or a host that
reports no distances (0.00). Previews queue nothing; no worker runs.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from changes.models import Change
from hosts.models import Cell
from numaportal.virt.cpuset import format_nodeset, parse_nodeset
from tests.web.test_balancing_plans import computed_plan
from vms import locality
from vms.models import VirtualMachine, VmCellMemory

pytestmark = [pytest.mark.web, pytest.mark.django_db]

CAPABILITIES = Path(__file__).parent.parent / "fixtures" / "capabilities"
FIXTURE = "x86_64-2node-24cpu-ht.xml"  # cell 0 = CPUs 0-5,12-17, cell 1 = 6-11,18-23, 21 apart
REASON = "what-if: see the locality before applying"
HEAD = "Predicted locality (memory where its vCPUs run, by distance): "
ON_CELL_0 = {0: "0", 1: "1"}


@pytest.fixture
def op_client(client, operator_user):
    client.force_login(operator_user)
    return client


@pytest.fixture
def host(host_factory):
    return host_factory("hv1", FIXTURE, worker_queue="host.hv1")


@pytest.fixture
def blind_host(host_factory):
    """The same host, reporting no distances: memory off the home cells counts 0."""
    xml = re.sub(
        r"<distances>.*?</distances>", "", (CAPABILITIES / FIXTURE).read_text(), flags=re.S
    )
    host = host_factory("hv2", xml=xml, worker_queue="host.hv2")
    assert not any(Cell.objects.filter(host=host).values_list("distances", flat=True))
    return host


def sample(vm: VirtualMachine, **mib: float) -> None:
    """The VM's last on-host sample: its own MiB per cell (``c0=4096``)."""
    now = timezone.now()
    for key, value in mib.items():
        VmCellMemory.objects.create(vm=vm, cell_id=int(key[1:]), sampled_at=now, heap_mib=value)


def expected(vm: VirtualMachine, memory: dict[int, float], home: set[int]) -> str:
    distances = locality.parse_distances(
        Cell.objects.filter(host=vm.host).values_list("cell_id", "distances")
    )
    return f"{locality.locality(memory, home, distances):.2f}"


def preview(client, vm: VirtualMachine, kind: str, **data: str) -> tuple[object, str]:
    """The preview's context and its rendered page (entities decoded)."""
    response = client.post(
        reverse("vms:change", args=[vm.host.name, vm.uuid, kind]),
        {"reason": REASON, "preview": "1", **data},
    )
    assert response.context["step"] == "preview", response.context["form"].errors
    assert Change.objects.count() == 0
    return response.context["preview"], html.unescape(response.content.decode())


# --- emulatorpin ------------------------------------------------------------------------------


def test_emulatorpin_leaves_the_locality_unchanged_and_warns_on_a_cell_without_vcpus_or_memory(
    op_client, host, vm_factory
):
    vm = vm_factory(host, "db01", pins=ON_CELL_0)
    sample(vm, c0=4096)
    shown, page = preview(op_client, vm, "emulatorpin", cpuset="6-11", scope="live+config")
    note = (
        f"{HEAD}1.00 now -> 1.00 unchanged: its vCPUs, not the emulator threads, decide its home "
        "cells, and pinning the emulator moves no memory."
    )
    warning = (
        "The emulator lands on cell(s) 1, where the VM has neither vCPUs (on 0) nor memory "
        "(on 0): the emulator's own accesses to guest memory (device emulation, I/O) go remote."
    )
    assert note in shown.notes and note in page
    assert warning in shown.warnings and warning in page
    # on its own cell: nothing to warn about
    shown, page = preview(op_client, vm, "emulatorpin", cpuset="2-3", scope="live+config")
    assert not shown.warnings
    assert note in page


def test_emulatorpin_where_its_memory_is_but_no_vcpu_says_only_that(op_client, host, vm_factory):
    vm = vm_factory(host, "db01", pins=ON_CELL_0)
    sample(vm, c0=1024, c1=3072)
    _, page = preview(op_client, vm, "emulatorpin", cpuset="6-11", scope="live")
    now = expected(vm, {0: 1024, 1: 3072}, {0})
    assert f"{HEAD}{now} now -> {now} unchanged" in page
    assert "where none of the VM's vCPUs run (they run on 0)" in page
    assert "neither vCPUs" not in page


def test_emulatorpin_without_a_sample_warns_by_the_memory_binding(op_client, host, vm_factory):
    vm = vm_factory(
        host, "db01", pins=ON_CELL_0, numatune_mode="strict", numatune_nodeset="0", memory_cells="0"
    )
    _, page = preview(op_client, vm, "emulatorpin", cpuset="6-11", scope="live")
    assert f"{HEAD}unknown now, unchanged" in page
    assert "neither vCPUs (on 0) nor memory (on 0)" in page


# --- numatune ---------------------------------------------------------------------------------


def restrictive_vm(host, vm_factory, nodeset: str) -> VirtualMachine:
    return vm_factory(
        host,
        "db01",
        pins=ON_CELL_0,
        numatune_mode="restrictive",
        numatune_nodeset=nodeset,
        memory_cells=nodeset,
    )


def test_numatune_live_restrictive_moves_the_memory(op_client, host, vm_factory):
    """Memory on cell 1, vCPUs on cell 0: restrictive 0 live moves it home."""
    vm = restrictive_vm(host, vm_factory, "1")
    sample(vm, c0=1024, c1=3072)
    data = {"mode": "restrictive", "nodeset": "0", "scope": "live+config"}
    shown, page = preview(op_client, vm, "numatune", **data)
    now = expected(vm, {0: 1024, 1: 3072}, {0})
    assert (
        f"{HEAD}{now} now -> 1.00 after: its memory moves to cell(s) 0 live, its vCPUs stay on "
        "cell(s) 0."
    ) in page
    assert not any("Memory bound" in w for w in shown.warnings)


def test_numatune_live_restrictive_away_from_the_vcpus_warns_with_the_figure(
    op_client, host, vm_factory
):
    vm = restrictive_vm(host, vm_factory, "0")
    sample(vm, c0=4096)
    data = {"mode": "restrictive", "nodeset": "1", "scope": "live"}
    shown, page = preview(op_client, vm, "numatune", **data)
    after = expected(vm, {1: 4096}, {0})
    assert f"{HEAD}1.00 now -> {after} after: its memory moves to cell(s) 1 live" in page
    warning = f"Memory bound to cell(s) 1 while the vCPUs run on cell(s) 0: locality {after} after."
    assert warning in shown.warnings and warning in page


def test_numatune_in_config_scope_predicts_the_next_boot(op_client, blind_host, vm_factory):
    """The issue's example on a host without distances: all of its memory on cell 1, vCPUs on
    cell 0 (0.00); strict 0 in the config puts it home at the next boot."""
    vm = vm_factory(
        blind_host,
        "db01",
        pins=ON_CELL_0,
        numatune_mode="strict",
        numatune_nodeset="1",
        memory_cells="1",
    )
    sample(vm, c1=4096)
    shown, page = preview(op_client, vm, "numatune", mode="strict", nodeset="0", scope="config")
    assert (
        f"{HEAD}now 0.00; after next boot 1.00 (memory placed on cell(s) 0, vCPUs on cell(s) 0 "
        "as now)."
    ) in page
    assert not shown.warnings
    # and the other way round: bound away from the vCPUs
    shown, page = preview(op_client, vm, "numatune", mode="strict", nodeset="1", scope="config")
    assert f"{HEAD}now 0.00; after next boot 0.00" in page
    warning = (
        "Memory bound to cell(s) 1 while the vCPUs run on cell(s) 0: locality 0.00 after next boot."
    )
    assert warning in shown.warnings and warning in page


def test_numatune_refused_live_says_nothing_changes(op_client, host, vm_factory):
    vm = vm_factory(
        host, "db01", pins=ON_CELL_0, numatune_mode="strict", numatune_nodeset="1", memory_cells="1"
    )
    sample(vm, c1=4096)
    data = {"mode": "strict", "nodeset": "0", "scope": "live+config"}
    _, page = preview(op_client, vm, "numatune", **data)
    now = expected(vm, {1: 4096}, {0})
    assert (
        f"{HEAD}now {now}, and unchanged: libvirt refuses the live part, so nothing changes; "
        "in config scope: after next boot 1.00 (memory placed on cell(s) 0"
    ) in page
    assert "can't change nodeset for strict mode for running domain" in page


def test_numatune_live_in_another_mode_is_not_predicted(op_client, host, vm_factory):
    vm = vm_factory(
        host,
        "db01",
        pins=ON_CELL_0,
        numatune_mode="preferred",
        numatune_nodeset="1",
        memory_cells="1",
    )
    sample(vm, c0=4096)
    _, page = preview(op_client, vm, "numatune", mode="preferred", nodeset="0", scope="live+config")
    assert f"{HEAD}now 1.00; live: not predicted" in page
    assert "; after next boot 1.00 (memory placed on cell(s) 0" in page


def test_numatune_of_a_shut_off_vm_predicts_its_next_boot(op_client, host, vm_factory):
    vm = vm_factory(host, "db01", pins=ON_CELL_0, running=False)
    _, page = preview(op_client, vm, "numatune", mode="strict", nodeset="1", scope="config")
    boot = expected(vm, {1: 1.0}, {0})
    assert f"{HEAD}after next boot {boot} (memory placed on cell(s) 1" in page
    assert f"locality {boot} after next boot" in page


# --- the plan page ----------------------------------------------------------------------------


def test_plan_page_shows_each_moved_vms_locality_now_and_after(op_client, host, vm_factory):
    """mover: memory moves live with its vCPUs (no numatune, an on-host worker); bound01:
    strict, so its memory stays where it is until its next boot — on the cell the plan takes its
    vCPUs away from, which the page warns about."""
    mover = vm_factory(host, "mover", pins={0: "0", 1: "6"})
    bound = vm_factory(
        host,
        "bound01",
        pins={0: "1", 1: "7"},
        numatune_mode="strict",
        numatune_nodeset="0-1",
        memory_cells="0-1",
    )
    plan = computed_plan(host)
    assert plan.status == "ready", plan.error
    cells = {name: set(parse_nodeset(a["cells"])) for name, a in plan.after.items()}
    assert plan.after["mover"]["moved"] and plan.after["bound01"]["moved"]
    sample(mover, c0=1024, c1=3072)
    (away,) = {0, 1} - cells["bound01"]
    sample(bound, **{f"c{away}": 4096})

    response = op_client.get(reverse("balancing:plan", args=[plan.pk]))
    page = html.unescape(response.content.decode())
    rows = {row.name: row for row in response.context["change_rows"]}

    now = expected(mover, {0: 1024, 1: 3072}, {0, 1})
    assert now == "1.00"  # its vCPUs may run on both cells now
    assert (rows["mover"].locality_now_text, rows["mover"].locality_after_text) == ("1.00", "1.00")
    assert "1.00 now→1.00 after (its memory moves with its vCPUs)" in text_of(page, "mover")
    assert not rows["mover"].memory_warning

    stays = expected(bound, {away: 4096}, cells["bound01"])
    row = rows["bound01"]
    assert (row.locality_now_text, row.locality_after_text) == ("1.00", stays)
    assert row.locality_boot_text == "1.00"  # strict on its new cell from the next boot
    bound_text = text_of(page, "bound01")
    assert (
        f"1.00 now→{stays} after (right after applying, with its memory where it is now); "
        "1.00 after its next boot"
    ) in bound_text
    warning = (
        f"vCPUs to cell(s) {format_nodeset(cells['bound01'])}; 100 % of its 4 GiB stays on "
        f"cell(s) {away} until its next boot (remote memory)."
    )
    assert row.memory_warning == warning and warning in bound_text


def text_of(page: str, vm: str) -> str:
    """The text of the VM's row of "What it would change", tags dropped."""
    row = page.split(f'<tr data-vm="{vm}">', 1)[1].split("</tr>", 1)[0]
    return re.sub(r"<[^>]+>", "", row)
