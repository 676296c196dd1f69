"""Read side of the balancing pages: a plan's rows shaped for templates (strings already
formatted, so templates hold no logic), its before / after diagrams, the plans list filter.

The "before" side is the inventory the plan was computed from (its stored demands and current
assignments), not the host as it is now: the diagram, the score and the change list then tell
the same story. The "after" side is the plan's assignments; memory per cell there is projected
(free now, plus what the plan moves away, minus what it moves in).
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.utils.safestring import SafeString, mark_safe

from balancing import planner
from balancing.models import BalancingPlan
from changes.models import Change
from hosts import selectors as host_selectors
from hosts.diagram import HALF_WIDTH, CellMemory, DiagramVm, render_topology_svg
from hosts.models import Host
from numaportal.formatting import format_kib
from numaportal.virt.cpuset import format_cpuset, format_nodeset
from numaportal.virt.topology import HostTopology
from vms.models import VirtualMachine

ACTIVE_STATUSES = frozenset({BalancingPlan.Status.COMPUTING, BalancingPlan.Status.APPLYING})

# --- the plans list ---------------------------------------------------------------------------


class PlanFilter(django_filters.FilterSet):
    host = django_filters.ModelChoiceFilter(
        queryset=Host.objects.order_by("name"), to_field_name="name", empty_label="all hosts"
    )
    status = django_filters.ChoiceFilter(
        choices=BalancingPlan.Status.choices, empty_label="any status"
    )
    trigger = django_filters.ChoiceFilter(
        choices=BalancingPlan.Trigger.choices, empty_label="anyone", label="Requested by"
    )

    class Meta:
        model = BalancingPlan
        fields = ["host", "status", "trigger"]


def plans() -> QuerySet[BalancingPlan]:
    return BalancingPlan.objects.select_related("host").order_by("-created_at", "-pk")


# --- formatting -------------------------------------------------------------------------------


def cpus_text(cpus: Iterable[int] | None, empty: str = "—") -> str:
    cpus = frozenset(cpus or ())
    return format_cpuset(cpus) if cpus else empty


def nodes_text(nodes: Iterable[int] | None, empty: str = "—") -> str:
    nodes = frozenset(nodes or ())
    return format_nodeset(nodes) if nodes else empty


def _number(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def cell_rows(topology: HostTopology | None) -> list[dict[str, Any]]:
    """The host's cells and their CPUs, for the policy form's reminder."""
    if topology is None:
        return []
    return [
        {"id": cell.id, "cpus": cpus_text(cell.cpu_ids, "memory only")} for cell in topology.cells
    ]


# --- the score table --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreTerm:
    key: str
    label: str
    #: "count", "number" or "share" (a fraction shown in %).
    kind: str
    explanation: str
    higher_is_better: bool = False


SCORE_TERMS: tuple[ScoreTerm, ...] = (
    ScoreTerm(
        "vms_on_one_cell",
        "VMs on one cell",
        "count",
        "VMs whose vCPUs may run on a single NUMA cell (the seed's advice)",
        higher_is_better=True,
    ),
    ScoreTerm(
        "remote",
        "remote memory",
        "number",
        "per GiB of VM memory, how far it is from its vCPUs (0 = all local; 1.1 = all at "
        "distance 21)",
    ),
    ScoreTerm(
        "remote_vcpus",
        "remote vCPUs",
        "number",
        "vCPUs weighted by the share of their VM's memory on another cell",
    ),
    ScoreTerm("split", "VMs split over cells", "share", "share of VMs on more than one cell"),
    ScoreTerm(
        "cpu_imbalance",
        "CPU imbalance",
        "share",
        "most minus least loaded cell, in vCPUs per physical CPU",
    ),
    ScoreTerm(
        "memory_imbalance",
        "memory imbalance",
        "share",
        "most minus least used cell, as a share of its memory",
    ),
    ScoreTerm("moves", "moves", "count", "VMs placed differently than now"),
    ScoreTerm(
        "total",
        "total score",
        "number",
        "100 x (remote + split / 2 + imbalance / 8 + move weight x moves / VMs); lower is better",
    ),
)


@dataclass(frozen=True)
class ScoreRow:
    key: str
    label: str
    explanation: str
    before: str
    after: str
    delta: str
    #: "better", "worse" or "same" (a CSS class).
    verdict: str


def _format_term(term: ScoreTerm, value: Any) -> str:
    if value is None:
        return "—"
    if term.kind == "share":
        return _pct(value)
    if term.kind == "count":
        return str(int(value))
    return _number(value)


def _format_delta(term: ScoreTerm, delta: float) -> str:
    if abs(delta) < 1e-9:
        return "±0"
    sign = "+" if delta > 0 else "\u2212"  # a minus sign
    if term.kind == "share":
        return f"{sign}{abs(100 * delta):.1f} pts"
    if term.kind == "count":
        return f"{sign}{abs(round(delta))}"
    return f"{sign}{abs(delta):.2f}"


def score_rows(plan: BalancingPlan) -> list[ScoreRow]:
    """Each score term before / after / delta; empty when the plan has no scores."""
    before, after = plan.score_before or {}, plan.score_after or {}
    if not before and not after:
        return []
    rows = []
    vms = before.get("vms", after.get("vms"))
    for term in SCORE_TERMS:
        b, a = before.get(term.key), after.get(term.key)
        if b is None and a is None:
            continue
        delta = (a - b) if a is not None and b is not None else 0.0
        better = delta > 1e-9 if term.higher_is_better else delta < -1e-9
        worse = delta < -1e-9 if term.higher_is_better else delta > 1e-9
        before_text, after_text = _format_term(term, b), _format_term(term, a)
        if term.key == "vms_on_one_cell" and vms is not None:
            before_text, after_text = f"{before_text} of {vms}", f"{after_text} of {vms}"
        rows.append(
            ScoreRow(
                key=term.key,
                label=term.label,
                explanation=term.explanation,
                before=before_text,
                after=after_text,
                delta=_format_delta(term, delta) if a is not None and b is not None else "—",
                verdict="better" if better else "worse" if worse else "same",
            )
        )
    return rows


def improvement_text(plan: BalancingPlan) -> str:
    return "—" if plan.improvement_pct is None else f"{plan.improvement_pct:.1f}%"


# --- the plan's policy ------------------------------------------------------------------------

POLICY_LABELS = {
    "strategy": "strategy",
    "cpu_overcommit": "CPU over-commit (vCPUs per CPU)",
    "emulator": "emulator threads",
    "housekeeping": "housekeeping CPUs",
    "reserved": "reserved CPUs",
    "whole_cores": "dedicated VMs get whole cores",
    "memory_reserve_kib": "memory kept per cell",
    "move_weight": "weight of a move in the score",
}


def _policy_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "memory_reserve_kib" and isinstance(value, int | float):
        return format_kib(int(value)) if value else "none"
    if isinstance(value, list | tuple | set | frozenset):
        ids = [v for v in value if isinstance(v, int)]
        return cpus_text(ids, "none") if len(ids) == len(value) else ", ".join(map(str, value))
    if value in ("", None):
        return "none"
    return str(value)


def policy_rows(policy: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of the policy the plan was computed with."""
    known = [key for key in POLICY_LABELS if key in policy]
    extra = sorted(key for key in policy if key not in POLICY_LABELS)
    return [(POLICY_LABELS.get(key, key), _policy_value(key, policy[key])) for key in known + extra]


