"""The planner's entry point, :func:`plan`: checks the request, runs the search, scores the
assignments before and after, and adds the notes a reviewer needs."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from balancing.planner.capacity import CapacityModel
from balancing.planner.explain import check_feasible, explain
from balancing.planner.model import Assignment, InfeasibleError, Plan, PlanError, Policy, VmDemand
from balancing.planner.scoring import score
from balancing.planner.search import run
from balancing.planner.state import SearchState
from balancing.planner.validation import policy_problems, validate
from numaportal.virt.topology import HostTopology


def plan(topology: HostTopology, vms: Sequence[VmDemand], policy: Policy | None = None) -> Plan:
    """Propose a placement for every VM of the host (see the package docstring).

    Locked VMs stay as they are and count first. Then two greedy starts, largest VMs first:
    VMs larger than any cell go on the fewest, closest cells (lowest remote cost; an even
    split, in proportion to the free room only when no even split fits); every other VM on
    the single cell where it fits best (least used CPU and memory for "spread", fullest for
    "pack", a move costing ``policy.move_weight``), split only when no cell has room. One
    start places dedicated VMs first, the other keeps VMs already well placed on one cell
    where they are. Each start is improved locally (a split VM moved onto one cell, making
    room by moving or swapping other VMs; VMs relocated one at a time while the score drops),
    and the start with fewer needlessly split VMs, then the lower score, wins. Pins follow:
    dedicated vCPUs one per CPU on whole cores of their own (kept where they are when
    possible), shared vCPUs on their cell's shared pool. Deterministic.

    Raises :class:`InfeasibleError` (naming the VMs and the numbers) when the VMs cannot fit
    under the policy, :class:`PlanError` for a malformed request.
    """
    policy = policy or Policy()
    problems = policy_problems(topology, policy)
    if problems:
        error = InfeasibleError if all("housekeeping" in p for p in problems) else PlanError
        raise error("; ".join(problems))
    names = Counter(vm.name for vm in vms)
    twice = sorted(name for name, n in names.items() if n > 1)
    if twice:
        raise PlanError(f"VM(s) listed more than once: {', '.join(twice)}")
    negative = sorted(vm.name for vm in vms if vm.vcpus < 0 or vm.memory_kib < 0)
    if negative:
        raise PlanError(f"VM(s) with a negative vCPU count or memory: {', '.join(negative)}")
    model = CapacityModel(topology, policy)
    state = SearchState(model, vms)
    check_feasible(state)
    assignments = run(state)
    ordered = {vm.name: assignments[vm.name] for vm in vms}
    now = [v.now for v in state.vms]
    before = score(topology, now, move_weight=policy.move_weight)
    after = score(topology, ordered.values(), move_weight=policy.move_weight)
    return Plan(
        assignments=ordered,
        before=before,
        after=after,
        policy=policy,
        notes=(*_current_breaks_policy(topology, vms, now, policy), *explain(state, ordered)),
    )


#: How many of the current placement's policy violations a note lists.
_BREAKS_SHOWN = 3
#: validate() messages that say the current placement breaks the policy (capacity, reserve).
_BREAKS = re.compile(r"reserved or housekeeping|dedicated to|MiB allowed|over-commit")


def _current_breaks_policy(
    topology: HostTopology,
    vms: Sequence[VmDemand],
    now: Sequence[Assignment],
    policy: Policy,
) -> list[str]:
    """A note when the current placement itself breaks the policy (VMs on reserved CPUs, a
    pool over its commit...): the score does not count that, so a plan that fixes it can
    score worse than now, and the reviewer should see why it moves VMs anyway."""
    baseline = score(topology, now)
    current = Plan({a.name: a for a in now}, before=baseline, after=baseline, policy=policy)
    # Only what the policy forbids; a VM floating over several cells is what the score counts.
    problems = [p for p in validate(topology, vms, current) if _BREAKS.search(p)]
    if not problems:
        return []
    shown = "; ".join(problems[:_BREAKS_SHOWN])
    more = f" (and {len(problems) - _BREAKS_SHOWN} more)" if len(problems) > _BREAKS_SHOWN else ""
    return [
        f"the current placement breaks the policy, which the score does not count: {shown}"
        f"{more}. Moves that fix it can make the total score higher than now."
    ]
