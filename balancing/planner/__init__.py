"""The balancing planner: where every VM of a host should live, as a reviewable plan.

The seed's advice is to keep each VM on one NUMA cell ("reduce interaction between CPU
modules"): local memory is fastest, a remote cell slower, a farther one (larger node distance)
slower still. :func:`plan` turns that into, for each VM, its cell(s), a vcpupin per vCPU, an
emulatorpin and a numatune nodeset, with the score before and after.

Pure Python: no Django, no libvirt. Input is a :class:`~numaportal.virt.topology.HostTopology`
plus :class:`VmDemand` rows and a :class:`Policy`.

Capacity model (the same for the planner, :func:`validate` and the benchmark's baselines):

- *usable CPUs* of a cell: its CPUs minus ``policy.reserved`` and, when emulator threads go to a
  housekeeping cpuset, minus ``policy.housekeeping``;
- a **dedicated** VM takes whole cores of its own when ``policy.whole_cores`` (all SMT siblings
  of a core, so ``ceil(vcpus / threads per core)`` cores, the spare siblings idle), otherwise one
  usable CPU per vCPU; each of its vCPUs is pinned to exactly one CPU, never shared;
- the **shared pool** of a cell is its usable CPUs not taken by dedicated VMs; the vCPUs of
  shared VMs on a cell may not exceed ``policy.cpu_overcommit`` x the pool size; each of their
  vCPUs is pinned to the whole pool of its cell;
- memory: the VMs' memory on a cell may not exceed the cell's memory minus
  ``policy.memory_reserve_kib``; a VM spread over several cells has its vCPUs and memory split
  over them in proportion (:func:`split_evenly`);
- **locked** VMs are never moved: their current cells, pins and memory count as they are.

Modules, each importing only those above it:

- :mod:`~balancing.planner.model`: the data (:class:`VmDemand`, :class:`Policy`,
  :class:`Assignment`, :class:`Score`, :class:`Plan`), the errors, JSON round trips;
- :mod:`~balancing.planner.scoring`: :func:`score`, node distances, :func:`split_evenly`;
- :mod:`~balancing.planner.current`: :func:`current_assignment` (where a VM is now);
- :mod:`~balancing.planner.capacity`: the capacity model above, precomputed for one host;
- :mod:`~balancing.planner.validation`: :func:`validate`;
- :mod:`~balancing.planner.ordering`: :func:`apply_order`;
- the search behind :func:`plan`: :mod:`~balancing.planner.options` (one VM's options),
  :mod:`~balancing.planner.state` (the bookkeeping), :mod:`~balancing.planner.choosing` and
  :mod:`~balancing.planner.repair` (where a VM fits, making room), :mod:`~balancing.planner.pins`
  (the vcpupins of the result), :mod:`~balancing.planner.search` (the greedy starts and the
  local improvement), :mod:`~balancing.planner.explain` (refusals and notes) and
  :mod:`~balancing.planner.planning` (:func:`plan` itself).
"""

from balancing.planner.current import current_assignment
from balancing.planner.model import (
    Assignment,
    InfeasibleError,
    Plan,
    PlanError,
    Policy,
    Score,
    VmDemand,
    demand_digest,
)
from balancing.planner.ordering import apply_order
from balancing.planner.planning import plan
from balancing.planner.scoring import distance, score, split_evenly
from balancing.planner.validation import validate

__all__ = [
    "Assignment",
    "InfeasibleError",
    "Plan",
    "PlanError",
    "Policy",
    "Score",
    "VmDemand",
    "apply_order",
    "current_assignment",
    "demand_digest",
    "distance",
    "plan",
    "score",
    "split_evenly",
    "validate",
]