# --- the plan's content, parsed back -----------------------------------------------------------


@dataclass(frozen=True)
class PlanContent:
    demands: dict[str, planner.VmDemand]
    before: dict[str, planner.Assignment]
    after: dict[str, planner.Assignment]


def plan_content(plan: BalancingPlan) -> PlanContent:
    demands = {}
    for row in plan.demands or []:
        demand = planner.VmDemand.from_dict(row)
        demands[demand.name] = demand
    return PlanContent(
        demands=demands,
        before={n: planner.Assignment.from_dict(a) for n, a in (plan.before or {}).items()},
        after={n: planner.Assignment.from_dict(a) for n, a in (plan.after or {}).items()},
    )


# --- the changes it would make ----------------------------------------------------------------


def present_vms(host: Host) -> dict[str, VirtualMachine]:
    """The host's present VMs by name (one query), for colours (uuid) and links."""
    vms = {}
    for vm in (
        VirtualMachine.objects.present()
        .filter(host=host)
        .order_by("name")
        .prefetch_related("cell_memory")
    ):
        vm.host = host
        vms[vm.name] = vm
    return vms


def _vm_identity(name: str, vms: Mapping[str, VirtualMachine]) -> tuple[str, str]:
    vm = vms.get(name)
    if vm is not None:
        return str(vm.uuid), vm.get_absolute_url()
    # Gone since the plan: a stable colour from its name, no link.
    return str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, name)), ""


def _cross_node(cells: frozenset[int], memory: frozenset[int]) -> bool:
    return len(cells) > 1 or bool(memory and not memory <= cells)


