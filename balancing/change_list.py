"""The plan page's "What it would change": one row per moved VM — its pins, emulator pin and
numatune before and after, and what happens to its memory (moved live right after its pins by
a ``memory_move``, or at its next boot and why), with its memory per cell before (its last
sample) and predicted after, and its locality now and predicted after (what-if)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from balancing import planner
from balancing.apply import memory_follows
from balancing.models import BalancingPlan
from balancing.selectors import PlanContent, cpus_text, nodes_text
from hosts.models import Cell
from hosts.selectors import safe_nodeset
from numaportal.virt.cpuset import format_cpuset
from vms import locality, whatif
from vms.models import VirtualMachine

__all__ = ["PinLine", "VmChangeRow", "change_rows", "locality_whatif", "memory_now"]


@dataclass(frozen=True)
class PinLine:
    vcpus: str
    before: str
    after: str
    changed: bool


@dataclass(frozen=True)
class VmChangeRow:
    name: str
    url: str
    step: int | None
    cells_before: str
    cells_after: str
    pins: list[PinLine]
    emulator_before: str
    emulator_after: str
    memory_before: str
    memory_after: str
    dedicated: bool
    #: What happens to its memory when the plan is applied: moved live, or why at next boot.
    memory_now: str = ""
    memory_moves_live: bool = False
    #: Its own memory per cell (MiB, "cell: MiB; …") at its last sample, and predicted after.
    memory_mib_before: str = ""
    memory_mib_after: str = ""
    #: Its locality (:mod:`vms.locality`) now and predicted right after applying the plan, how
    #: that was predicted; after its next boot when its memory follows then; the warning when
    #: its memory would stay remote.
    locality_now: float | None = None
    locality_after: float | None = None
    locality_boot: float | None = None
    locality_how: str = ""
    memory_warning: str = ""

    @property
    def locality_now_text(self) -> str:
        return _figure(self.locality_now)

    @property
    def locality_after_text(self) -> str:
        return _figure(self.locality_after)

    @property
    def locality_boot_text(self) -> str:
        return _figure(self.locality_boot)


def _figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _pin_lines(demand: planner.VmDemand | None, after: planner.Assignment) -> list[PinLine]:
    """vCPUs grouped by identical before -> after pins (``vCPUs 0-3: floats -> 6-11,18-23``)."""
    current = dict(demand.vcpupin) if demand is not None else {}
    lines: list[tuple[list[int], str, str]] = []
    for vcpu in sorted(after.vcpupin):
        before = cpus_text(current.get(vcpu), "not pinned")
        new = cpus_text(after.vcpupin[vcpu])
        if lines and lines[-1][1:] == (before, new) and lines[-1][0][-1] == vcpu - 1:
            lines[-1][0].append(vcpu)
        else:
            lines.append(([vcpu], before, new))
    return [
        PinLine(vcpus=format_cpuset(vcpus), before=before, after=new, changed=before != new)
        for vcpus, before, new in lines
    ]


def change_rows(
    plan: BalancingPlan,
    content: PlanContent,
    vm_urls: Mapping[str, str],
    vms: Mapping[str, VirtualMachine] | None = None,
) -> list[VmChangeRow]:
    """One row per VM the plan moves, in the apply order when there is one; with *vms* (their
    ``cell_memory`` prefetched), what happens to each one's memory (moved live right after its
    pins, or at its next boot) and its locality now and predicted after: one query (the host's
    distances) whatever the number of VMs."""
    moved = [name for name, a in content.after.items() if a.moved]
    order = {name: i for i, name in enumerate(plan.apply_order or [], 1)}
    moved.sort(key=lambda name: (order.get(name, len(order) + 1), name))
    distances: locality.Distances = {}
    if vms and moved:
        distances = locality.parse_distances(
            Cell.objects.filter(host_id=plan.host_id).order_by().values_list("cell_id", "distances")
        )
    rows = []
    for name in moved:
        a = content.after[name]
        demand = content.demands.get(name)
        before = content.before.get(name)
        cells_before = demand.cells if demand is not None and demand.cells else None
        if cells_before is None and before is not None:
            cells_before = before.cells
        memory_before = (
            f"node {nodes_text(demand.memory_cells)}"
            if demand is not None and demand.memory_cells
            else "not bound"
        )
        rows.append(
            VmChangeRow(
                name=name,
                url=vm_urls.get(name, ""),
                step=order.get(name),
                cells_before=nodes_text(cells_before),
                cells_after=nodes_text(a.cells),
                pins=_pin_lines(demand, a),
                emulator_before=cpus_text(demand.emulatorpin if demand else None, "not pinned"),
                emulator_after=cpus_text(a.emulatorpin, "not pinned"),
                memory_before=memory_before,
                memory_after=f"{a.mode} node {nodes_text(a.nodeset)}",
                dedicated=a.dedicated,
                **memory_now(vms.get(name) if vms else None, nodes_text(a.nodeset)),
                **locality_whatif(vms.get(name) if vms else None, a, distances),
            )
        )
    return rows


def locality_whatif(
    vm: VirtualMachine | None, after: planner.Assignment, distances: locality.Distances
) -> dict[str, object]:
    """The VM's locality now (its last sample's memory, its vCPUs' cells now) and predicted
    right after the plan (its vCPUs on the planned cells; its memory moved there when it moves
    live, where it is now otherwise, and then after its next boot too), and the warning when
    its memory would stay remote."""
    if vm is None:
        return {}
    own = {r.cell_id: r.own_mib for r in vm.cell_memory.all()}
    home = safe_nodeset(vm.cells)
    now = locality.locality(own, home, distances) if vm.is_running else None
    nodeset = after.nodeset or after.cells
    boot = locality.locality(whatif.placed_on(nodeset), after.cells, distances)
    if not memory_follows(vm):
        return {
            "locality_now": now,
            "locality_after": locality.locality(
                whatif.moved_to(own, nodeset) if own else whatif.placed_on(nodeset),
                after.cells,
                distances,
            ),
            "locality_how": "its memory moves with its vCPUs",
        }
    if not vm.is_running:
        return {"locality_boot": boot, "locality_how": "shut off"}
    stranded = whatif.stranded_text(own, after.cells, "until its next boot")
    return {
        "locality_now": now,
        "locality_after": locality.locality(own, after.cells, distances),
        "locality_boot": boot,
        "locality_how": "right after applying, with its memory where it is now",
        "memory_warning": f"{stranded}." if stranded else "",
    }


# --- diagrams ---------------------------------------------------------------------------------


def memory_now(vm: VirtualMachine | None, nodeset: str) -> dict[str, object]:
    """What happens to the VM's memory, and its MiB per cell before and predicted after (from
    its last sample; all of it on the new cells when it moves live, where it is otherwise)."""
    if vm is None:
        return {}
    rows = {r.cell_id: r.own_mib for r in vm.cell_memory.all()}
    before = "; ".join(f"{cell}: {mib:.0f}" for cell, mib in sorted(rows.items()))
    why = memory_follows(vm)
    if why:
        return {
            "memory_now": why,
            "memory_moves_live": False,
            "memory_mib_before": before,
            "memory_mib_after": before,
        }
    how = "live numatune" if vm.numatune_mode == "restrictive" else "page migration"
    total = sum(rows.values())
    return {
        "memory_now": f"moves live to node {nodeset} right after its pins ({how})",
        "memory_moves_live": True,
        "memory_mib_before": before,
        "memory_mib_after": f"{nodeset}: {total:.0f}" if rows else "",
    }
