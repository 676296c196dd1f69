"""The plan page's "What it would change": one row per moved VM — its pins, emulator pin and
numatune before and after, and what happens to its memory (moved live right after its pins by
a ``memory_move``, or at its next boot and why), with its memory per cell before (its last
sample) and predicted after."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from balancing import planner
from balancing.apply import memory_follows
from balancing.models import BalancingPlan
from balancing.selectors import PlanContent, cpus_text, nodes_text
from numaportal.virt.cpuset import format_cpuset
from vms.models import VirtualMachine

__all__ = ["PinLine", "VmChangeRow", "change_rows", "memory_now"]


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
    """One row per VM the plan moves, in the apply order when there is one; with *vms*, what
    happens to each one's memory (moved live right after its pins, or at its next boot)."""
    moved = [name for name, a in content.after.items() if a.moved]
    order = {name: i for i, name in enumerate(plan.apply_order or [], 1)}
    moved.sort(key=lambda name: (order.get(name, len(order) + 1), name))
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
            )
        )
    return rows


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
