"""One result of the planner benchmark judged: its score, validate()'s reasons against it
(cross-checked with this script's own model), how many VMs it splits unevenly; the timing of
the planner and the table cells of a result."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from balancing.planner import Assignment, Plan, Score, score, validate
from bench.planner_bench.capacity import Capacity, model_problems
from bench.planner_bench.instances import Instance


@dataclass
class Outcome:
    score: Score | None
    invalid: list[str]
    error: str = ""
    #: Unlocked VMs spread other than evenly (the planner splits in proportion to the free
    #: room when no even split fits); 0 means the placement is in the IP's model.
    uneven: int = 0


def judge(inst: Instance, assignments: Mapping[str, Assignment] | None, error: str = "") -> Outcome:
    if assignments is None:
        return Outcome(None, [], error)
    items = list(assignments.values())
    s = score(inst.topology, items, move_weight=inst.policy.move_weight)
    wrapped = Plan(assignments=dict(assignments), before=s, after=s, policy=inst.policy)
    own = model_problems(Capacity(inst.topology, inst.policy), inst.vms, assignments)  # cross-check
    cap = Capacity(inst.topology, inst.policy)
    uneven = 0
    for vm in inst.vms:
        a = assignments.get(vm.name)
        if a and not vm.locked and len(a.cells) > 1:
            vcpus, memory = cap.split(vm, sorted(a.cells))
            even = (vcpus, memory) == (dict(a.vcpus_by_cell), dict(a.memory_kib_by_cell))
            uneven += not even
    try:
        problems = list(validate(inst.topology, inst.vms, wrapped))
    except NotImplementedError:
        return Outcome(s, own, uneven=uneven)
    if bool(problems) != bool(own):
        print(
            f"  validate() and this script disagree on {inst.name}: {problems[:2]} vs {own[:2]}",
            file=sys.stderr,
        )
    return Outcome(s, problems, uneven=uneven)


def median_s(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def fmt_remote(o: Outcome) -> str:
    if o.score is None:
        return o.error or "-"
    text = f"{o.score.remote:.4f}"
    return f"{text} ✗" if o.invalid else text


def vs_optimum(planner: Outcome, opt: float | None) -> tuple[str, float | None, float | None]:
    """Text, % above the optimum (None when the optimum is 0) and the absolute difference."""
    if planner.score is None or opt is None:
        return "-", None, None
    diff = planner.score.remote - opt
    if opt < 1e-9:
        return f"{diff:+.4f} (abs.)", None, diff
    pct = 100 * diff / opt
    return f"{pct:+.2f} %", pct, diff