def before_diagram_vms(
    content: PlanContent, vms: Mapping[str, VirtualMachine], topology: HostTopology
) -> list[DiagramVm]:
    """The VMs as the plan found them: explicit pins as pins, the other vCPUs floating."""
    out = []
    for name, demand in content.demands.items():
        assignment = content.before.get(name)
        cells = frozenset(demand.cells or (assignment.cells if assignment else ()))
        cells_cpus = frozenset(
            cpu for cell in topology.cells if cell.id in cells for cpu in cell.cpu_ids
        )
        affinity = {}
        for vcpu in range(demand.vcpus):
            current = assignment.vcpupin.get(vcpu) if assignment is not None else None
            affinity[vcpu] = frozenset(
                demand.vcpupin.get(vcpu) or current or cells_cpus or topology.cpu_ids
            )
        uuid, url = _vm_identity(name, vms)
        out.append(
            DiagramVm(
                name=name,
                uuid=uuid,
                url=url,
                vcpu_affinity=affinity,
                pinned_vcpus=frozenset(demand.vcpupin),
                emulatorpin=demand.emulatorpin or None,
                memory_cells=demand.memory_cells,
                memory_kib=demand.memory_kib,
                cross_node=_cross_node(cells, demand.memory_cells),
            )
        )
    return out


def after_diagram_vms(content: PlanContent, vms: Mapping[str, VirtualMachine]) -> list[DiagramVm]:
    """The VMs where the plan puts them: every vCPU pinned."""
    out = []
    for name, a in content.after.items():
        demand = content.demands.get(name)
        uuid, url = _vm_identity(name, vms)
        out.append(
            DiagramVm(
                name=name,
                uuid=uuid,
                url=url,
                vcpu_affinity={vcpu: frozenset(cpus) for vcpu, cpus in a.vcpupin.items()},
                pinned_vcpus=frozenset(a.vcpupin),
                emulatorpin=frozenset(a.emulatorpin) or None,
                memory_cells=frozenset(a.nodeset),
                memory_kib=demand.memory_kib if demand else sum(a.memory_kib_by_cell.values()),
                cross_node=_cross_node(frozenset(a.cells), frozenset(a.nodeset)),
            )
        )
    return out


def projected_memory(now: Iterable[CellMemory], content: PlanContent) -> list[CellMemory]:
    """Free memory per cell once the plan's VMs sit where it puts them (when free is known)."""
    delta: dict[int, int] = {}
    for a in content.before.values():
        for cell, kib in a.memory_kib_by_cell.items():
            delta[cell] = delta.get(cell, 0) + kib
    for a in content.after.values():
        for cell, kib in a.memory_kib_by_cell.items():
            delta[cell] = delta.get(cell, 0) - kib
    out = []
    for memory in now:
        free = memory.free_kib
        if free is not None:
            free = min(max(free + delta.get(memory.cell_id, 0), 0), memory.total_kib)
        out.append(CellMemory(memory.cell_id, memory.total_kib, free))
    return out


@dataclass(frozen=True)
class Diagrams:
    before: SafeString
    after: SafeString


def diagrams(
    plan: BalancingPlan,
    topology: HostTopology,
    content: PlanContent,
    vms: Mapping[str, VirtualMachine],
) -> Diagrams | None:
    """Both sides' topology diagrams; None when the plan has no "after" side."""
    if not content.after:
        return None
    cells, _ = host_selectors.host_cells(plan.host)
    memory_now = host_selectors.cell_memory(cells)
    # hosts.diagram escapes every name it draws; its output is the one |safe on the site.
    # Side by side: each drawing wraps at half the page's width, so it shows at its size.
    before = render_topology_svg(
        topology,
        before_diagram_vms(content, vms, topology),
        memory_now,
        id_prefix="before",
        wrap_width=HALF_WIDTH,
    )
    after = render_topology_svg(
        topology,
        after_diagram_vms(content, vms),
        projected_memory(memory_now, content),
        id_prefix="after",
        wrap_width=HALF_WIDTH,
    )
    return Diagrams(before=mark_safe(before), after=mark_safe(after))  # noqa: S308


# --- after approval ---------------------------------------------------------------------------


def plan_changes(plan: BalancingPlan) -> list[Change]:
    """The plan's change records (group_id = plan id), in apply order."""
    rows = list(Change.objects.filter(group_id=plan.id).select_related("host", "vm__host"))
    rows.sort(key=lambda c: ((c.params or {}).get("step", 0), c.created_at))
    return rows
